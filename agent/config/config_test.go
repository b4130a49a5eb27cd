package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/testcerts"
)

func noEnv(string) (string, bool) { return "", false }

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// The commented sample config parses, validates, and says the defaults.
func TestSampleConfig(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "configs", "upswatch-agent.yaml"), true, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Units = []Unit{{UPS: "myups", Serial: "123456789012", Password: "change-me-from-registration"}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("sample differs from the defaults:\n got %+v\nwant %+v", c, want)
	}
}

// Each bad file is refused with every problem named by its key.
func TestBadConfigs(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
		not  []string
	}{
		{"bad_broker_url.yaml", []string{`config: broker.url: must be tcp://host:port or ssl://host:port (also mqtt, tls, mqtts), got "http://x"`}, nil},
		{"bad_nut_tls.yaml", []string{`config: nut.tls: must be off, auto or require, got "maybe"`}, nil},
		{"unknown_key.yaml", []string{"field pol not found"}, nil},
		{"interval_below_poll.yaml", []string{"config: interval: must be at least poll (5s), got 2s"}, nil},
		{"bad_units.yaml", []string{
			`config: units[0].serial: must be 12 or 16 digits (or empty to use the UPS's own), got "12345"`,
			`config: units[1].ups: "a" is listed twice`,
			"config: units[1].password: is required",
		}, nil},
		{"bad_buffer.yaml", []string{"config: buffer.max_bytes: must be at least 65536, got 10", "config: buffer.max_age: must be at least 1m, got 1s", "config: units: lists no UPS"}, nil},
		{"bad_cert.yaml", []string{
			"config: broker.cert_file: not a usable certificate and key (broker.key_file): open /nonexistent/agent.crt: no such file or directory",
			`config: broker.cert_file: a client certificate needs TLS: broker.url must be ssl://, tls:// or mqtts://, got "tcp://127.0.0.1:1883"`,
			"config: units[0].key_file: is required with units[0].cert_file",
			`config: units[0].cert_file: a client certificate needs TLS`,
		}, []string{"units[0].password", "units[1].password"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tc.file), true, noEnv)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error %q\nnames %q", err, n)
				}
			}
		})
	}
}

// Every key has its variable, the env wins over the file, and a bad
// value names key and variable.
func TestEnv(t *testing.T) {
	keys := map[string]string{}
	for _, k := range Keys() {
		keys[k[0]] = k[1]
	}
	for key, name := range map[string]string{"broker.url": "UPSWATCH_AGENT_BROKER_URL", "buffer.max_age": "UPSWATCH_AGENT_BUFFER_MAX_AGE", "units": "UPSWATCH_AGENT_UNITS", "nut.password": "UPSWATCH_AGENT_NUT_PASSWORD"} {
		if keys[key] != name {
			t.Errorf("%s: variable %q, want %q", key, keys[key], name)
		}
	}
	c, err := Load(filepath.Join("..", "..", "configs", "upswatch-agent.yaml"), true, env(map[string]string{
		"UPSWATCH_AGENT_BROKER_URL":     "ssl://broker.example:8883",
		"UPSWATCH_AGENT_POLL":           "1s",
		"UPSWATCH_AGENT_BUFFER_MAX_AGE": "24h",
		"UPSWATCH_AGENT_UNITS":          `[{ups: a, serial: "1234567890123456", password: pa}, {ups: b, password: pb}]`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker.URL != "ssl://broker.example:8883" || c.Poll != time.Second || c.Buffer.MaxAge != 24*time.Hour ||
		len(c.Units) != 2 || c.Units[0].Serial != "1234567890123456" || c.Units[1].UPS != "b" {
		t.Fatalf("env not applied: %+v", c)
	}
	_, err = Load(filepath.Join("..", "..", "configs", "upswatch-agent.yaml"), true, env(map[string]string{"UPSWATCH_AGENT_POLL": "soon", "UPSWATCH_AGENT_STALE_AFTER": "x"}))
	for _, w := range []string{`config: poll (from UPSWATCH_AGENT_POLL): not a duration like 10s or 5m: "soon"`, "config: stale_after (from UPSWATCH_AGENT_STALE_AFTER): not an integer"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}

// SaveUnit adds or replaces a unit, keeps comments and other keys, and
// leaves the file 0600.
func TestSaveUnit(t *testing.T) {
	dir := t.TempDir()
	sample, err := os.ReadFile(filepath.Join("..", "..", "configs", "upswatch-agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, sample, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range []Unit{
		{UPS: "rack2", Serial: "1234567890123456", Password: "p2"},
		{UPS: "myups", Serial: "123456789012", Password: "new-password"},
	} {
		if err := SaveUnit(path, u); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Load(path, true, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []Unit{{UPS: "myups", Serial: "123456789012", Password: "new-password"}, {UPS: "rack2", Serial: "1234567890123456", Password: "p2"}}
	if !reflect.DeepEqual(c.Units, want) {
		t.Fatalf("units = %+v", c.Units)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "# How often upsd is read.") {
		t.Error("comments lost")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// A new file.
	fresh := filepath.Join(dir, "new.yaml")
	if err := SaveUnit(fresh, Unit{UPS: "x", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	c, err = Load(fresh, true, noEnv)
	if err != nil || len(c.Units) != 1 || c.Units[0].UPS != "x" {
		t.Fatalf("new file: %+v, %v", c.Units, err)
	}
}

// A unit with a client certificate (its own or the broker section's)
// needs no password; without either the password is required, by key.
func TestCertificateInsteadOfPassword(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "factory CA")
	now := time.Now()
	certFile, keyFile := testcerts.WritePair(t, dir, "unit", ca.Client(t, "123456789012", now.Add(-time.Hour), now.Add(time.Hour)))
	sample := filepath.Join("..", "..", "configs", "upswatch-agent.yaml")
	c, err := Load(sample, true, env(map[string]string{
		"UPSWATCH_AGENT_BROKER_URL": "ssl://broker.example:8883",
		"UPSWATCH_AGENT_UNITS":      `[{ups: a, serial: "123456789012", cert_file: ` + certFile + `, key_file: ` + keyFile + `}, {ups: b, password: pb}]`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cf, kf := c.Certificate(c.Units[0]); cf != certFile || kf != keyFile {
		t.Errorf("unit a presents %q %q", cf, kf)
	}
	if cf, _ := c.Certificate(c.Units[1]); cf != "" {
		t.Errorf("unit b presents %q", cf)
	}
	c, err = Load(sample, true, env(map[string]string{
		"UPSWATCH_AGENT_BROKER_URL":       "mqtts://broker.example:8883",
		"UPSWATCH_AGENT_BROKER_CERT_FILE": certFile,
		"UPSWATCH_AGENT_BROKER_KEY_FILE":  keyFile,
		"UPSWATCH_AGENT_UNITS":            `[{ups: a}]`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cf, _ := c.Certificate(c.Units[0]); cf != certFile {
		t.Errorf("the broker section's certificate not used: %q", cf)
	}
	_, err = Load(sample, true, env(map[string]string{"UPSWATCH_AGENT_UNITS": `[{ups: a}]`}))
	want := "config: units[0].password: is required unless the unit has a client certificate (units[0].cert_file or broker.cert_file)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v lacks %q", err, want)
	}

	// register (SaveUnit) replacing the unit's password keeps its
	// certificate keys.
	path := filepath.Join(dir, "agent.yaml")
	yml := "broker:\n  url: ssl://broker.example:8883\nunits:\n  - ups: a\n    cert_file: " + certFile + "\n    key_file: " + keyFile + "\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SaveUnit(path, Unit{UPS: "a", Serial: "123456789012", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	c, err = Load(path, true, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Unit{UPS: "a", Serial: "123456789012", Password: "p", CertFile: certFile, KeyFile: keyFile}); !reflect.DeepEqual(c.Units, []Unit{want}) {
		t.Errorf("after SaveUnit: %+v", c.Units)
	}
}
