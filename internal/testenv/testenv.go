// Package testenv starts the real external servers upswatch runs against
// at scale (InfluxDB 1.8 with its v2 compatibility API, Mosquitto) for
// integration tests. It is imported only by _test files.
//
// Every server binds 127.0.0.1 on free ports, keeps its data in
// t.TempDir() and is stopped by t.Cleanup. Servers can be stopped and
// started again on the same port and data to simulate an outage.
//
// The binaries come from scripts/deps.sh (`make deps`): mosquitto from
// apt, influxd built from source into the tools cache dir. Influxd is
// built on demand when missing; mosquitto is never installed from a test.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before the caller binds it; the server
// helpers retry with a new port when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("listen on 127.0.0.1:0: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var repoRoot = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/upswatch/upswatch\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod of github.com/upswatch/upswatch not found above the working directory")
		}
		dir = parent
	}
})

// RepoRoot returns the repository's root directory (where go.mod is).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

// ToolsDir is where built tools are cached: $UPSWATCH_TOOLS_DIR, else
// <repo root>/.cache/tools (gitignored). scripts/deps.sh uses the same.
func ToolsDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("UPSWATCH_TOOLS_DIR"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(t), ".cache", "tools")
}

// process is a server child process with a restartable command line.
type process struct {
	name    string
	args    []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
	err  error         // cmd's exit status, valid after done
}

// start launches the process; its output is appended to logPath.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s log: %w", p.name, err)
	}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// exited returns a channel closed when the running process exits, or nil
// when none runs.
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// stop signals the process and waits for it to exit; after grace it is
// killed. It is a no-op when the process is not running.
func (p *process) stop(sig os.Signal, grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
	p.mu.Lock()
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	return nil
}

// logTail returns the end of the process's log, for failure messages.
func (p *process) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 4000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return string(data)
}

// waitReady polls ready until it returns nil, the process exits or the
// deadline passes.
func (p *process) waitReady(deadline time.Duration, ready func() error) error {
	exited := p.exited()
	end := time.Now().Add(deadline)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ready(); last == nil {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s not ready after %v: %w", p.name, deadline, last)
		}
		select {
		case <-exited:
			p.mu.Lock()
			err := p.err
			p.cmd, p.done = nil, nil
			p.mu.Unlock()
			return fmt.Errorf("%s exited during startup: %v", p.name, err)
		case <-tick.C:
		}
	}
}

// errAddrInUse reports whether a server's log says a port was taken
// between FreePort and bind, so a retry on other ports may succeed.
func errAddrInUse(log string) bool {
	return bytes.Contains([]byte(log), []byte("address already in use")) ||
		bytes.Contains([]byte(log), []byte("Address already in use"))
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// sigterm is the polite stop signal for both servers.
var sigterm os.Signal = syscall.SIGTERM

func itoa(i int) string { return strconv.Itoa(i) }

// Background runs run(ctx) in a goroutine until the returned stop (or the
// test's cleanup) cancels ctx and waits for it to return; an error from
// run fails the test. stop may be called more than once.
func Background(t testing.TB, run func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}
