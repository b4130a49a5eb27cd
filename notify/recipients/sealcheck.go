package recipients

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// sealCheckKey holds a record sealed by the first instance that ran with a
// Sealer, so that every later instance proves it holds the same keys even
// before any account exists.
const sealCheckKey = "sealcheck"

// sealCheckPlain is what the check record seals. It is no secret: the
// record only proves that the Sealer opens what another instance sealed.
var sealCheckPlain = []byte("upswatch: personal records open with this keyring")

// ErrSealerMismatch: the Sealer cannot open records already in the bucket
// (another keyring sealed them).
var ErrSealerMismatch = errors.New("the keyring cannot open the personal records already stored")

// CheckSealer proves that the Sealer opens what is already stored: the
// check record (written on first use, sealed by the Sealer) and every
// personal record of the view, which must be Ready. It returns an error
// wrapping ErrSealerMismatch that names the unreadable records' count and
// the first cause, never their content.
func (s *Store) CheckSealer(ctx context.Context) error {
	sealed, err := s.sealer.Seal(sealCheckKey, sealCheckPlain)
	if err != nil {
		return fmt.Errorf("seal the check record: %w", err)
	}
	var checkErr error
	if _, err := s.kv.Create(ctx, sealCheckKey, sealed); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("write the check record: %w", err)
		}
		e, err := s.kv.Get(ctx, sealCheckKey)
		if err != nil {
			return fmt.Errorf("read the check record: %w", err)
		}
		plain, err := s.sealer.Open(sealCheckKey, e.Value())
		switch {
		case err != nil:
			checkErr = fmt.Errorf("check record: %w", err)
		case !bytes.Equal(plain, sealCheckPlain):
			checkErr = errors.New("check record: unexpected content")
		}
	}
	s.mu.RLock()
	ids := make([]string, 0, len(s.unreadable))
	for id := range s.unreadable {
		ids = append(ids, id)
	}
	total := len(s.personal) + len(s.unreadable)
	var first error
	if len(ids) > 0 {
		slices.Sort(ids)
		first = s.unreadable[ids[0]]
	}
	s.mu.RUnlock()
	switch {
	case len(ids) > 0:
		return fmt.Errorf("%w: %d of %d personal records do not open (account %s: %w)", ErrSealerMismatch, len(ids), total, ids[0], first)
	case checkErr != nil:
		return fmt.Errorf("%w: %w", ErrSealerMismatch, checkErr)
	}
	return nil
}

// resealCheck seals the check record again under the Sealer's current key
// (after a rotation), so that removing an old key keeps it readable.
func (s *Store) resealCheck(ctx context.Context) error {
	sealed, err := s.sealer.Seal(sealCheckKey, sealCheckPlain)
	if err != nil {
		return fmt.Errorf("seal the check record: %w", err)
	}
	if _, err := s.kv.Put(ctx, sealCheckKey, sealed); err != nil {
		return fmt.Errorf("write the check record: %w", err)
	}
	return nil
}
