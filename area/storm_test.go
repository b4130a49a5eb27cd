package area

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/ups"
)

var stormUnits = flag.Int("storm.units", 10000, "units of the one site in BenchmarkAreaStorm")

// storm is one site of n units whose every unit loses its link at once:
// n comm_lost Firings on ALERTS, as when a site's network drops.
type storm struct {
	js    jetstream.JetStream
	url   string
	units fakeUnits
	n     int
}

func stormSerial(i int) ups.Serial { return ups.Serial(fmt.Sprintf("9%011d", i)) }

func newStorm(tb testing.TB, n int) *storm {
	tb.Helper()
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{StoreDir: tb.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	s := &storm{url: ns.ClientURL(), units: fakeUnits{}, n: n}
	s.js = connect(tb, s.url)
	if _, _, err := engine.EnsureAlerts(context.Background(), s.js, 0, 1); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		s.units[stormSerial(i)] = registry.Unit{Serial: stormSerial(i), Site: "plant"}
	}
	return s
}

// publish puts the n comm_lost Firings on ALERTS, all silent since at.
func (s *storm) publish(tb testing.TB, at time.Time) {
	tb.Helper()
	var futures []jetstream.PubAckFuture
	for i := range s.n {
		ev := rules.Event{Kind: rules.Firing, Rule: commLost, Severity: rules.Warning, Serial: stormSerial(i),
			At: at, StartedAt: at, Status: "OL",
			Fingerprint: fmt.Sprintf("%s/comm_lost/%d", stormSerial(i), at.UnixMilli())}
		b, err := json.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		f, err := s.js.PublishAsync(engine.AlertSubject(ev.Serial, ev.Rule), b, jetstream.WithMsgID(ev.DedupID()))
		if err != nil {
			tb.Fatal(err)
		}
		futures = append(futures, f)
	}
	select {
	case <-s.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		tb.Fatal("storm not published within a minute")
	}
	for _, f := range futures {
		select {
		case err := <-f.Err():
			tb.Fatal(err)
		default:
		}
	}
}

// settled waits until the evaluator has acked every event.
func (s *storm) settled(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	ctx := context.Background()
	wait.Within(tb, timeout, "area consumer settled", func() bool {
		c, err := s.js.Consumer(ctx, engine.AlertsStream, Consumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// A site of 3,000 units goes silent at once: one site_unreachable, a
// verdict for every unit (the first sent, the rest folded), and the
// area's state, which lists them all, saved in the bucket and read back
// whole (its JSON alone is over NATS's default 1 MB message limit).
func TestStormOfASite(t *testing.T) {
	const n = 6000
	s := newStorm(t, n)
	ctx := context.Background()
	var unreachable []rules.Event
	sub, err := s.js.Conn().Subscribe(engine.AlertsSubjectPrefix+"*."+SiteUnreachable, func(m *nats.Msg) {
		var ev rules.Event
		if json.Unmarshal(m.Data, &ev) == nil {
			unreachable = append(unreachable, ev)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	runEvaluator(t, s.url, s.units, DefaultConfig())
	s.publish(t, time.Now().UTC())
	s.settled(t, 2*time.Minute)
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if len(unreachable) != 1 || unreachable[0].Kind != rules.Firing {
		t.Fatalf("site_unreachable events %d, want one firing", len(unreachable))
	}
	kv, err := s.js.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	folded := 0
	for i := range n {
		ent, err := kv.Get(ctx, VerdictKey(stormSerial(i), commLost))
		if err != nil {
			t.Fatalf("verdict of unit %d: %v", i, err)
		}
		var v Verdict
		if err := json.Unmarshal(ent.Value(), &v); err != nil {
			t.Fatal(err)
		}
		if v.Firing == Fold {
			folded++
		}
	}
	if want := n - 1; folded < want-int(DefaultConfig().Share*n) || folded > want {
		t.Errorf("%d of %d verdicts fold", folded, n)
	}
	e, err := NewEvaluator(s.js, EvaluatorConfig{Areas: DefaultConfig(), Units: s.units})
	if err != nil {
		t.Fatal(err)
	}
	e.kv = kv
	st, err := e.load(ctx, stateKey("plant"))
	if err != nil {
		t.Fatal(err)
	}
	if st == nil || len(st.Unreachable.Units) != n || len(st.Silent) != n || st.Unreachable.Alert == nil ||
		len(st.Unreachable.Alert.Units) != n {
		t.Fatalf("saved state: %v", st != nil)
	}
	plain, _ := json.Marshal(st)
	stored, _ := encodeState(st)
	t.Logf("state of %d silent units: %d bytes of JSON, %d stored", n, len(plain), len(stored))
}

// BenchmarkAreaStorm is the area evaluator's time through a storm: a
// site of -storm.units units (10,000) going silent at once, from the
// first comm_lost on ALERTS until the evaluator has acked the last.
func BenchmarkAreaStorm(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		s := newStorm(b, *stormUnits)
		stop := runEvaluator(b, s.url, s.units, DefaultConfig())
		b.StartTimer()
		s.publish(b, time.Now().UTC())
		s.settled(b, 30*time.Minute)
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(*stormUnits), "us/event")
}
