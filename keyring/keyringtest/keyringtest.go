// Package keyringtest gives tests a fresh keyring, so stores that seal
// personal data (notify/recipients) run sealed in tests as in production.
package keyringtest

import (
	"testing"

	"github.com/upswatch/upswatch/keyring"
)

// New generates a keyring, failing the test if it cannot.
func New(tb testing.TB) *keyring.Keyring {
	tb.Helper()
	k, err := keyring.Generate()
	if err != nil {
		tb.Fatalf("generate a keyring: %v", err)
	}
	return k
}

// Records is a record sealer (recipients.Sealer) over a fresh keyring.
func Records(tb testing.TB) keyring.Records {
	tb.Helper()
	return keyring.Records{Keyring: New(tb)}
}
