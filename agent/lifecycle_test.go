package agent_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	agentconfig "github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

var agentBin struct {
	once sync.Once
	path string
	err  error
}

// buildAgent builds cmd/upswatch-agent once per test binary.
func buildAgent(t testing.TB) string {
	t.Helper()
	agentBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "upswatch-agent-bin-")
		if err != nil {
			agentBin.err = err
			return
		}
		agentBin.path = filepath.Join(dir, "upswatch-agent")
		out, err := exec.Command("go", "build", "-o", agentBin.path, "../cmd/upswatch-agent").CombinedOutput()
		if err != nil {
			agentBin.err = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if agentBin.err != nil {
		t.Fatal(agentBin.err)
	}
	return agentBin.path
}

// writeConfig renders c as the YAML an operator would write.
func writeConfig(t testing.TB, c agentconfig.Config) string {
	t.Helper()
	var units strings.Builder
	for _, u := range c.Units {
		fmt.Fprintf(&units, "  - ups: %s\n    serial: %q\n    password: %q\n", u.UPS, u.Serial, u.Password)
	}
	body := fmt.Sprintf(`broker:
  url: %s
  ack_timeout: %s
  reconnect_max: %s
  keepalive: %s
nut:
  addr: %s
poll: %s
interval: %s
buffer:
  dir: %s
log:
  level: debug
units:
%s`, c.Broker.URL, c.Broker.AckTimeout, c.Broker.ReconnectMax, c.Broker.KeepAlive, c.NUT.Addr, c.Poll, c.Interval, c.Buffer.Dir, units.String())
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The agent process killed with SIGKILL: its last will tells upswatch at
// once, and comm_lost fires.
func TestKilledAgentLastWill(t *testing.T) {
	t.Parallel()
	bin := buildAgent(t)
	s := sharedServe(t)
	serial := newSerial()
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	pw := s.register(t, serial)
	cfg := writeConfig(t, agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: pw}))
	cmd := exec.Command(bin, "--config", cfg)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	wait.Within(t, 20*time.Second, "the agent process's first reading at upswatch", func() bool { return s.latest(serial) != nil })

	killed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	ev := s.waitEvent(t, serial, "comm_lost", "firing", killed.Add(-time.Second), 10*time.Second)
	t.Logf("SIGKILL -> comm_lost after %v", time.Since(killed))
	if ev.At.Before(killed.Add(-time.Second)) {
		t.Errorf("comm_lost at %v, before the kill at %v", ev.At, killed)
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", logs.String())
	}
}

// upsd stopped: after stale_after failed polls the agent announces the
// unit offline and upswatch raises comm_lost; when upsd is back the unit
// is online again and comm_lost resolves.
func TestUpsdStopped(t *testing.T) {
	t.Parallel()
	s := sharedServe(t)
	serial := newSerial()
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	pw := s.register(t, serial)
	ra := runAgent(t, agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: pw}))
	wait.Within(t, 10*time.Second, "online", func() bool { return ra.stats(serial).Online && s.latest(serial) != nil })

	stopped := time.Now()
	if err := n.StopUPSD(); err != nil {
		t.Fatal(err)
	}
	s.waitEvent(t, serial, "comm_lost", "firing", stopped, 10*time.Second)
	t.Logf("upsd stopped -> comm_lost after %v", time.Since(stopped))
	if st := ra.stats(serial); st.Online || st.FailedPolls < 3 {
		t.Errorf("after upsd stopped: %+v", st)
	}

	restarted := time.Now()
	if err := n.StartUPSD(); err != nil {
		t.Fatal(err)
	}
	s.waitEvent(t, serial, "comm_lost", "resolved", restarted, 10*time.Second)
	if st := ra.stats(serial); !st.Online || st.FailedPolls != 0 {
		t.Errorf("after upsd restarted: %+v", st)
	}
}

// Stale data (the driver gone: upsd answers DATA-STALE or
// DRIVER-NOT-CONNECTED) counts as failed polls too.
func TestDriverGone(t *testing.T) {
	t.Parallel()
	s := sharedServe(t)
	serial := newSerial()
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	pw := s.register(t, serial)
	ra := runAgent(t, agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: pw}))
	wait.Within(t, 10*time.Second, "online", func() bool { return ra.stats(serial).Online })
	stopped := time.Now()
	if err := n.StopDriver("ups1"); err != nil {
		t.Fatal(err)
	}
	s.waitEvent(t, serial, "comm_lost", "firing", stopped, 20*time.Second)
	if st := ra.stats(serial); st.Online {
		t.Errorf("still online: %+v", st)
	}
}

// Several UPS on one upsd, each under its own serial and credentials:
// each reading lands on its own unit, and an outage of one is that
// unit's alone.
func TestSeveralUPS(t *testing.T) {
	t.Parallel()
	s := sharedServe(t)
	var units []testenv.NUTUnit
	var cfgUnits []agentconfig.Unit
	serials := []string{newSerial(), newSerial(), newSerial()}
	for i, serial := range serials {
		name := fmt.Sprintf("rack%d", i+1)
		units = append(units, testenv.NUTUnit{Name: name, Dump: baseDump(serial, 91+i)})
		cfgUnits = append(cfgUnits, agentconfig.Unit{UPS: name, Password: s.register(t, serial)})
	}
	n := testenv.NUT(t, units...)
	ra := runAgent(t, agentConfig(t, n, s, cfgUnits...))
	for i, serial := range serials {
		wait.Within(t, 10*time.Second, serial+" reading", func() bool {
			l := s.latest(serial)
			return l != nil && strings.Contains(fmt.Sprint(l), fmt.Sprintf("battery.charge:%d", 91+i))
		})
	}
	start := time.Now()
	n.Set(t, "rack2", "ups.status", "OB DISCHRG")
	fired := s.waitEvent(t, serials[1], "on_battery", "firing", start.Add(-time.Second), 10*time.Second)
	// The other units then have outages of their own: the first
	// on_battery in each one's timeline is its own, not rack2's.
	own := time.Now()
	n.Set(t, "rack1", "ups.status", "OB DISCHRG")
	n.Set(t, "rack3", "ups.status", "OB DISCHRG")
	for _, serial := range []string{serials[0], serials[2]} {
		ev := s.waitEvent(t, serial, "on_battery", "firing", time.Time{}, 10*time.Second)
		if ev.StartedAt.Before(own.Add(-100 * time.Millisecond)) {
			t.Errorf("%s: on_battery from %v, before its own outage at %v (rack2's began %v)", serial, ev.StartedAt, own, fired.StartedAt)
		}
	}
	if fired.Serial != serials[1] {
		t.Errorf("on_battery for %s", fired.Serial)
	}
	for _, serial := range serials {
		if st := ra.stats(serial); st.Published == 0 || !st.Online {
			t.Errorf("%s: %+v", serial, st)
		}
	}
}

// A corrupt buffer file left by an earlier run is reported and skipped;
// the agent works on.
func TestCorruptBufferAtStart(t *testing.T) {
	t.Parallel()
	s := sharedServe(t)
	serial := newSerial()
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	pw := s.register(t, serial)
	c := agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: pw})
	dir := filepath.Join(c.Buffer.Dir, serial)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, data := range [][]byte{bytes.Repeat([]byte("not a buffer record "), 50), {0, 0, 0, 1}} {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seg-%016d.log", i+1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ra := runAgent(t, c)
	wait.Within(t, 10*time.Second, "a reading despite the corrupt buffer", func() bool { return s.latest(serial) != nil })
	if st := ra.stats(serial); st.Buffer.CorruptFiles+st.Buffer.TruncatedTails != 2 || st.Buffer.CorruptFiles < 1 {
		t.Errorf("buffer stats %+v: the damaged files were not reported", st.Buffer)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.corrupt")); len(m) != 1 {
		t.Errorf("corrupt files set aside: %v", m)
	}
}
