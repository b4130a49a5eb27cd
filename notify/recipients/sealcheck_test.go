package recipients

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/keyring"
)

func runSealed(t *testing.T, js jetstream.JetStream, k *keyring.Keyring) *Store {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Open(ctx, js, Options{Sealer: keyring.Records{Keyring: k}, Index: k.BlindIndex})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("view not ready")
	}
	return s
}

func TestCheckSealer(t *testing.T) {
	tests := []struct {
		name string
		// accounts created by the first instance before the second starts
		accounts int
		// same: the second instance holds the first one's keyring
		same    bool
		wantErr string
	}{
		{name: "same keyring, no accounts", same: true},
		{name: "same keyring, accounts", accounts: 2, same: true},
		{name: "other keyring, no accounts", wantErr: "check record: keyring: unknown key id"},
		{name: "other keyring, accounts", accounts: 3, wantErr: "3 of 3 personal records do not open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ns, _, js := bustest.Server(t)
			k1, err := keyring.Generate()
			if err != nil {
				t.Fatal(err)
			}
			first := runSealed(t, js, k1)
			if err := first.CheckSealer(ctx); err != nil {
				t.Fatalf("first instance, empty bucket: %v", err)
			}
			for range tc.accounts {
				if _, err := first.Create(ctx, Recipient{Personal: Personal{Name: "Lan", Contacts: Contacts{Phones: []string{"+84901234567"}}}}); err != nil {
					t.Fatal(err)
				}
			}
			k2 := k1
			if !tc.same {
				if k2, err = keyring.Generate(); err != nil {
					t.Fatal(err)
				}
			}
			_, js2 := bustest.Connect(t, ns)
			second := runSealed(t, js2, k2)
			err = second.CheckSealer(ctx)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckSealer: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSealerMismatch) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckSealer = %v, want ErrSealerMismatch containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "+84901234567") || strings.Contains(err.Error(), "Lan") {
				t.Fatalf("the error carries personal data: %v", err)
			}
		})
	}
}

// TestResealKeepsCheckRecordReadable: after a rotation and the removal of
// the old key, the check record still opens.
func TestResealKeepsCheckRecordReadable(t *testing.T) {
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	k, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	s := runSealed(t, js, k)
	if err := s.CheckSealer(ctx); err != nil {
		t.Fatal(err)
	}
	old := k.Primary()
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reseal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := k.Remove(old); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSealer(ctx); err != nil {
		t.Fatalf("after rotation and removal of the old key: %v", err)
	}
}
