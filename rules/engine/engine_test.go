package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

const parts = 4

var t0 = time.Date(2025, 11, 24, 16, 0, 0, 0, time.UTC)

// fakeUnits is a registry of serial -> site.
type fakeUnits map[ups.Serial]string

func (f fakeUnits) Lookup(s ups.Serial) (registry.Unit, bool) {
	site, ok := f[s]
	return registry.Unit{Serial: s, Site: site}, ok
}

// clock is the engines' injected clock, moved by the test as it
// publishes readings.
type clock struct{ ms atomic.Int64 }

func (c *clock) Now() time.Time     { return time.UnixMilli(c.ms.Load()).UTC() }
func (c *clock) Set(t time.Time)    { c.ms.Store(t.UnixMilli()) }
func newClock(t time.Time) *clock   { c := &clock{}; c.Set(t); return c }
func serialFor(p, i int) ups.Serial { return findSerial(p, i) }
func reading(s ups.Serial, at time.Duration, status string) ups.Reading {
	r := ups.Reading{Serial: s, Time: t0.Add(at)}
	r.SetText("ups.status", status)
	r.SetNum("battery.charge", 100)
	r.SetNum("input.voltage", map[bool]float64{true: 0, false: 230}[status != "OL"])
	return r
}

// findSerial returns the i-th 12-digit serial of partition p.
func findSerial(p, i int) ups.Serial {
	for n := 100000000000; ; n++ {
		s := ups.Serial(fmt.Sprint(n))
		if ups.Partition(s, parts) == p {
			if i == 0 {
				return s
			}
			i--
		}
	}
}

type env struct {
	t         *testing.T
	pinnedTTL time.Duration // 0: 5 s
	lastConn  *nats.Conn    // the connection of the engine started last
	ns        *server.Server
	js        jetstream.JetStream
	clock     *clock
	units     fakeUnits
	eval      *rules.Evaluator
	// ticks counts the committed ticks of each partition, by any engine.
	ticks [parts]atomic.Int64
}

func newEnv(t *testing.T, units fakeUnits) *env {
	ns, _, js := bustest.Server(t)
	ctx := context.Background()
	if _, _, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{Partitions: parts, Replicas: 1, MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ns: ns, js: js, clock: newClock(t0), units: units, eval: rules.NewEvaluator(rules.DefaultCatalog())}
}

// running is an engine under test.
type running struct {
	e      *Engine
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with err set
	err    error
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run: %v", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func (env *env) start(id string, hook func(p int, r *ups.Reading)) *running {
	t := env.t
	nc, js := bustest.Connect(t, env.ns)
	env.lastConn = nc
	ttl := env.pinnedTTL
	if ttl == 0 {
		ttl = 5 * time.Second
	}
	reg := prometheus.NewRegistry()
	e, err := New(js, Config{Evaluator: env.eval, Partitions: parts, Units: env.units, TickEvery: 200 * time.Millisecond,
		PinnedTTL: ttl, Now: env.clock.Now, Registerer: reg, InstanceID: id})
	if err != nil {
		t.Fatal(err)
	}
	e.evaluated = hook
	e.ticked = func(p int, _ time.Time) { env.ticks[p].Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{e: e, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = e.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	select {
	case <-e.Ready():
	case <-r.done:
		t.Fatalf("Run: %v", r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("engine not ready")
	}
	return r
}

// publish sends one batch per partition of the readings, moving the clock
// to the newest reading.
func (env *env) publish(rs ...ups.Reading) {
	t := env.t
	by := map[int][]ups.Reading{}
	for _, r := range rs {
		p := ups.Partition(r.Serial, parts)
		by[p] = append(by[p], r)
		if r.Time.After(env.clock.Now()) {
			env.clock.Set(r.Time)
		}
	}
	for p, batch := range by {
		if _, err := env.js.Publish(context.Background(), bus.ReadingsSubject(p), ups.AppendBatch(nil, batch)); err != nil {
			t.Fatal(err)
		}
	}
}

// outage sends the readings of serials from..to (2 s apart): on line
// before 4 s, on battery from 4 s to 60 s, on line from 62 s.
func (env *env) outage(from, to time.Duration, serials ...ups.Serial) {
	for at := from; at < to; at += 2 * time.Second {
		status := "OL"
		if at >= 4*time.Second && at <= 60*time.Second {
			status = "OB DISCHRG"
		}
		var rs []ups.Reading
		for _, s := range serials {
			rs = append(rs, reading(s, at, status))
		}
		env.publish(rs...)
	}
}

// events reads the whole ALERTS stream.
func (env *env) events() []rules.Event {
	t := env.t
	ctx := context.Background()
	cons, err := env.js.OrderedConsumer(ctx, AlertsStream, jetstream.OrderedConsumerConfig{InactiveThreshold: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []rules.Event
	for n := info.NumPending; n > 0; {
		b, err := cons.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range b.Messages() {
			var ev rules.Event
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			if m.Subject() != AlertSubject(ev.Serial, ev.Rule) {
				t.Fatalf("event on subject %s, want %s", m.Subject(), AlertSubject(ev.Serial, ev.Rule))
			}
			out = append(out, ev)
			got++
		}
		if got == 0 {
			t.Fatal("ALERTS: fewer messages than pending")
		}
		n -= uint64(got)
	}
	return out
}

// count counts the events of serial with rule and kind.
func count(evs []rules.Event, s ups.Serial, rule string, k rules.EventKind) int {
	n := 0
	for _, ev := range evs {
		if ev.Serial == s && ev.Rule == rule && ev.Kind == k {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, what, cond)
}

// settle waits until the engines are quiescent: every partition consumer
// has delivered and had acked all its readings (so every batch's events
// are published), then every partition with readings has committed two
// more ticks (the second begun after that), so nothing a tick at the
// test's clock would publish is still to come. Absence is asserted after
// it, never after a sleep.
func (env *env) settle() {
	t := env.t
	t.Helper()
	ctx := context.Background()
	var busy [parts]bool
	waitFor(t, "the partition consumers drained", func() bool {
		for p := range parts {
			cons, err := env.js.Consumer(ctx, bus.ReadingsStream, ConsumerPrefix+fmt.Sprint(p))
			if err != nil {
				t.Fatalf("consumer of partition %d: %v", p, err)
			}
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatalf("consumer of partition %d: %v", p, err)
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
			busy[p] = info.Delivered.Stream > 0
		}
		return true
	})
	var from [parts]int64
	for p := range parts {
		from[p] = env.ticks[p].Load()
	}
	waitFor(t, "two ticks of every partition with readings", func() bool {
		for p := range parts {
			if busy[p] && env.ticks[p].Load() < from[p]+2 {
				return false
			}
		}
		return true
	})
}

func TestOutageFiresAndResolvesOnce(t *testing.T) {
	s := findSerial(1, 0)
	env := newEnv(t, fakeUnits{s: "paris"})
	r := env.start("a", nil)
	alerts := NewAlerts(env.js, env.units)
	ctx := context.Background()

	env.outage(0, 30*time.Second, s)
	waitFor(t, "on_battery firing", func() bool { return count(env.events(), s, "on_battery", rules.Firing) == 1 })

	for _, tc := range []struct {
		site string
		want int
	}{{"", 1}, {"paris", 1}, {"lyon", 0}} {
		act, err := alerts.Active(ctx, tc.site)
		if err != nil {
			t.Fatal(err)
		}
		if len(act) != tc.want {
			t.Fatalf("Active(%q) = %d alerts, want %d: %+v", tc.site, len(act), tc.want, act)
		}
		if tc.want == 1 && (act[0].Serial != s || act[0].Rule != "on_battery" || act[0].Kind != rules.Firing) {
			t.Fatalf("Active(%q) = %+v", tc.site, act[0])
		}
	}

	env.outage(30*time.Second, 70*time.Second, s)
	waitFor(t, "on_battery resolved", func() bool { return count(env.events(), s, "on_battery", rules.Resolved) == 1 })
	// Let the engine run on (ticks) and make sure nothing more comes.
	env.settle()
	evs := env.events()
	if n := count(evs, s, "on_battery", rules.Firing); n != 1 {
		t.Fatalf("%d on_battery firing events, want 1: %+v", n, evs)
	}
	if n := count(evs, s, "on_battery", rules.Resolved); n != 1 {
		t.Fatalf("%d on_battery resolved events, want 1: %+v", n, evs)
	}
	act, err := alerts.Active(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(act) != 0 {
		t.Fatalf("still active after resolution: %+v", act)
	}

	tl, err := alerts.Timeline(ctx, s, t0, t0.Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tl) != 2 || tl[0].Kind != rules.Firing || tl[1].Kind != rules.Resolved || tl[1].Duration < 50*time.Second {
		t.Fatalf("timeline = %+v", tl)
	}
	if tl, err = alerts.Timeline(ctx, s, t0, t0.Add(time.Hour), 1); err != nil || len(tl) != 1 || tl[0].Kind != rules.Resolved {
		t.Fatalf("timeline limit 1 = %+v, %v", tl, err)
	}
	if tl, err = alerts.Timeline(ctx, findSerial(2, 0), t0, t0.Add(time.Hour), 0); err != nil || len(tl) != 0 {
		t.Fatalf("timeline of a quiet unit = %+v, %v", tl, err)
	}
	if got := testutil.ToFloat64(r.e.m.evaluated); got != 35 {
		t.Fatalf("readings evaluated = %v, want 35", got)
	}
	if got := testutil.ToFloat64(r.e.m.events.WithLabelValues("on_battery", "firing")); got != 1 {
		t.Fatalf("events_total{on_battery,firing} = %v", got)
	}
	if got := testutil.ToFloat64(r.e.m.owned); got != 1 {
		t.Fatalf("owned partitions = %v, want 1 (only partition 1 had readings)", got)
	}
}

func TestRestartNeitherRefiresNorForgets(t *testing.T) {
	s := findSerial(3, 0)
	env := newEnv(t, fakeUnits{s: "paris"})
	r1 := env.start("a", nil)
	env.outage(0, 30*time.Second, s)
	waitFor(t, "on_battery firing", func() bool { return count(env.events(), s, "on_battery", rules.Firing) == 1 })
	r1.stop(t)

	r2 := env.start("b", nil)
	env.outage(30*time.Second, 70*time.Second, s)
	waitFor(t, "on_battery resolved", func() bool { return count(env.events(), s, "on_battery", rules.Resolved) == 1 })
	env.settle()
	evs := env.events()
	if n := count(evs, s, "on_battery", rules.Firing); n != 1 {
		t.Fatalf("%d firing events, want 1 (a re-fire after restart?): %+v", n, evs)
	}
	if got := testutil.ToFloat64(r2.e.m.events.WithLabelValues("on_battery", "firing")); got != 0 {
		t.Fatalf("the restarted engine published %v firing events", got)
	}
	for _, ev := range evs {
		if ev.Kind == rules.Resolved && ev.Rule == "on_battery" && ev.Duration < 50*time.Second {
			t.Fatalf("resolution forgot the outage start: duration %v", ev.Duration)
		}
	}
}

// An instance that dies without handing its partitions over (its
// connection simply gone, as in a crash) is replaced once the pin expires:
// the survivor resolves the outage the dead one fired, with its full
// duration, and never fires it again.
func TestCrashedInstanceIsTakenOver(t *testing.T) {
	s := findSerial(1, 0)
	env := newEnv(t, fakeUnits{s: "paris"})
	env.pinnedTTL = 2 * time.Second
	env.start("a", nil)
	crashed := env.lastConn
	env.outage(0, 30*time.Second, s)
	waitFor(t, "on_battery firing", func() bool { return count(env.events(), s, "on_battery", rules.Firing) == 1 })
	b := env.start("b", nil)
	crashed.Close() // no unpin, no final checkpoint: a crash

	env.outage(30*time.Second, 70*time.Second, s)
	waitFor(t, "on_battery resolved by the survivor", func() bool {
		return count(env.events(), s, "on_battery", rules.Resolved) == 1
	})
	env.settle()
	evs := env.events()
	if n := count(evs, s, "on_battery", rules.Firing); n != 1 {
		t.Fatalf("%d firing events after the takeover, want 1: %+v", n, evs)
	}
	if got := testutil.ToFloat64(b.e.m.events.WithLabelValues("on_battery", "firing")); got != 0 {
		t.Fatalf("the survivor published %v firing events", got)
	}
	for _, ev := range evs {
		if ev.Kind == rules.Resolved && ev.Rule == "on_battery" && ev.Duration < 50*time.Second {
			t.Fatalf("resolution forgot the outage start: duration %v", ev.Duration)
		}
	}
}

func TestTwoInstancesShareAndTakeOver(t *testing.T) {
	var serials []ups.Serial
	units := fakeUnits{}
	for p := range parts {
		for i := range 2 {
			s := findSerial(p, i)
			serials = append(serials, s)
			units[s] = "site" + fmt.Sprint(p)
		}
	}
	env := newEnv(t, units)

	var mu sync.Mutex
	by := map[int]map[string]int{} // partition -> instance -> readings
	hook := func(id string) func(p int, r *ups.Reading) {
		return func(p int, r *ups.Reading) {
			if ups.Partition(r.Serial, parts) != p {
				t.Errorf("reading of %s evaluated on partition %d", r.Serial, p)
			}
			mu.Lock()
			defer mu.Unlock()
			if by[p] == nil {
				by[p] = map[string]int{}
			}
			by[p][id]++
		}
	}
	snapshot := func() map[int]map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[int]map[string]int{}
		for p, m := range by {
			out[p] = map[string]int{}
			for k, v := range m {
				out[p][k] = v
			}
		}
		return out
	}
	ra := env.start("a", hook("a"))
	rb := env.start("b", hook("b"))

	env.outage(0, 30*time.Second, serials...)
	waitFor(t, "all firing", func() bool {
		evs := env.events()
		for _, s := range serials {
			if count(evs, s, "on_battery", rules.Firing) != 1 {
				return false
			}
		}
		return true
	})
	total := func(m map[string]int) int {
		n := 0
		for _, v := range m {
			n += v
		}
		return n
	}
	evaluatedAll := func(want int) func() bool {
		return func() bool {
			got := snapshot()
			for p := range parts {
				if total(got[p]) < want {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "every reading evaluated", evaluatedAll(2*15))
	first := snapshot()
	owner := map[int]string{}
	for p := range parts {
		if len(first[p]) != 1 {
			t.Fatalf("partition %d evaluated by %v, want exactly one instance", p, first[p])
		}
		for id, n := range first[p] {
			owner[p] = id
			if n != 2*15 {
				t.Fatalf("partition %d: %s evaluated %d readings, want 30", p, id, n)
			}
		}
	}
	t.Logf("owners: %v", owner)
	if got := testutil.ToFloat64(ra.e.m.owned) + testutil.ToFloat64(rb.e.m.owned); got != parts {
		t.Fatalf("owned partitions a+b = %v, want %d", got, parts)
	}

	// Stop the owner of partition 0; the other instance takes its
	// partitions over and resolves without firing again.
	stopped, survivor := ra, rb
	if owner[0] == "b" {
		stopped, survivor = rb, ra
	}
	stopped.stop(t)
	env.outage(30*time.Second, 70*time.Second, serials...)
	waitFor(t, "all resolved", func() bool {
		evs := env.events()
		for _, s := range serials {
			if count(evs, s, "on_battery", rules.Resolved) != 1 {
				return false
			}
		}
		return true
	})
	waitFor(t, "every reading evaluated", evaluatedAll(2*35))
	env.settle()
	evs := env.events()
	for _, s := range serials {
		if n := count(evs, s, "on_battery", rules.Firing); n != 1 {
			t.Fatalf("%s: %d firing events, want 1", s, n)
		}
	}
	for _, ev := range evs {
		if ev.Kind == rules.Resolved && ev.Duration < 50*time.Second {
			t.Fatalf("%s: resolution forgot the outage start: %v", ev.Serial, ev.Duration)
		}
	}
	if got := testutil.ToFloat64(survivor.e.m.owned); got != parts {
		t.Fatalf("survivor owns %v partitions, want %d", got, parts)
	}
	second := snapshot()
	survivorID := survivor.e.cfg.InstanceID
	for p := range parts {
		if got := second[p][survivorID] - first[p][survivorID]; got != 2*20 {
			t.Fatalf("partition %d: survivor evaluated %d readings after the stop, want 40 (%v -> %v)", p, got, first[p], second[p])
		}
	}
}

func TestNewValidates(t *testing.T) {
	_, _, js := bustest.Server(t)
	ev := rules.NewEvaluator(rules.DefaultCatalog())
	for name, cfg := range map[string]Config{
		"no evaluator":  {Partitions: 1, Units: fakeUnits{}},
		"no units":      {Partitions: 1, Evaluator: ev},
		"no partitions": {Evaluator: ev, Units: fakeUnits{}},
	} {
		if _, err := New(js, cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := New(js, Config{Partitions: 1, Evaluator: ev, Units: fakeUnits{}}); err != nil {
		t.Fatal(err)
	}
}
