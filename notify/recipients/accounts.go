package recipients

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors of the account operations.
var (
	// ErrEmailTaken: another account has this email.
	ErrEmailTaken = errors.New("email belongs to another account")
)

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
