package agent_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	agentconfig "github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

// procStats reads a process's CPU time (user+system) and its resident
// and peak resident memory from /proc.
func procStats(pid int) (cpu time.Duration, rss, hwm int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// Fields after the command name (which may hold spaces) in ")".
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	cpu = time.Duration(utime+stime) * time.Second / hz
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(l, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return cpu, rss, hwm, nil
}

// The agent binary (as shipped: -s -w) with 10 UPS on one upsd at the
// default 2 s poll and 30 s interval: CPU share of one core and memory
// over a 60 s window (BENCH_AGENT_WINDOW overrides) after warm-up.
func BenchmarkAgentFootprint(b *testing.B) {
	window := 60 * time.Second
	if v := os.Getenv("BENCH_AGENT_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		window = d
	}
	s := sharedServe(b)
	var units []testenv.NUTUnit
	var cfgUnits []agentconfig.Unit
	for i := range 10 {
		serial := newSerial()
		name := fmt.Sprintf("ups%d", i)
		units = append(units, testenv.NUTUnit{Name: name, Dump: baseDump(serial, 90+i)})
		cfgUnits = append(cfgUnits, agentconfig.Unit{UPS: name, Serial: serial, Password: s.register(b, serial)})
	}
	n := testenv.NUT(b, units...)
	c := agentConfig(b, n, s, cfgUnits...)
	c.Poll, c.Interval, c.Broker.KeepAlive = 2*time.Second, 30*time.Second, 30*time.Second
	bin := buildAgent(b)
	cfg := writeConfig(b, c)
	cfgData, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(cfgData, []byte("level: debug"), []byte("level: info"), 1), 0o600)
	for b.Loop() {
		cmd := exec.Command(bin, "--config", cfg)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for _, u := range cfgUnits {
			wait.Within(b, 20*time.Second, "reading of "+u.Serial, func() bool { return s.latest(u.Serial) != nil })
		}
		cpu0, _, _, err := procStats(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		// Sample memory through the window; the agent's CPU is what the
		// kernel accounted to it.
		var rss int64
		for time.Since(t0) < window {
			time.Sleep(time.Second)
			_, r, _, err := procStats(cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			rss = max(rss, r)
		}
		cpu1, _, hwm, err := procStats(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(t0)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		b.ReportMetric(100*float64(cpu1-cpu0)/float64(elapsed), "%cpu")
		b.ReportMetric(float64(rss)/(1<<20), "MB-rss")
		b.ReportMetric(float64(hwm)/(1<<20), "MB-peak-rss")
		b.Logf("10 UPS, poll 2s: %.2f%% of a core over %v, RSS %.1f MB (peak %.1f MB)",
			100*float64(cpu1-cpu0)/float64(elapsed), elapsed.Round(time.Second), float64(rss)/(1<<20), float64(hwm)/(1<<20))
	}
}

// Time from `upsrw -s ups.status=...` on a real upsd to the alert event
// in upswatch's timeline, with the agent at its default 2 s poll (and
// on_battery without pending period): on_battery on each outage,
// power_restored on each return. 5 outages per iteration.
func BenchmarkStatusChangeToAlert(b *testing.B) {
	s := sharedServe(b)
	serial := newSerial()
	n := testenv.NUT(b, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	c := agentConfig(b, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: s.register(b, serial)})
	c.Poll = 2 * time.Second
	c.Log.Level = "info"
	runAgent(b, c)
	wait.Within(b, 20*time.Second, "first reading", func() bool { return s.latest(serial) != nil })
	var lat, pipe []time.Duration
	for b.Loop() {
		for range 5 {
			for _, step := range []struct{ status, volts, kind string }{
				{"OB DISCHRG", "0", "firing"},
				{"OL CHRG", "230.0", "resolved"},
			} {
				// A random phase against the poll: waiting for the event
				// would otherwise line every change up just after a poll,
				// the worst case each time.
				time.Sleep(rand.N(c.Poll))
				start := time.Now()
				n.Set(b, "ups1", "ups.status", step.status)
				n.Set(b, "ups1", "input.voltage", step.volts)
				ev := s.waitEvent(b, serial, "on_battery", step.kind, start.Add(-100*time.Millisecond), 20*time.Second)
				lat = append(lat, time.Since(start))
				// The event's time is the reading's (the poll that saw the
				// change): from there on it is publish, ingest, rules.
				pipe = append(pipe, time.Since(ev.At))
			}
		}
	}
	slices.Sort(lat)
	slices.Sort(pipe)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "ms-p50")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "ms-max")
	b.ReportMetric(float64(pipe[len(pipe)/2].Milliseconds()), "ms-poll-to-event-p50")
	b.Logf("upsrw -> alert event, poll 2s, %d changes: p50 %v, max %v; from the poll that saw it: p50 %v, max %v (includes the 20 ms API polling of this test)",
		len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond),
		pipe[len(pipe)/2].Round(time.Millisecond), pipe[len(pipe)-1].Round(time.Millisecond))
}
