package testenv

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// InfluxdVersion is the InfluxDB release the tests run against: the last
// one that builds from pure Go. It serves the v2 write and Flux query API
// that upswatch uses, so the same code talks to 2.x in production.
const InfluxdVersion = "v1.8.10"

const influxdPkg = "github.com/influxdata/influxdb/cmd/influxd"

// InfluxDatabase is the database Influxd creates; the v2 API names it
// through the bucket "upswatch/autogen".
const InfluxDatabase = "upswatch"

// Influx is a running influxd.
type Influx struct {
	URL    string // http://127.0.0.1:port
	Bucket string // "upswatch/autogen": database/retention policy
	Org    string // ignored by 1.8, required non-empty by some clients
	Token  string // empty: auth is disabled

	t    testing.TB
	proc *process
}

// InfluxdBinary returns the path of the influxd binary, building it into
// ToolsDir when missing. Concurrent test processes build it once.
func InfluxdBinary(t testing.TB) string {
	t.Helper()
	dir := ToolsDir(t)
	bin := filepath.Join(dir, "influxd-"+InfluxdVersion)
	if isExecutable(bin) {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testenv: tools dir: %v", err)
	}
	unlock, err := lockFile(filepath.Join(dir, "influxd.lock"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer unlock()
	// Another process may have built it while this one waited.
	if isExecutable(bin) {
		return bin
	}
	t.Logf("testenv: building influxd %s into %s (about a minute; `make deps` does it ahead)", InfluxdVersion, dir)
	if err := buildInfluxd(dir, bin); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return bin
}

// buildInfluxd mirrors scripts/deps.sh.
func buildInfluxd(dir, bin string) error {
	build, err := os.MkdirTemp(dir, "build.")
	if err != nil {
		return fmt.Errorf("build dir: %w", err)
	}
	defer os.RemoveAll(build)
	cmd := exec.Command("go", "install",
		"-ldflags", "-X main.version="+strings.TrimPrefix(InfluxdVersion, "v"),
		influxdPkg+"@"+InfluxdVersion)
	// Outside this module and with no workspace or flags of ours: a
	// foreign main package at a version builds on its own go.mod.
	cmd.Dir = build
	cmd.Env = append(os.Environ(), "GOBIN="+build, "GOWORK=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go install %s@%s: %w\n%s", influxdPkg, InfluxdVersion, err, out)
	}
	// Atomic: other processes see no binary or a whole one.
	if err := os.Rename(filepath.Join(build, "influxd"), bin); err != nil {
		return fmt.Errorf("install influxd: %w", err)
	}
	return nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Influxd starts an influxd with Flux enabled, everything bound to
// 127.0.0.1 and its data in t.TempDir(), and creates InfluxDatabase.
// It is stopped when the test ends.
func Influxd(t testing.TB) *Influx {
	t.Helper()
	bin := InfluxdBinary(t)
	dir := t.TempDir()
	var lastErr error
	for range 3 {
		inf, err := startInflux(t, bin, dir)
		if err == nil {
			return inf
		}
		lastErr = err
		if !errAddrInUse(err.Error()) {
			break
		}
	}
	t.Fatalf("testenv: %v", lastErr)
	return nil
}

func startInflux(t testing.TB, bin, dir string) (*Influx, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	rpcPort, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(conf, []byte(InfluxConfig(dir, httpPort, rpcPort)), 0o600); err != nil {
		return nil, fmt.Errorf("write influxdb.conf: %w", err)
	}
	inf := &Influx{
		URL:    "http://127.0.0.1:" + itoa(httpPort),
		Bucket: InfluxDatabase + "/autogen",
		Org:    "upswatch",
		t:      t,
		proc: &process{
			name:    "influxd",
			args:    []string{bin, "run", "-config", conf},
			logPath: filepath.Join(dir, "influxd.log"),
		},
	}
	if err := inf.start(); err != nil {
		return nil, err
	}
	t.Cleanup(inf.Kill)
	if err := inf.Exec("CREATE DATABASE " + InfluxDatabase); err != nil {
		return nil, err
	}
	return inf, nil
}

// InfluxConfig is influxd 1.8's configuration for tests and benchmarks,
// with its data under dir. It binds every listener to 127.0.0.1: influxd's
// defaults listen on all interfaces.
func InfluxConfig(dir string, httpPort, rpcPort int) string {
	q := func(p string) string { return fmt.Sprintf("%q", filepath.Join(dir, p)) }
	return `reporting-disabled = true
bind-address = "127.0.0.1:` + itoa(rpcPort) + `"

[meta]
  dir = ` + q("meta") + `

[data]
  dir = ` + q("data") + `
  wal-dir = ` + q("wal") + `
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:` + itoa(httpPort) + `"
  auth-enabled = false
  log-enabled = false
  flux-enabled = true
  flux-log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
`
}

func (inf *Influx) start() error {
	if err := inf.proc.start(); err != nil {
		return err
	}
	// The first start on a cold page cache takes a few seconds.
	err := inf.proc.waitReady(60*time.Second, inf.ping)
	if err != nil {
		_ = inf.proc.stop(os.Kill, time.Second)
		return fmt.Errorf("%w\ninfluxd log:\n%s", err, inf.proc.logTail())
	}
	return nil
}

func (inf *Influx) ping() error {
	resp, err := httpClient.Get(inf.URL + "/ping")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("GET /ping: %s", resp.Status)
	}
	return nil
}

// Exec runs an InfluxQL statement through the 1.x /query endpoint.
func (inf *Influx) Exec(stmt string) error {
	resp, err := httpClient.PostForm(inf.URL+"/query", url.Values{"q": {stmt}})
	if err != nil {
		return fmt.Errorf("influxql %q: %w", stmt, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	// A statement error comes back as 200 with an "error" member.
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"error"`) {
		return fmt.Errorf("influxql %q: %s: %s", stmt, resp.Status, body)
	}
	return nil
}

// Stop shuts influxd down cleanly, keeping its port and data for Start.
func (inf *Influx) Stop() {
	inf.t.Helper()
	if err := inf.proc.stop(sigterm, 30*time.Second); err != nil {
		inf.t.Fatalf("testenv: stop influxd: %v", err)
	}
}

// Start starts a stopped influxd again on the same port and data.
func (inf *Influx) Start() {
	inf.t.Helper()
	if err := inf.start(); err != nil {
		inf.t.Fatalf("testenv: restart influxd: %v", err)
	}
}

// Kill stops influxd abruptly (SIGKILL), as a crash would.
func (inf *Influx) Kill() {
	_ = inf.proc.stop(os.Kill, 0)
}
