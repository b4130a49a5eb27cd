package engine

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// syncUnits is a registry view the test changes while engines read it.
type syncUnits struct {
	mu sync.Mutex
	m  map[ups.Serial]string
}

func (u *syncUnits) Lookup(s ups.Serial) (registry.Unit, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	site, ok := u.m[s]
	return registry.Unit{Serial: s, Site: site}, ok
}

func (u *syncUnits) set(s ups.Serial, site string, registered bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if registered {
		u.m[s] = site
	} else {
		delete(u.m, s)
	}
}

// TestDeletedUnitIsForgotten: a unit on battery, deleted, fires nothing 5
// minutes later by the engine's clock (a silent unit of the same partition
// does fire comm_lost in that very tick), is no longer listed as firing,
// keeps its timeline, has a straggling reading dropped, and starts clean
// when registered again.
func TestDeletedUnitIsForgotten(t *testing.T) {
	gone, stays := findSerial(1, 0), findSerial(1, 1)
	units := &syncUnits{m: map[ups.Serial]string{gone: "hq", stays: "hq"}}
	env := newEnv(t, nil)
	ctx := context.Background()
	type tick struct {
		p   int
		now time.Time
	}
	ticks := make(chan tick, 64)
	js := env.js
	e, err := New(js, Config{Evaluator: env.eval, Partitions: parts, Units: units, TickEvery: 50 * time.Millisecond,
		PinnedTTL: 5 * time.Second, Now: env.clock.Now, InstanceID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	e.ticked = func(p int, now time.Time) {
		select {
		case ticks <- tick{p, now}:
		default:
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-e.Ready()
	alerts := NewAlerts(js, units)

	env.outage(0, 30*time.Second, gone, stays)
	waitFor(t, "on_battery firing for both units", func() bool {
		evs := env.events()
		return count(evs, gone, "on_battery", rules.Firing) == 1 && count(evs, stays, "on_battery", rules.Firing) == 1
	})
	before := len(env.events())

	units.set(gone, "", false)
	if err := PublishUnitDeleted(ctx, js, parts, gone); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion applied", func() bool { return testutil.ToFloat64(e.m.forgotten) == 1 })
	act, err := alerts.Active(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(act) != 1 || act[0].Serial != stays {
		t.Fatalf("active after deletion = %+v, want only %s's on_battery", act, stays)
	}
	// A reading the ingest accepted before it learned of the deletion.
	env.publish(reading(gone, 31*time.Second, "OB DISCHRG"))
	waitFor(t, "the straggling reading dropped", func() bool { return testutil.ToFloat64(e.m.stragglers) == 1 })

	// Five minutes of the engine's clock without readings: the silent
	// unit that stays fires comm_lost; the deleted one must fire nothing.
	later := t0.Add(30*time.Second + 5*time.Minute)
	env.clock.Set(later)
	for {
		select {
		case tk := <-ticks:
			if tk.p != 1 || tk.now.Before(later) {
				continue
			}
		case <-time.After(15 * time.Second):
			t.Fatal("partition 1 did not tick at the later clock")
		}
		break
	}
	evs := env.events()
	if count(evs, stays, "comm_lost", rules.Firing) != 1 {
		t.Fatalf("the unit that stays did not fire comm_lost in the tick 5 minutes later: %+v", evs[before:])
	}
	for _, ev := range evs[before:] {
		if ev.Serial == gone {
			t.Fatalf("the deleted unit fired %s %s", ev.Rule, ev.Kind)
		}
	}
	if act, err = alerts.Active(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for _, a := range act {
		if a.Serial == gone {
			t.Fatalf("the deleted unit is listed as firing: %+v", a)
		}
	}
	tl, err := alerts.Timeline(ctx, gone, t0, t0.Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tl) != 1 || tl[0].Rule != "on_battery" || tl[0].Kind != rules.Firing {
		t.Fatalf("timeline of the deleted unit = %+v, want its on_battery kept", tl)
	}

	// Registered again: its state is new, so the next outage fires anew
	// (an on_battery still firing in a kept state would not).
	units.set(gone, "hq", true)
	base := 6 * time.Minute
	env.publish(reading(gone, base, "OL"))
	for at := base + 4*time.Second; at <= base+20*time.Second; at += 2 * time.Second {
		env.publish(reading(gone, at, "OB DISCHRG"))
	}
	waitFor(t, "on_battery firing again after re-registration", func() bool {
		return count(env.events(), gone, "on_battery", rules.Firing) == 2
	})
}
