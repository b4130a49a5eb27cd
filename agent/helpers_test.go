package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/upswatch/upswatch/agent"
	agentconfig "github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/app"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/servetest"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

// serve is a whole upswatch running in-process (embedded broker, NATS,
// SQLite), as the app tests start it.
type serve struct {
	t       testing.TB
	cfg     config.Config
	app     *app.App
	cancel  context.CancelFunc
	done    chan error
	mqttURL string
	httpURL string
	token   string
	api     *servetest.Client
}

// testRules: on_battery fires on the first OB reading (no pending
// period), so the tests measure the agent's latency, not the catalog's;
// no flap detection, which would hold on_battery back after the
// benchmark's third outage in a row.
const testRules = "rules:\n  on_battery:\n    for: 0s\n  power_unstable:\n    enabled: false\n"

func logWriter() io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return io.Discard
}

// startServe starts upswatch on dataDir. mqttAddr "" picks a free port;
// a restart passes the previous one so devices reconnect to it. Each
// option changes the configuration last.
func startServe(t testing.TB, dataDir, mqttAddr, httpAddr string, options ...func(*config.Config)) *serve {
	t.Helper()
	c := config.Default()
	c.DataDir = dataDir
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	if mqttAddr == "" {
		mqttAddr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	}
	c.HTTP.Addr = httpAddr
	c.MQTT.Listen = mqttAddr
	c.MQTT.ClientID = "upswatch-test"
	c.NATS.Partitions = 2
	rules := filepath.Join(dataDir, "..", "rules-"+filepath.Base(dataDir)+".yaml")
	if err := os.WriteFile(rules, []byte(testRules), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Rules.File = rules
	for _, o := range options {
		o(&c)
	}
	a, err := app.New(c, slog.New(slog.NewTextHandler(logWriter(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	a.Out = io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	s := &serve{t: t, cfg: c, app: a, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Run(ctx) }()
	select {
	case <-a.Started():
	case err := <-s.done:
		t.Fatalf("serve exited before starting: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start within 60s")
	}
	s.mqttURL, s.httpURL, s.token = a.MQTTURL(), "http://"+a.HTTPAddr(), a.AdminToken()
	s.api = &servetest.Client{TB: t, Base: s.httpURL, Token: s.token}
	wait.Within(t, 30*time.Second, "serve ready", func() bool {
		return s.api.Ready()
	})
	return s
}

// stop ends serve and waits; stop is idempotent.
func (s *serve) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("serve: %v", err)
		}
	case <-time.After(60 * time.Second):
		s.t.Error("serve did not stop within 60s")
	}
}

// register adds a unit and returns its MQTT password.
func (s *serve) register(t testing.TB, serial string) string {
	t.Helper()
	api := *s.api // the shared serve's client names the test that started it
	api.TB = t
	return api.Register(serial, "hq").MQTT.Password
}

func (s *serve) latest(serial string) map[string]any {
	var out map[string]any
	if code, _ := s.api.Call("GET", "/v1/units/"+serial+"/latest", nil, &out); code != http.StatusOK {
		return nil
	}
	return out
}

type event struct {
	Kind       string        `json:"kind"`
	Rule       string        `json:"rule"`
	Serial     string        `json:"serial"`
	At         time.Time     `json:"at"`
	StartedAt  time.Time     `json:"started_at"`
	EndedAt    time.Time     `json:"ended_at"`
	Duration   time.Duration `json:"duration_ns"`
	Status     string        `json:"status"`
	Historical bool          `json:"historical"`
}

func (s *serve) timeline(serial string) []event {
	var out struct{ Events []event }
	s.api.Call("GET", "/v1/units/"+serial+"/alerts?from=0", nil, &out)
	return out.Events
}

// find returns the first event of rule and kind after since, if any.
func find(evs []event, rule, kind string, since time.Time) (event, bool) {
	for _, e := range evs {
		if e.Rule == rule && e.Kind == kind && !e.At.Before(since) {
			return e, true
		}
	}
	return event{}, false
}

// waitEvent polls the unit's alert timeline until the event shows up; on
// failure it shows the timeline it saw.
func (s *serve) waitEvent(t testing.TB, serial, rule, kind string, since time.Time, within time.Duration) event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		evs := s.timeline(serial)
		if ev, ok := find(evs, rule, kind, since); ok {
			return ev
		}
		if time.Now().After(deadline) {
			for _, e := range evs {
				t.Logf("timeline: %s %s at %s (started %s, status %q)", e.Rule, e.Kind, e.At.Format("15:04:05.000"), e.StartedAt.Format("15:04:05.000"), e.Status)
			}
			t.Fatalf("%s %s %s since %s: not within %s", serial, rule, kind, since.Format("15:04:05.000"), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type point struct {
	Time  time.Time `json:"time"`
	Mean  float64   `json:"mean"`
	Min   float64   `json:"min"`
	Count int       `json:"count"`
}

// history returns one field's points, one per reading when every is
// finer than the readings' spacing.
func (s *serve) history(t testing.TB, serial, field string, from, to time.Time, every time.Duration) []point {
	t.Helper()
	var h struct {
		Fields []struct {
			Field  string  `json:"field"`
			Points []point `json:"points"`
		} `json:"fields"`
	}
	path := fmt.Sprintf("/v1/units/%s/history?from=%d&to=%d&every=%s&fields=%s", serial, from.UnixMilli(), to.UnixMilli(), every, field)
	if code, body := s.api.Call("GET", path, nil, &h); code != http.StatusOK {
		t.Fatalf("history: %d %s", code, body)
	}
	for _, f := range h.Fields {
		if f.Field == field {
			var out []point
			for _, p := range f.Points {
				if p.Count > 0 {
					out = append(out, p)
				}
			}
			return out
		}
	}
	return nil
}

// shared is one serve for the tests that need no restart.
var shared struct {
	once sync.Once
	s    *serve
	err  error
	dir  string
}

func sharedServe(t testing.TB) *serve {
	t.Helper()
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "upswatch-agent-test-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		shared.s = startServe(t, filepath.Join(dir, "data"), "", "")
		shared.s.t = &cleanupTB{}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	if shared.s == nil {
		t.Fatal("the shared serve failed to start in an earlier test")
	}
	return shared.s
}

// cleanupTB reports errors of the shared serve's stop, which runs after
// every test (TestMain).
type cleanupTB struct{ testing.TB }

func (cleanupTB) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (cleanupTB) Error(args ...any)                 { fmt.Fprintln(os.Stderr, args...) }

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.s != nil {
		shared.s.stop()
		os.RemoveAll(shared.dir)
	}
	if agentBin.path != "" {
		os.RemoveAll(filepath.Dir(agentBin.path))
	}
	os.Exit(code)
}

// serial returns a distinct 12-digit serial per test and index.
var serialSeq struct {
	mu sync.Mutex
	n  int
}

func newSerial() string {
	serialSeq.mu.Lock()
	defer serialSeq.mu.Unlock()
	serialSeq.n++
	return fmt.Sprintf("%06d%06d", os.Getpid()%1000000, serialSeq.n)
}

// baseDump is an on-line UPS as dummy-ups serves it.
func baseDump(serial string, charge int) []byte {
	return []byte(fmt.Sprintf(`battery.charge: %d
battery.charge.low: 10
battery.runtime: 1800
device.mfr: Test
device.model: Test UPS 1500
device.serial: %s
input.voltage: 230.0
input.voltage.nominal: 230
output.voltage: 230.0
ups.load: 25
ups.status: OL
`, charge, serial))
}

// agentConfig is an agent for units on n and s, polling fast so the
// tests are short.
func agentConfig(t testing.TB, n *testenv.NUTServer, s *serve, units ...agentconfig.Unit) agentconfig.Config {
	c := agentconfig.Default()
	c.Broker.URL = s.mqttURL
	c.Broker.AckTimeout = 2 * time.Second
	c.Broker.ReconnectMax = 500 * time.Millisecond
	c.Broker.KeepAlive = 2 * time.Second
	c.NUT.Addr = n.Addr
	c.Poll = 200 * time.Millisecond
	c.Interval = 5 * time.Second
	c.Buffer.Dir = filepath.Join(t.TempDir(), "buffer")
	c.Units = units
	if testing.Verbose() {
		c.Log.Level = "debug"
	}
	return c
}

type runningAgent struct {
	a    *agent.Agent
	stop func()
}

// runAgent runs the agent in-process until the test ends (or stop).
func runAgent(t testing.TB, c agentconfig.Config) *runningAgent {
	t.Helper()
	a, err := agent.New(c, slog.New(slog.NewTextHandler(logWriter(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("agent did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("agent not ready within 30s")
	}
	return &runningAgent{a: a, stop: stop}
}

func (r *runningAgent) stats(serial string) agent.UnitStats {
	for _, s := range r.a.Stats() {
		if s.Serial == serial {
			return s
		}
	}
	return agent.UnitStats{}
}
