package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/keyring"
)

// natsServer starts a NATS server with JetStream on a loopback port, as
// an external cluster would be, and returns its URL.
func natsServer(t *testing.T) string {
	t.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.ClientURL()
}

// runUntilStartedOrFailed runs an instance and returns Run's error if it
// exits before Started (nil when it started; it is then stopped at
// cleanup).
func runUntilStartedOrFailed(t *testing.T, c config.Config) error {
	t.Helper()
	a, err := New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.Out = io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Started():
		t.Cleanup(func() { cancel(); <-done })
		return nil
	case err := <-done:
		cancel()
		if err == nil {
			t.Fatal("Run returned nil before starting")
		}
		return err
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve neither started nor failed within 30s")
		return nil
	}
}

func writeKeyring(t *testing.T) string {
	t.Helper()
	k, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSharedKeyring: with nats.url set, a second instance starts only with
// the keyring of the first; without one, with a missing file or with
// another keyring it refuses, saying what to do, and creates no keyring of
// its own.
func TestSharedKeyring(t *testing.T) {
	t.Setenv(KeysEnv, "")
	url := natsServer(t)
	firstKeys := writeKeyring(t)
	first := testConfig(t, t.TempDir())
	first.NATS.URL = url
	first.Keys.File = firstKeys
	first.MQTT.ClientID = "upswatch-first"
	in := start(t, first)
	if code, body := in.do("POST", "/v1/accounts", map[string]any{"id": "lan", "name": "Lan", "phone": "+84901234567"}, nil); code != http.StatusCreated {
		t.Fatalf("create account: %d %s", code, body)
	}

	missing := filepath.Join(t.TempDir(), "keyring.json")
	tests := []struct {
		name     string
		keysFile string
		// want: substrings of Run's error; empty: it starts
		want []string
	}{
		{name: "no keyring configured", keysFile: "", want: []string{
			"nats.url is set, so every instance must use one shared keyring",
			"set keys.file (UPSWATCH_KEYS_FILE) to the same keyring file on every instance", "upswatch keys generate FILE"}},
		{name: "keyring file missing", keysFile: missing, want: []string{
			"keys.file " + missing + " does not exist; copy the keyring the other instances use there"}},
		{name: "another keyring", keysFile: writeKeyring(t), want: []string{
			"the keyring cannot open the personal records already stored: 1 of 1 personal records do not open",
			"start every instance with the keyring that sealed them", "refuses to run with another one"}},
		{name: "the same keyring", keysFile: firstKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := testConfig(t, dir)
			c.NATS.URL = url
			c.Keys.File = tc.keysFile
			c.MQTT.ClientID = "upswatch-second"
			err := runUntilStartedOrFailed(t, c)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("the second instance with the first one's keyring: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("the second instance started")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "+84901234567") {
				t.Errorf("the error carries a phone number: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "keyring.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a private keyring was created in the data dir (stat: %v)", err)
			}
			if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the missing keys.file was created (stat: %v)", err)
			}
		})
	}
}
