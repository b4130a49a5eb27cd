package recipients

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrTokenNotFound: no token of the account has this id.
var ErrTokenNotFound = errors.New("token not found")

// TokenPrefix starts every account API token, so a leaked one is easy to
// recognise (and to scan for).
const TokenPrefix = "uwt_"

// tokenRecord is stored under token.<sha256 hex of the token>.
type tokenRecord struct {
	Account   string    `json:"account"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// tokenIndex maps the hash (hex) of each API token to its account id:
// what authenticates a bearer token. The Store's mu guards it.
type tokenIndex map[string]string

// apply sets (deleted: removes) the token record stored under hash. A
// record it cannot read changes nothing.
func (t tokenIndex) apply(hash string, value []byte, deleted bool) error {
	if deleted {
		delete(t, hash)
		return nil
	}
	var rec tokenRecord
	if err := json.Unmarshal(value, &rec); err != nil {
		return fmt.Errorf("decode token record: %w", err)
	}
	t[hash] = rec.Account
	return nil
}

// account returns the id of the account the token belongs to.
func (t tokenIndex) account(tok string) (string, bool) {
	if !strings.HasPrefix(tok, TokenPrefix) {
		return "", false
	}
	id, ok := t[hashToken(tok)]
	return id, ok
}

// hashesOf returns the hashes of the account's tokens.
func (t tokenIndex) hashesOf(id string) []string {
	var out []string
	for h, acc := range t {
		if acc == id {
			out = append(out, h)
		}
	}
	return out
}

// Authenticate returns the account a bearer token belongs to.
func (s *Store) Authenticate(tok string) (Recipient, bool) {
	s.mu.RLock()
	id, ok := s.tokens.account(tok)
	s.mu.RUnlock()
	if !ok {
		return Recipient{}, false
	}
	return s.Lookup(id)
}

// tokenHashes are the hashes of the account's tokens.
func (s *Store) tokenHashes(id string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tokens.hashesOf(id)
}

// CreateToken makes a new API token for the account and returns it: the
// only time it is seen. Only its SHA-256 is stored (the token has 256
// random bits, so a slow hash adds nothing).
func (s *Store) CreateToken(ctx context.Context, id, name string) (string, TokenInfo, error) {
	if len(name) > 100 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", TokenInfo{}, invalid("token name must be at most 100 bytes without control characters")
	}
	if _, ok := s.Lookup(id); !ok {
		return "", TokenInfo{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (Go 1.24+)
	tok := TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	hash := hashToken(tok)
	now := s.now().UTC().Truncate(time.Second)
	rec, _ := json.Marshal(tokenRecord{Account: id, Name: name, CreatedAt: now})
	tokRev, err := s.kv.Create(ctx, tokenPrefix+hash, rec)
	if err != nil {
		return "", TokenInfo{}, fmt.Errorf("store token: %w", err)
	}
	info := TokenInfo{ID: hash[:12], Name: name, CreatedAt: now}
	if _, err := s.updateAccount(ctx, id, func(a *Account) error {
		a.Tokens = append(a.Tokens, info)
		return nil
	}); err != nil {
		_ = s.kv.Purge(ctx, tokenPrefix+hash)
		return "", TokenInfo{}, err
	}
	s.applyAt(tokenPrefix+hash, rec, false, tokRev)
	return tok, info, nil
}

// RevokeToken deletes the account's token whose id is tokenID.
func (s *Store) RevokeToken(ctx context.Context, id, tokenID string) error {
	var hash string
	for _, h := range s.tokenHashes(id) {
		if h[:12] == tokenID {
			hash = h
		}
	}
	if hash == "" {
		return ErrTokenNotFound
	}
	if err := s.kv.Purge(ctx, tokenPrefix+hash); err != nil {
		return fmt.Errorf("remove token: %w", err)
	}
	s.applyAt(tokenPrefix+hash, nil, true, 0)
	_, err := s.updateAccount(ctx, id, func(a *Account) error {
		a.Tokens = slices.DeleteFunc(a.Tokens, func(t TokenInfo) bool { return t.ID == tokenID })
		return nil
	})
	return err
}
