package area

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/ups"
)

type fakeUnits map[ups.Serial]registry.Unit

func (f fakeUnits) Lookup(s ups.Serial) (registry.Unit, bool) { u, ok := f[s]; return u, ok }
func (f fakeUnits) List() []registry.Unit {
	out := make([]registry.Unit, 0, len(f))
	for _, u := range f {
		out = append(out, u)
	}
	return out
}

func connect(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	_, js := bustest.Dial(t, url)
	return js
}

// runEvaluator runs an evaluator on its own connection; the returned stop
// ends it and waits.
func runEvaluator(t testing.TB, url string, units Units, cfg Config) (stop func()) {
	t.Helper()
	e, err := NewEvaluator(connect(t, url), EvaluatorConfig{Areas: cfg, Units: units, TickEvery: 50 * time.Millisecond, PinnedTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-e.Ready():
	case err := <-done:
		t.Fatalf("evaluator: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("evaluator not ready within 10s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("evaluator Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Two instances: the area's state lives in the bucket, so when the one
// evaluating stops, the other takes over mid-outage and resolves the
// site_outage the first raised; each area event is published once, and
// the pipeline's side (Folds) reads the verdicts whoever wrote them.
func TestEvaluatorHandover(t *testing.T) {
	ns, err := bus.StartEmbedded(bus.EmbeddedOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	url := ns.ClientURL()
	js := connect(t, url)
	ctx := context.Background()
	if _, _, err := engine.EnsureAlerts(ctx, js, 0, 1); err != nil {
		t.Fatal(err)
	}
	units := fakeUnits{}
	for i := 1; i <= 5; i++ {
		units[serial(i)] = registry.Unit{Serial: serial(i), Site: "hq"}
	}
	units[serial(9)] = registry.Unit{Serial: serial(9), Site: "branch"}
	cfg := DefaultConfig()
	cfg.ResolveAfter = 200 * time.Millisecond

	var mu sync.Mutex
	var areaEvents []rules.Event
	sub, err := js.Conn().Subscribe(engine.AlertsSubjectPrefix+"*."+SiteOutage, func(m *nats.Msg) {
		var ev rules.Event
		if err := json.Unmarshal(m.Data, &ev); err == nil {
			mu.Lock()
			areaEvents = append(areaEvents, ev)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	kinds := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, ev := range areaEvents {
			out = append(out, ev.Kind.String())
		}
		return out
	}

	publish := func(kind rules.EventKind, i int, at time.Time) *rules.Event {
		t.Helper()
		ev := &rules.Event{Kind: kind, Rule: onBattery, Severity: rules.Warning, Serial: serial(i), At: at,
			StartedAt: t0, Status: "OB DISCHRG", Fingerprint: fmt.Sprintf("%s/on_battery/%d", serial(i), t0.UnixMilli())}
		b, _ := json.Marshal(ev)
		if _, err := js.Publish(ctx, engine.AlertSubject(ev.Serial, ev.Rule), b, jetstream.WithMsgID(ev.DedupID())); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	settled := func() {
		t.Helper()
		wait.For(t, "area consumer settled", func() bool {
			c, err := js.Consumer(ctx, engine.AlertsStream, Consumer)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0
		})
	}
	folds, err := NewFolds(js, cfg, units, nil)
	if err != nil {
		t.Fatal(err)
	}
	fold := func(ev *rules.Event) string {
		t.Helper()
		f, wait, err := folds.Fold(ctx, ev, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("fold=%v wait=%v", f, wait > 0)
	}

	stopA := runEvaluator(t, url, units, cfg)
	var fired []*rules.Event
	for i := 1; i <= 3; i++ {
		fired = append(fired, publish(rules.Firing, i, t0.Add(time.Duration(i)*time.Second)))
	}
	other := publish(rules.Firing, 9, t0) // another site: its own area, alone
	wait.For(t, "site_outage fired", func() bool { return len(kinds()) == 1 })
	settled()
	for _, tc := range []struct {
		ev   *rules.Event
		want string
	}{
		{fired[0], "fold=false wait=false"}, // the first: sent at once
		{fired[1], "fold=true wait=false"},
		{fired[2], "fold=true wait=false"},
		{other, "fold=false wait=false"},
	} {
		if got := fold(tc.ev); got != tc.want {
			t.Errorf("%s firing: %s, want %s", tc.ev.Serial, got, tc.want)
		}
	}
	// A resolved the evaluator has not seen yet waits for its verdict.
	early := *fired[0]
	early.Kind = rules.Resolved
	if got := fold(&early); got != "fold=false wait=true" {
		t.Errorf("resolved before its verdict: %s", got)
	}
	// ... but not for ever: without a verdict (no evaluator running) it is
	// notified as usual.
	if f, wait, err := folds.Fold(ctx, &early, folds.MaxWait); err != nil || f || wait != 0 {
		t.Errorf("resolved without a verdict after MaxWait: fold=%v wait=%v err=%v", f, wait, err)
	}

	// B starts, A (the one evaluating) stops: B evaluates from the bucket.
	runEvaluator(t, url, units, cfg)
	stopA()
	var resolved []*rules.Event
	for i := 1; i <= 3; i++ {
		resolved = append(resolved, publish(rules.Resolved, i, t0.Add(time.Minute)))
	}
	wait.For(t, "site_outage resolved by the second instance", func() bool { return len(kinds()) == 2 })
	settled()
	if got := fmt.Sprint(kinds()); got != "[firing resolved]" {
		t.Fatalf("area events %s, want one firing and one resolved", got)
	}
	mu.Lock()
	res := areaEvents[1]
	mu.Unlock()
	if res.Duration != time.Minute || res.Serial != serial(1) || res.Area != "hq" || len(res.Units) != 0 {
		t.Errorf("resolved: %+v", res)
	}
	for _, ev := range resolved {
		if got := fold(ev); got != "fold=true wait=false" {
			t.Errorf("%s resolved: %s, want folded", ev.Serial, got)
		}
	}
	// Nothing left: the area's state is gone from the bucket, and the
	// alert from the active alerts. Both are cleared right after the
	// resolution is published (which this test saw first), by the same
	// tick.
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	active, err := js.KeyValue(ctx, engine.ActiveBucket)
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, "area state of hq and its active site_outage cleared after everything resolved", func() bool {
		_, stateErr := kv.Get(ctx, stateKey("hq"))
		_, activeErr := active.Get(ctx, string(serial(1))+"."+SiteOutage)
		return errors.Is(stateErr, jetstream.ErrKeyNotFound) && errors.Is(activeErr, jetstream.ErrKeyNotFound)
	})
}
