package battery

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/ups"
)

const testPartitions = 4

func publishReadings(t *testing.T, js jetstream.JetStream, rs ...ups.Reading) {
	t.Helper()
	for _, r := range rs {
		subj := bus.ReadingsSubject(ups.Partition(r.Serial, testPartitions))
		if _, err := js.Publish(context.Background(), subj, ups.AppendBatch(nil, []ups.Reading{r})); err != nil {
			t.Fatal(err)
		}
	}
}

// startTracker runs a tracker until the returned stop is called; stop
// waits for Run to return.
func startTracker(t *testing.T, js jetstream.JetStream, now func() time.Time) (stop func()) {
	t.Helper()
	tr, err := NewTracker(js, TrackerConfig{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	select {
	case <-tr.Ready():
	case err := <-done:
		t.Fatalf("tracker stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("tracker not ready")
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tracker: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// samePartition returns a serial starting with prefix on the partition
// of serial.
func samePartition(t *testing.T, serial, prefix ups.Serial) ups.Serial {
	t.Helper()
	for i := range 1000 {
		s := prefix + ups.Serial(strconv.Itoa(i))
		if ups.Partition(s, testPartitions) == ups.Partition(serial, testPartitions) {
			return s
		}
	}
	t.Fatal("no serial on the partition")
	return ""
}

// nextEvent waits for the next event on the ALERTS stream.
func nextEvent(t *testing.T, cons jetstream.Consumer) rules.Event {
	t.Helper()
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no event: %v", err)
	}
	var ev rules.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestTracker runs the tracker on a real in-process JetStream: events
// reach the ALERTS stream and the active-alerts bucket, the state
// survives a restart (no alert fires twice), and a deleted unit's state
// is purged.
func TestTracker(t *testing.T) {
	_, _, js := bustest.Server(t)
	ctx := context.Background()
	if _, _, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{Partitions: testPartitions, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	_, active, err := engine.EnsureAlerts(ctx, js, time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	events, err := js.OrderedConsumer(ctx, engine.AlertsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}

	var clock atomic.Int64 // the tracker's wall clock, moved by the test
	clock.Store(tSim.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	stop := startTracker(t, js, now)
	old := *reading(tSim, map[string]string{"battery.date": "2020/01/01"}, nil)
	publishReadings(t, js, old)
	ev := nextEvent(t, events)
	if ev.Rule != RuleAge || ev.Kind != rules.Firing || ev.Serial != "S1" {
		t.Fatalf("first event %+v", ev)
	}
	stop() // Run has returned: the event's bookkeeping is done
	if _, err := active.Get(ctx, "S1."+RuleAge); err != nil {
		t.Fatalf("battery_age not in the active bucket: %v", err)
	}

	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "S1")
	if err != nil {
		t.Fatal(err)
	}
	var u Unit
	if err := u.UnmarshalBinary(e.Value()); err != nil || u.InstallSrc != SourceBatteryDate || u.Alerts[alertAge].Since == 0 {
		t.Fatalf("stored state %+v, %v", u, err)
	}
	t.Logf("stored state after one reading: %d bytes", len(e.Value()))

	// Restarted: the same battery raises no second battery_age; a due
	// maintenance date raises battery_maintenance, which comes next.
	startTracker(t, js, now)
	publishReadings(t, js,
		*reading(tSim.Add(time.Hour), map[string]string{"battery.date": "2020/01/01"}, nil),
		*reading(tSim.Add(2*time.Hour), map[string]string{"battery.date": "2020/01/01", "battery.date.maintenance": "2026/01/15"}, nil))
	if ev := nextEvent(t, events); ev.Rule != RuleMaintenance || ev.Kind != rules.Firing {
		t.Fatalf("after the restart: %+v (want battery_maintenance firing, and no battery_age again)", ev)
	}

	// Deregistered: the state goes, and a unit registered again under
	// the serial is saved afresh.
	if err := engine.PublishUnitDeleted(ctx, js, testPartitions, "S1"); err != nil {
		t.Fatal(err)
	}
	// The tracker handles a partition in order: once the event of a
	// later unit of S1's partition is out, the deletion is applied.
	marker := func(serial ups.Serial) {
		t.Helper()
		serial = samePartition(t, "S1", serial)
		r := reading(tSim, map[string]string{"battery.date": "2019/01/01"}, nil)
		r.Serial = serial
		publishReadings(t, js, *r)
		if ev := nextEvent(t, events); ev.Serial != serial || ev.Rule != RuleAge {
			t.Fatalf("event %+v, want %s's battery_age", ev, serial)
		}
	}
	marker("S2")
	if _, err := kv.Get(ctx, "S1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("state after deletion: %v", err)
	}
	// Within a minute of the deletion a reading of the serial is dropped
	// (it was on the bus before); later it is a new unit.
	publishReadings(t, js, *reading(tSim.Add(3*time.Hour), map[string]string{"battery.date": "2020/01/01"}, nil))
	marker("S3")
	clock.Store(tSim.Add(2 * deletedGrace).UnixNano())
	publishReadings(t, js, *reading(tSim.Add(4*time.Hour), map[string]string{"battery.date": "2020/01/01"}, nil))
	if ev := nextEvent(t, events); ev.Rule != RuleAge || ev.Kind != rules.Firing || !ev.At.Equal(tSim.Add(4*time.Hour)) {
		t.Fatalf("after registering again: %+v", ev)
	}
	w, err := kv.Watch(ctx, "S1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() {
		if e != nil && e.Operation() == jetstream.KeyValuePut {
			if err := (&Unit{}).UnmarshalBinary(e.Value()); err != nil {
				t.Fatal(err)
			}
			break // saved again
		}
	}
}

// TestStoreInstallDate: the owner's date, sent through the tracker,
// wins over the unit's; a later one is a new battery (battery_replaced
// on ALERTS, battery_age resolved), and the tracker's later readings go
// on from the owner's state.
func TestStoreInstallDate(t *testing.T) {
	_, _, js := bustest.Server(t)
	ctx := context.Background()
	if _, _, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{Partitions: testPartitions, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := engine.EnsureAlerts(ctx, js, time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	events, err := js.OrderedConsumer(ctx, engine.AlertsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(js, func() time.Time { return tSim.Add(time.Hour) })
	const serial = "110000000077"
	rep, err := st.Report(ctx, serial)
	if err != nil || rep.Seen || rep.Install.Source != SourceNone || rep.Alerts == nil || rep.Swaps == nil {
		t.Fatalf("never seen: %+v, %v", rep, err)
	}

	startTracker(t, js, func() time.Time { return tSim })
	r := reading(tSim, map[string]string{"battery.date": "2020/01/01"}, nil)
	r.Serial = serial
	publishReadings(t, js, *r)
	if ev := nextEvent(t, events); ev.Rule != RuleAge {
		t.Fatalf("first event %+v", ev)
	}
	rep, err = st.SetInstallDate(ctx, serial, time.Date(2025, 11, 3, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Install.Date != "2025-11-03" || rep.Install.Source != SourceOwner || rep.Install.BatteryDate != "2020-01-01" || len(rep.Swaps) != 1 {
		t.Fatalf("after the owner's date: %+v", rep)
	}
	for _, want := range []struct {
		rule string
		kind rules.EventKind
	}{{RuleReplaced, rules.Firing}, {RuleReplaced, rules.Resolved}, {RuleAge, rules.Resolved}} {
		if ev := nextEvent(t, events); ev.Rule != want.rule || ev.Kind != want.kind {
			t.Fatalf("event %s/%s, want %s/%s", ev.Rule, ev.Kind, want.rule, want.kind)
		}
	}
	for i, m := range []string{"2026/01/10", "2030/01/10"} {
		r := reading(tSim.Add(time.Duration(2+i)*time.Hour), map[string]string{"battery.date": "2020/01/01", "battery.date.maintenance": m}, nil)
		r.Serial = serial
		publishReadings(t, js, *r)
	}
	for _, kind := range []rules.EventKind{rules.Firing, rules.Resolved} {
		if ev := nextEvent(t, events); ev.Rule != RuleMaintenance || ev.Kind != kind {
			t.Fatalf("event %+v, want battery_maintenance %s", ev, kind)
		}
	}
	rep, err = st.Report(ctx, serial)
	if err != nil || rep.Install.Source != SourceOwner || !rep.Seen || len(rep.Swaps) != 1 {
		t.Fatalf("stored: %+v, %v", rep, err)
	}
}

// TestStoreDue lists the batteries due within a window, soonest first,
// among the units the caller may see.
func TestStoreDue(t *testing.T) {
	_, _, js := bustest.Server(t)
	ctx := context.Background()
	kv, err := EnsureBucket(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	now := tSim
	for serial, date := range map[string]string{
		"A": "2022/12/01", // 3 years on 2025-11-30: overdue
		"B": "2023/02/15", // age limit 2026-02-14: due in 44 days
		"C": "2023/06/01", // 2026-05-31: not within 90 days
		"D": "2022/01/01", // overdue, but not visible
	} {
		u := Unit{}
		r := reading(now.Add(-time.Hour), map[string]string{"battery.date": date}, nil)
		r.Serial = ups.Serial(serial)
		u.Observe(r, nil)
		blob, _ := u.MarshalBinary()
		if _, err := kv.Put(ctx, serial, blob); err != nil {
			t.Fatal(err)
		}
	}
	st := NewStore(js, func() time.Time { return now })
	due, err := st.Due(ctx, 90*day, func(s ups.Serial) bool { return s != "D" })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range due {
		got = append(got, string(d.Serial)+"/"+d.Reason)
	}
	if !equal(got, []string{"A/age", "B/age"}) {
		t.Fatalf("due: %v", got)
	}
	if want := time.Date(2026, 2, 14, 0, 0, 0, 0, time.UTC); due[1].At.Sub(want).Abs() > day {
		t.Fatalf("B due %v, want about %v", due[1].At, want)
	}
}

// TestTwoTrackers runs two instances on one bus: each partition is
// pinned to one of them, so every reading of a unit meets the same
// state and nothing is lost between them (a shared consumer would split
// a unit's readings and lose the statistics of one side).
func TestTwoTrackers(t *testing.T) {
	ns, _, js := bustest.Server(t)
	ctx := context.Background()
	if _, _, err := bus.EnsureReadingsStream(ctx, js, bus.StreamConfig{Partitions: testPartitions, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := engine.EnsureAlerts(ctx, js, time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	events, err := js.OrderedConsumer(ctx, engine.AlertsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_, js2 := bustest.Connect(t, ns)
	clock := func() time.Time { return tSim }
	stopA := startTracker(t, js, clock)
	stopB := startTracker(t, js2, clock)

	units := []ups.Serial{"U0", "U1", "U2", "U3", "U4", "U5", "U6", "U7"}
	results := []string{"Done and passed", "In progress"}
	for i := range 8 {
		for _, u := range units {
			r := reading(tSim.Add(time.Duration(i)*time.Minute), map[string]string{"ups.test.result": results[i%2]}, nil)
			r.Serial = u
			publishReadings(t, js, *r)
		}
	}
	// A marker per partition, after the readings: its event means the
	// partition's readings are handled.
	want := map[ups.Serial]bool{}
	for p := range testPartitions {
		for i := range 1000 {
			s := ups.Serial("M" + strconv.Itoa(i))
			if ups.Partition(s, testPartitions) == p {
				want[s] = true
				r := reading(tSim.Add(time.Hour), map[string]string{"battery.date": "2019/01/01"}, nil)
				r.Serial = s
				publishReadings(t, js, *r)
				break
			}
		}
	}
	for len(want) > 0 {
		ev := nextEvent(t, events)
		delete(want, ev.Serial)
	}
	stopA()
	stopB()
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range units {
		e, err := kv.Get(ctx, string(s))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		var u Unit
		if err := u.UnmarshalBinary(e.Value()); err != nil {
			t.Fatal(err)
		}
		if u.T.N != 4 || u.LastAt != tSim.Add(7*time.Minute).Unix() {
			t.Errorf("%s: %d tests recorded, last reading %v; want 4 and the 8th reading", s, u.T.N, time.Unix(u.LastAt, 0).UTC())
		}
	}
}
