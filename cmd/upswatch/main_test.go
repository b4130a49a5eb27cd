package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
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

// memoryLimit: GOMEMLIMIT wins, then memory_limit (0: none), then 90 %
// of the cgroup's limit.
func TestMemoryLimit(t *testing.T) {
	const gib = 1 << 30
	limited := func() (uint64, error) { return 2 * gib, nil }
	unlimited := func() (uint64, error) { return 0, errors.New("memory is not limited") }
	tests := []struct {
		name, memoryLimit, gomemlimit string
		cgroup                        func() (uint64, error)
		want                          int64
		from                          string
	}{
		{"GOMEMLIMIT wins", "600MiB", "1GiB", limited, 0, "GOMEMLIMIT"},
		{"memory_limit", "600MiB", "", limited, 600 << 20, "memory_limit"},
		{"memory_limit 0 is none", "0", "", limited, 0, "memory_limit"},
		{"unset, in a limited cgroup", "", "", limited, ninetyPercent(2 * gib), "cgroup"},
		{"unset, no limit", "", "", unlimited, 0, ""},
		{"unset, a cgroup v1 limit of all memory", "", "", func() (uint64, error) { return 9223372036854771712, nil }, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.MemoryLimit = tt.memoryLimit
			got, from := memoryLimit(c, tt.gomemlimit, tt.cgroup)
			if got != tt.want || from != tt.from {
				t.Fatalf("memoryLimit = %d from %q, want %d from %q", got, from, tt.want, tt.from)
			}
		})
	}
}

// setMemoryLimit in a real cgroup with a 1 GiB memory limit: the test
// binary runs again inside it (v1 or v2 memory controller, as root) and
// reports the runtime's limit, 90 % of the cgroup's.
func TestSetMemoryLimitInACgroup(t *testing.T) {
	dir, err := memoryCgroup(t, 1<<30)
	if err != nil {
		t.Skipf("no memory cgroup of our own here: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec "$2" -test.run '^$'`, "sh", dir, exe)
	cmd.Env = append(os.Environ(), cgroupChildEnv+"=1", "GOMEMLIMIT=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child in the cgroup: %v\n%s", err, out)
	}
	got, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("child printed %q", out)
	}
	if want := ninetyPercent(1 << 30); got != want {
		t.Fatalf("go memory limit in a 1 GiB cgroup = %d, want %d", got, want)
	}
}

// ninetyPercent is n x cgroupShare as memoryLimit computes it.
func ninetyPercent(n uint64) int64 { return int64(float64(n) * cgroupShare) }

// cgroupChildEnv makes the test binary the child of
// TestSetMemoryLimitInACgroup: it applies the default configuration's
// memory limit and prints the runtime's.
const cgroupChildEnv = "UPSWATCH_TEST_CGROUP_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(cgroupChildEnv) != "" {
		setMemoryLimit(config.Default(), slog.New(slog.DiscardHandler))
		fmt.Println(debug.SetMemoryLimit(-1))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// memoryCgroup creates a memory cgroup below our own with limit bytes
// and removes it at cleanup (once the child has exited).
func memoryCgroup(t *testing.T, limit int64) (string, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("upswatch-test-%d", os.Getpid())
	for line := range strings.Lines(string(self)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir, file string
		switch {
		case slices.Contains(strings.Split(parts[1], ","), "memory"): // v1
			dir, file = filepath.Join("/sys/fs/cgroup/memory", parts[2], name), "memory.limit_in_bytes"
		case parts[0] == "0" && parts[1] == "": // v2, when it has the memory controller
			root := "/sys/fs/cgroup"
			if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
				continue
			}
			dir, file = filepath.Join(root, parts[2], name), "memory.max"
		default:
			continue
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			continue
		}
		t.Cleanup(func() { _ = os.Remove(dir) })
		if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
			return "", err
		}
		return dir, nil
	}
	return "", errors.New("no writable memory controller in /proc/self/cgroup")
}
