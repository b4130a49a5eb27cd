package recipients

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/keyring/keyringtest"
)

// Personal data is never stored in plain text: Open without a Sealer is
// refused, and a record written with one holds neither the name nor the
// phone in the bucket.
func TestSealerRequired(t *testing.T) {
	_, _, js := bustest.Server(t)
	ctx := context.Background()
	if _, err := Open(ctx, js, Options{}); !errors.Is(err, ErrNoSealer) {
		t.Fatalf("Open without a Sealer = %v, want ErrNoSealer", err)
	}
	s, err := Open(ctx, js, Options{Sealer: keyringtest.Records(t)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Create(ctx, Recipient{Personal: Personal{Name: "Nguyen Van Lan", Contacts: Contacts{Phones: []string{"+84901234567"}}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.kv.Get(ctx, personalPrefix+r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if raw := string(e.Value()); strings.Contains(raw, "Lan") || strings.Contains(raw, "901234567") {
		t.Fatalf("the personal record is stored in plain text: %s", raw)
	}
}
