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

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/ups"
)

// Errors of the account operations.
var (
	// ErrEmailTaken: another account has this email.
	ErrEmailTaken = errors.New("email belongs to another account")
	// ErrTokenNotFound: no token of the account has this id.
	ErrTokenNotFound = errors.New("token not found")
)

// TokenPrefix starts every account API token, so a leaked one is easy to
// recognise (and to scan for).
const TokenPrefix = "uwt_"

// tokenRecord is stored under token.<sha256 hex of the token>.
type tokenRecord struct {
	Account   string    `json:"account"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func unkeyedIndex(kind, value string) string {
	h := sha256.Sum256([]byte(kind + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// claimEmail points the email's blind index at id; an index held by
// another account is ErrEmailTaken.
func (s *Store) claimEmail(ctx context.Context, id, email string) error {
	if email == "" {
		return nil
	}
	key := emailPrefix + s.index("email", email)
	if _, err := s.kv.Create(ctx, key, []byte(id)); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("store email index: %w", err)
		}
		e, gerr := s.kv.Get(ctx, key)
		if gerr != nil || string(e.Value()) != id {
			return ErrEmailTaken
		}
	}
	return nil
}

func (s *Store) releaseEmail(ctx context.Context, email string) {
	if email == "" {
		return
	}
	if err := s.kv.Purge(ctx, emailPrefix+s.index("email", email)); err != nil {
		s.log.Warn("email index not removed", "err", err)
	}
}

// LookupEmail finds the account with email through its blind index.
func (s *Store) LookupEmail(ctx context.Context, email string) (Recipient, bool, error) {
	email = NormalizeEmail(email)
	if email == "" {
		return Recipient{}, false, nil
	}
	e, err := s.kv.Get(ctx, emailPrefix+s.index("email", email))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Recipient{}, false, nil
	}
	if err != nil {
		return Recipient{}, false, fmt.Errorf("read email index: %w", err)
	}
	r, ok := s.Lookup(string(e.Value()))
	return r, ok, nil
}

// List returns every account id, sorted.
func (s *Store) List() []string {
	s.mu.RLock()
	ids := make([]string, 0, len(s.accounts))
	for id := range s.accounts {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
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

// tokenHashes are the hashes of the account's tokens.
func (s *Store) tokenHashes(id string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for h, acc := range s.tokens {
		if acc == id {
			out = append(out, h)
		}
	}
	return out
}

// Authenticate returns the account a bearer token belongs to.
func (s *Store) Authenticate(tok string) (Recipient, bool) {
	if !strings.HasPrefix(tok, TokenPrefix) {
		return Recipient{}, false
	}
	s.mu.RLock()
	id, ok := s.tokens[hashToken(tok)]
	s.mu.RUnlock()
	if !ok {
		return Recipient{}, false
	}
	return s.Lookup(id)
}

// Reseal seals every personal record again with the Sealer (under its
// current key, after a rotation) and returns how many it rewrote.
func (s *Store) Reseal(ctx context.Context) (int, error) {
	if err := s.resealCheck(ctx); err != nil {
		return 0, err
	}
	lister, err := s.kv.ListKeysFiltered(ctx, personalPrefix+">")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("list personal records: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	n := 0
	for _, key := range keys {
		id := strings.TrimPrefix(key, personalPrefix)
		_, changed, err := s.updatePersonal(ctx, id, func(*Personal) (bool, error) { return true, nil })
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("reseal account %s: %w", id, err)
		}
		if changed {
			n++
		}
	}
	return n, nil
}

// OwnersOf returns the ids of the accounts owning serial.
func (s *Store) OwnersOf(serial ups.Serial) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.byUnit[serial])
}
