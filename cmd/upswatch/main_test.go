package main

import (
	"bytes"
	"io"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/upswatch/upswatch/app"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/servetest"
	"github.com/upswatch/upswatch/keyring"
)

// The CLI against a real serve in-process: every command a newcomer uses,
// through the same API.
func TestCommands(t *testing.T) {
	c := servetest.Config(t.TempDir())
	c.MQTT.ClientID = "upswatch-cli-test"
	c.NATS.Partitions = 2
	a, err := app.New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.Out = io.Discard
	servetest.Start(t, a, servetest.Options{})
	flags := []string{"--server", "http://" + a.HTTPAddr(), "--token", a.AdminToken()}
	cli := func(args ...string) (string, int) {
		var out, errOut bytes.Buffer
		code := run(append(args, flags...), &out, &errOut)
		return out.String() + errOut.String(), code
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"unit", "add", "123456789012", "--name", "Rack A", "--site", "hq"}, 0, "password:"},
		{[]string{"unit", "add", "123456789012"}, 1, "is already registered: if the unit is yours, please contact support. (already_registered)"},
		{[]string{"unit", "add", "12345"}, 1, "(invalid_serial)"},
		{[]string{"unit", "list"}, 0, "123456789012  Rack A"},
		{[]string{"unit", "show", "123456789012"}, 0, `"site": "hq"`},
		{[]string{"account", "add", "--id", "lan", "--name", "Lan", "--email", "lan@example.com", "--region", "VN", "--language", "vi", "--time-zone", "Asia/Ho_Chi_Minh"}, 0, `"id": "lan"`},
		{[]string{"account", "list"}, 0, "lan"},
		{[]string{"account", "weekly-report", "lan", "off"}, 0, "Weekly power summary for lan: off."},
		{[]string{"account", "show", "lan"}, 0, `"weekly_report_off": true`},
		{[]string{"account", "weekly-report", "lan", "on"}, 0, "Weekly power summary for lan: on."},
		{[]string{"account", "weekly-report", "lan", "maybe"}, 1, "usage: upswatch account weekly-report ACCOUNT_ID on|off"},
		{[]string{"account", "add", "--id", "minh", "--name", "Minh", "--channels", "fcm", "--weekly-report-off"}, 0, `"weekly_report_off": true`},
		{[]string{"account", "export", "lan"}, 0, "lan@example.com"},
		{[]string{"token", "create", "lan"}, 0, "uwt_"},
		{[]string{"keys", "rotate"}, 0, `"primary_key"`}, // then the account below must still read back
		{[]string{"account", "show", "lan"}, 0, "Lan"},
		{[]string{"account", "remove", "lan"}, 0, "Erased account lan"},
		{[]string{"account", "show", "lan"}, 1, "not_found"},
		{[]string{"unit", "remove", "123456789012"}, 0, "Removed 123456789012"},
		{[]string{"unit", "show", "123456789012"}, 1, "(not_found)"},
		{[]string{"config", "keys"}, 0, "UPSWATCH_MQTT_URL"},
		{[]string{"config", "keys"}, 0, "UPSWATCH_KEYS  (the whole keyring"},
		{[]string{"frobnicate"}, 2, "unknown command"},
	}
	for _, tt := range tests {
		out, code := cli(tt.args...)
		if tt.args[0] == "config" || tt.args[0] == "frobnicate" {
			var o, e bytes.Buffer
			code = run(tt.args, &o, &e)
			out = o.String() + e.String()
		}
		if code != tt.code || !strings.Contains(out, tt.want) {
			t.Errorf("upswatch %s: exit %d, output:\n%s\nwant exit %d and %q", strings.Join(tt.args, " "), code, out, tt.code, tt.want)
		}
	}
}

// TestKeysGenerate: a new keyring file that loads, and never an overwrite.
func TestKeysGenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	tests := []struct {
		name string
		code int
		want string
	}{
		{"new file", 0, "keyring written to " + path},
		{"existing file", 1, "exists; a keyring is never overwritten"},
	}
	for _, tc := range tests {
		var out, errOut bytes.Buffer
		code := run([]string{"keys", "generate", path}, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
			t.Fatalf("%s: exit %d, output %q; want %d with %q", tc.name, code, out.String()+errOut.String(), tc.code, tc.want)
		}
		if _, err := keyring.Load(path); err != nil {
			t.Fatalf("%s: the written keyring does not load: %v", tc.name, err)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"keys", "generate", "--env"}, &out, &errOut); code != 0 {
		t.Fatalf("keys generate --env: exit %d: %s", code, errOut.String())
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "UPSWATCH_KEYS=")
	if !ok {
		t.Fatalf("keys generate --env printed %q", out.String())
	}
	if _, err := keyring.FromEnv(v); err != nil {
		t.Fatalf("the printed value does not load: %v", err)
	}
}

// memory_limit sets the runtime's memory limit, unless GOMEMLIMIT is set.
func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	c := config.Default()
	c.MemoryLimit = "600MiB"
	t.Setenv("GOMEMLIMIT", "")
	setMemoryLimit(c, slog.New(slog.DiscardHandler))
	if got := debug.SetMemoryLimit(-1); got != 600<<20 {
		t.Fatalf("memory limit %d, want %d", got, 600<<20)
	}
	debug.SetMemoryLimit(before)
	t.Setenv("GOMEMLIMIT", "1GiB")
	setMemoryLimit(c, slog.New(slog.DiscardHandler))
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("memory limit %d with GOMEMLIMIT set, want it untouched (%d)", got, before)
	}
}
