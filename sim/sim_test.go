package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/upswatch/upswatch/ups"
)

const (
	watcherUser = "watcher"
	watcherPass = "watcher-secret"
)

// deviceAuth admits units by serial and password and lets each publish
// only under its own topic, as the real broker does; the watcher may only
// subscribe. It records who published what.
type deviceAuth struct {
	mqtt.HookBase
	creds map[string]string

	mu   sync.Mutex
	pubs []publishRecord
}

type publishRecord struct{ user, topic string }

func (h *deviceAuth) ID() string { return "device-auth" }

func (h *deviceAuth) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish
}

func (h *deviceAuth) OnConnectAuthenticate(_ *mqtt.Client, pk packets.Packet) bool {
	want, ok := h.creds[string(pk.Connect.Username)]
	return ok && want == string(pk.Connect.Password)
}

func (h *deviceAuth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if user == watcherUser {
		return !write
	}
	return write && strings.HasPrefix(topic, "ups/"+user+"/")
}

func (h *deviceAuth) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.mu.Lock()
	h.pubs = append(h.pubs, publishRecord{string(cl.Properties.Username), pk.TopicName})
	h.mu.Unlock()
	return pk, nil
}

func (h *deviceAuth) records() []publishRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]publishRecord(nil), h.pubs...)
}

// startBroker runs mochi on 127.0.0.1:0 and returns its URL.
func startBroker(t testing.TB, units []Unit) (string, *deviceAuth) {
	t.Helper()
	auth := &deviceAuth{creds: map[string]string{watcherUser: watcherPass}}
	for _, u := range units {
		auth.creds[string(u.Serial)] = u.Password
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(auth, nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return "tcp://" + l.Address(), auth
}

type message struct {
	topic    string
	payload  []byte
	retained bool
}

// watch subscribes to filter and returns the channel messages arrive on.
func watch(t *testing.T, url, id, filter string) <-chan message {
	t.Helper()
	ch := make(chan message, 10000)
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(id).
		SetUsername(watcherUser).SetPassword(watcherPass)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		ch <- message{m.Topic(), bytes.Clone(m.Payload()), m.Retained()}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return ch
}

// next waits for the first message satisfying ok.
func next(t *testing.T, ch <-chan message, what string, ok func(message) bool) message {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			if ok(m) {
				return m
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func testUnits(n int) []Unit {
	us := make([]Unit, n)
	for i := range us {
		us[i] = Unit{Serial: ups.Serial("10000000000" + string(rune('0'+i))), Password: "pw-" + string(rune('a'+i))}
	}
	return us
}

// telemetry is a decoded JSON reading with where it came from.
type telemetry struct {
	serial ups.Serial
	offset time.Duration // ts minus the run's start
	vars   map[string]any
}

// collectTelemetry reads n telemetry messages and decodes them per the
// device contract.
func collectTelemetry(t *testing.T, ch <-chan message, n int, start time.Time) []telemetry {
	t.Helper()
	var out []telemetry
	for len(out) < n {
		m := next(t, ch, "telemetry", func(m message) bool { return strings.HasSuffix(m.topic, "/telemetry") })
		parts := strings.Split(m.topic, "/")
		if len(parts) != 3 || parts[0] != "ups" || !ups.ValidSerial(parts[1]) {
			t.Fatalf("topic %q", m.topic)
		}
		var vars map[string]any
		dec := json.NewDecoder(bytes.NewReader(m.payload))
		dec.UseNumber()
		if err := dec.Decode(&vars); err != nil {
			t.Fatalf("payload on %s is not a JSON object: %v\n%s", m.topic, err, m.payload)
		}
		ts, err := vars["ts"].(json.Number).Int64()
		if err != nil {
			t.Fatalf("ts %v: %v", vars["ts"], err)
		}
		if _, ok := vars["ups.status"].(string); !ok {
			t.Fatalf("no ups.status string in %s", m.payload)
		}
		out = append(out, telemetry{ups.Serial(parts[1]), time.UnixMilli(ts).Sub(start), vars})
	}
	return out
}

func newSim(t *testing.T, cfg Config) *Simulator {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestRunPublishesWithEachUnitsCredentials(t *testing.T) {
	units := testUnits(3)
	url, auth := startBroker(t, units)
	ch := watch(t, url, "w1", "ups/#")
	const count = 5
	s := newSim(t, Config{BrokerURL: url, Units: units, Interval: 20 * time.Millisecond, Count: count, QoS: 1, Seed: 1})
	if err := s.Run(t.Context()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := s.Stats()
	want := uint64(len(units) * count)
	if st.Published != want || st.Acked != want || st.Errors != 0 || st.Connected != len(units) {
		t.Fatalf("stats %+v, want %d published and acked by %d units", st, want, len(units))
	}
	perUnit := map[ups.Serial]int{}
	for _, r := range collectTelemetry(t, ch, int(want), st.Start) {
		perUnit[r.serial]++
		if r.offset < 0 || r.offset >= count*20*time.Millisecond {
			t.Errorf("%s reading at offset %v", r.serial, r.offset)
		}
	}
	for _, u := range units {
		if perUnit[u.Serial] != count {
			t.Errorf("%s sent %d readings, want %d", u.Serial, perUnit[u.Serial], count)
		}
	}
	// The broker saw each topic published by its own unit's credentials.
	for _, r := range auth.records() {
		if !strings.HasPrefix(r.topic, "ups/"+r.user+"/") {
			t.Errorf("%s published on %s", r.user, r.topic)
		}
	}
	// A clean stop leaves offline retained, as a device shutting down does.
	late := watch(t, url, "w2", "ups/+/status")
	for range units {
		m := next(t, late, "retained status", func(message) bool { return true })
		if !m.retained || string(m.payload) != "offline" {
			t.Errorf("%s = %q retained=%v after stop, want retained offline", m.topic, m.payload, m.retained)
		}
	}
}

func TestOutageProducesOBThenOL(t *testing.T) {
	units := testUnits(2)
	url, _ := startBroker(t, units)
	ch := watch(t, url, "w1", "ups/+/telemetry")
	outage := Event{Kind: Outage, At: 100 * time.Millisecond, For: 200 * time.Millisecond, Units: []ups.Serial{units[0].Serial}}
	const count = 25
	s := newSim(t, Config{BrokerURL: url, Units: units, Interval: 20 * time.Millisecond, Count: count, QoS: 1,
		Events: []Event{outage}, Seed: 2})
	if err := s.Run(t.Context()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var ob, olAfter int
	for _, r := range collectTelemetry(t, ch, len(units)*count, s.Stats().Start) {
		status := r.vars["ups.status"].(string)
		inOutage := r.serial == units[0].Serial && outage.activeAt(r.offset)
		switch {
		case inOutage:
			ob++
			if status != "OB DISCHRG" || r.vars["input.voltage"].(json.Number) != "0.0" {
				t.Errorf("%s at %v in outage: status %q input.voltage %v", r.serial, r.offset, status, r.vars["input.voltage"])
			}
		case !strings.HasPrefix(status, "OL"):
			t.Errorf("%s at %v outside outage: status %q", r.serial, r.offset, status)
		case r.serial == units[0].Serial && r.offset >= outage.At+outage.For:
			olAfter++
			if status != "OL CHRG" {
				t.Errorf("%s at %v after outage: status %q, want OL CHRG", r.serial, r.offset, status)
			}
		}
	}
	if ob != 10 || olAfter != count-15 {
		t.Fatalf("%d OB readings and %d after restore, want 10 and %d", ob, olAfter, count-15)
	}
}

// lbDump has a one-second battery: half of it is gone, and LB on, after
// half a second on battery.
const lbDump = `battery.charge: 100
battery.charge.low: 50
battery.runtime: 1
input.voltage: 120.0
ups.load: 30
ups.status: OL
`

func TestLowBatteryAppearsWhenBatteryDrains(t *testing.T) {
	units := testUnits(1)
	dump := filepath.Join(t.TempDir(), "small.dev")
	if err := os.WriteFile(dump, []byte(lbDump), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _ := startBroker(t, units)
	ch := watch(t, url, "w1", "ups/+/telemetry")
	const count = 50
	s := newSim(t, Config{BrokerURL: url, Units: units, Interval: 20 * time.Millisecond, Count: count, QoS: 1,
		Dumps: []string{dump}, Events: []Event{{Kind: Outage, At: 100 * time.Millisecond}}})
	if err := s.Run(t.Context()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	firstLB := time.Duration(-1)
	for _, r := range collectTelemetry(t, ch, count, s.Stats().Start) {
		status := r.vars["ups.status"].(string)
		if strings.Contains(status, "LB") && firstLB < 0 {
			firstLB = r.offset
			if status != "OB DISCHRG LB" {
				t.Errorf("status %q, want OB DISCHRG LB", status)
			}
		}
	}
	if firstLB != 600*time.Millisecond {
		t.Fatalf("LB first at %v, want 600ms (100ms + half the 1s battery)", firstLB)
	}
}

func TestCommLossFiresWillThenReconnects(t *testing.T) {
	units := testUnits(1)
	url, _ := startBroker(t, units)
	status := watch(t, url, "w1", "ups/+/status")
	tele := watch(t, url, "w2", "ups/+/telemetry")
	loss := Event{Kind: CommLoss, At: 100 * time.Millisecond, For: 300 * time.Millisecond}
	s := newSim(t, Config{BrokerURL: url, Units: units, Interval: 20 * time.Millisecond, QoS: 1, Events: []Event{loss}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	is := func(want string) func(message) bool {
		return func(m message) bool { return string(m.payload) == want }
	}
	next(t, status, "online", is("online"))
	// A late subscriber gets the retained online.
	if m := next(t, watch(t, url, "w3", "ups/+/status"), "retained online", func(message) bool { return true }); !m.retained || string(m.payload) != "online" {
		t.Fatalf("late subscriber got %q retained=%v, want retained online", m.payload, m.retained)
	}
	next(t, status, "will", is("offline"))
	if m := next(t, watch(t, url, "w4", "ups/+/status"), "retained offline", func(message) bool { return true }); !m.retained || string(m.payload) != "offline" {
		t.Fatalf("late subscriber got %q retained=%v, want the retained will", m.payload, m.retained)
	}
	next(t, status, "online after reconnect", is("online"))
	start := s.Stats().Start
	// Readings resume after the link is back, and none was sent while it
	// was down.
	for {
		r := collectTelemetry(t, tele, 1, start)[0]
		if loss.activeAt(r.offset) {
			t.Fatalf("reading at %v sent during the communication loss", r.offset)
		}
		if r.offset >= loss.At+loss.For {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := s.Stats(); st.Published == 0 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUPSCModeReplaysDump(t *testing.T) {
	units := testUnits(2)
	dir := t.TempDir()
	dumps := []string{filepath.Join(dir, "a.dev"), filepath.Join(dir, "b.dev")}
	if err := os.WriteFile(dumps[0], []byte(drainDump), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dumps[1], []byte(lbDump), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _ := startBroker(t, units)
	ch := watch(t, url, "w1", "ups/+/telemetry")
	s := newSim(t, Config{BrokerURL: url, Units: units, Interval: 20 * time.Millisecond, Count: 1, QoS: 0,
		Format: FormatUPSC, Dumps: dumps})
	if err := s.Run(t.Context()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := s.Stats(); st.Published != 2 || st.Acked != 0 {
		t.Fatalf("stats %+v: QoS 0 is never acked", st)
	}
	wantLines := map[string]int{"ups/" + string(units[0].Serial) + "/telemetry": 15, "ups/" + string(units[1].Serial) + "/telemetry": 6}
	for range units {
		m := next(t, ch, "upsc telemetry", func(message) bool { return true })
		text := string(m.payload)
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		if len(lines) != wantLines[m.topic] {
			t.Errorf("%s: %d lines, want %d:\n%s", m.topic, len(lines), wantLines[m.topic], text)
		}
		for _, l := range lines {
			if name, _, ok := strings.Cut(l, ": "); !ok || strings.ContainsAny(name, " \t") {
				t.Errorf("%s: line %q is not name: value", m.topic, l)
			}
		}
		if strings.Contains(text, "#") && !strings.Contains(text, `"ES"`) {
			t.Errorf("%s: dump comments leaked:\n%s", m.topic, text)
		}
	}
}

func TestRunCountsUnitsThatCannotConnect(t *testing.T) {
	units := testUnits(2)
	url, auth := startBroker(t, units[:1])
	units[1].Password = "wrong"
	s := newSim(t, Config{BrokerURL: url, Units: units, Interval: 10 * time.Millisecond, Count: 3, QoS: 1})
	if err := s.Run(t.Context()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := s.Stats(); st.Connected != 1 || st.ConnectFailed != 1 || st.Published != 3 {
		t.Fatalf("stats %+v, want 1 connected, 1 failed, 3 published", st)
	}
	for _, r := range auth.records() {
		if r.user == string(units[1].Serial) {
			t.Fatalf("unit with a wrong password published on %s", r.topic)
		}
	}

	// With nobody able to connect, Run fails.
	s = newSim(t, Config{BrokerURL: url, Units: units[1:], Count: 1})
	if err := s.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "no unit could connect") {
		t.Fatalf("Run err = %v", err)
	}
}

func TestRunStopsOnContext(t *testing.T) {
	units := testUnits(2)
	url, _ := startBroker(t, units)
	ch := watch(t, url, "w1", "ups/+/telemetry")
	s := newSim(t, Config{BrokerURL: url, Units: units, Interval: 10 * time.Millisecond, QoS: 1})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	next(t, ch, "a reading", func(message) bool { return true })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := s.Run(t.Context()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := func() Config {
		return Config{BrokerURL: "tcp://127.0.0.1:1883", Units: testUnits(2)}
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"scheme", func(c *Config) { c.BrokerURL = "http://x" }, `broker URL "http://x": scheme must be tcp, mqtt, ssl, tls or mqtts`},
		{"no host", func(c *Config) { c.BrokerURL = "tcp://" }, `broker URL "tcp://" has no host`},
		{"prefix", func(c *Config) { c.Prefix = "ups/#" }, `prefix "ups/#" must not hold wildcards or start or end with /`},
		{"no units", func(c *Config) { c.Units = nil }, "no units"},
		{"bad serial", func(c *Config) { c.Units[0].Serial = "12" }, `unit "12": serial must be exactly 12 or 16 digits`},
		{"duplicate", func(c *Config) { c.Units[1] = c.Units[0] }, "unit 100000000000 listed twice"},
		{"qos", func(c *Config) { c.QoS = 3 }, "QoS 3 (want 0, 1 or 2)"},
		{"format", func(c *Config) { c.Format = "xml" }, `format "xml" (want json or upsc)`},
		{"negative count", func(c *Config) { c.Count = -1 }, "negative count"},
		{"event unit", func(c *Config) {
			c.Events = []Event{{Kind: Outage, Units: []ups.Serial{"999999999999"}}}
		}, "event outage@0s:999999999999 names unit 999999999999, which is not simulated"},
		{"event kind", func(c *Config) { c.Events = []Event{{}} }, "event 0 (EventKind(0)@0s): unknown kind 0"},
		{"dump", func(c *Config) { c.Dumps = []string{filepath.Join(t.TempDir(), "missing.dev")} }, "read dump: open "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.mutate(&cfg)
			_, err := New(cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New err = %v, want ErrConfig with %q", err, tt.want)
			}
		})
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("good config: %v", err)
	}
}
