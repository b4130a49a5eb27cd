package agent_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	agentconfig "github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

// The broker becomes unreachable (the network between the NUT host and
// upswatch is cut: connections dropped, new ones refused) while the UPS
// goes on battery and back. The agent buffers on disk and, once the
// broker is reachable again, replays: every
// reading it took is in the history with its event time (the outage's
// readings dated inside the cut, not at the replay), and the outage is in
// the unit's alert timeline.
func TestBrokerCutReplay(t *testing.T) {
	t.Parallel()
	s := sharedServe(t)
	serial := newSerial()
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	pw := s.register(t, serial)
	px := testenv.NewProxy(t, strings.TrimPrefix(s.mqttURL, "tcp://"))
	c := agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: pw})
	c.Broker.URL = "tcp://" + px.Addr
	c.Poll, c.Interval = 250*time.Millisecond, 250*time.Millisecond // every poll is a reading
	ra := runAgent(t, c)
	begin := time.Now()
	wait.Within(t, 10*time.Second, "first reading at upswatch", func() bool { return s.latest(serial) != nil })

	px.Cut()
	cut := time.Now()
	buffered := func(n int) func() bool {
		return func() bool { return ra.stats(serial).Buffer.Records >= n }
	}
	wait.Within(t, 15*time.Second, "readings buffered while the broker is down", buffered(2))
	obAt := time.Now()
	n.Set(t, "ups1", "ups.status", "OB DISCHRG")
	n.Set(t, "ups1", "input.voltage", "0")
	n.WaitVar(t, "ups1", "ups.status", "OB DISCHRG")
	n.WaitVar(t, "ups1", "input.voltage", "0")
	before := ra.stats(serial).Buffer.Records
	wait.Within(t, 15*time.Second, "on-battery readings buffered", buffered(before+4))
	olAt := time.Now()
	n.Set(t, "ups1", "ups.status", "OL CHRG")
	n.Set(t, "ups1", "input.voltage", "231.0")
	n.WaitVar(t, "ups1", "ups.status", "OL CHRG")
	n.WaitVar(t, "ups1", "input.voltage", "231.0")
	before = ra.stats(serial).Buffer.Records
	wait.Within(t, 15*time.Second, "on-line readings buffered", buffered(before+2))

	px.Restore()
	restart := time.Now()
	t.Logf("broker down %v; %d readings buffered", restart.Sub(cut), ra.stats(serial).Buffer.Records)
	wait.Within(t, 30*time.Second, "buffer replayed", func() bool {
		st := ra.stats(serial)
		return st.Replayed > 0 && st.Buffer.Records == 0
	})
	ra.stop()
	st := ra.stats(serial)
	if st.Buffer.DroppedFull+st.Buffer.DroppedAge != 0 {
		t.Fatalf("readings dropped: %+v", st.Buffer)
	}

	// Every reading the agent took is stored, once, in order of event
	// time; except those taken in the last moment before the stop, which
	// wait on disk for the next run.
	want := int(st.ReadingsTaken) - st.Buffer.Records
	end := time.Now().Add(time.Second)
	var pts []point
	wait.Within(t, 20*time.Second, "every reading in the history", func() bool {
		pts = s.history(t, serial, "battery.charge", begin.Add(-time.Second), end, 10*time.Millisecond)
		return len(pts) >= want
	})
	if len(pts) != want {
		t.Fatalf("history holds %d readings; the agent took %d, %d left on disk", len(pts), st.ReadingsTaken, st.Buffer.Records)
	}
	for i, p := range pts {
		if p.Count != 1 {
			t.Errorf("bucket %v holds %d readings", p.Time, p.Count)
		}
		if i > 0 && !p.Time.After(pts[i-1].Time) {
			t.Errorf("reading %d at %v not after %v", i, p.Time, pts[i-1].Time)
		}
	}
	// The outage's readings carry their event time: inside the cut.
	volts := s.history(t, serial, "input.voltage", begin.Add(-time.Second), end, 10*time.Millisecond)
	zero := 0
	for _, p := range volts {
		if p.Mean == 0 {
			zero++
			if p.Time.Before(obAt.Add(-time.Second)) || p.Time.After(olAt.Add(time.Second)) {
				t.Errorf("on-battery reading dated %v, outside the outage %v..%v", p.Time, obAt, olAt)
			}
		}
	}
	if zero < 3 {
		t.Errorf("%d on-battery readings in the history, want at least 3", zero)
	}

	// The outage is in the timeline, at event time.
	fired := s.waitEvent(t, serial, "on_battery", "firing", begin, 20*time.Second)
	resolved := s.waitEvent(t, serial, "on_battery", "resolved", begin, 20*time.Second)
	if fired.StartedAt.Before(obAt.Add(-time.Second)) || fired.StartedAt.After(olAt) {
		t.Errorf("on_battery started %v, outage began at %v", fired.StartedAt, obAt)
	}
	if resolved.EndedAt.After(restart) || resolved.EndedAt.Before(olAt.Add(-time.Second)) {
		t.Errorf("on_battery ended %v; outage ended at %v, replayed at %v", resolved.EndedAt, olAt, restart)
	}
	if d, want := resolved.Duration, olAt.Sub(obAt); d < want-time.Second || d > want+time.Second {
		t.Errorf("outage duration %v, scripted %v", d, want)
	}
}

// A cut longer than the buffer holds: the oldest readings are dropped and
// counted, the newest are replayed, and nothing else is lost.
func TestFullBufferDropsOldest(t *testing.T) {
	t.Parallel()
	s := sharedServe(t)
	serial := newSerial()
	dump := baseDump(serial, 100)
	for i := range 60 { // a fat reading (about 2 kB), so 64 KiB fill fast
		dump = fmt.Appendf(dump, "experimental.test.value%02d: %d.5\n", i, 1000+i)
	}
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: dump})
	pw := s.register(t, serial)
	px := testenv.NewProxy(t, strings.TrimPrefix(s.mqttURL, "tcp://"))
	c := agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: pw})
	c.Broker.URL = "tcp://" + px.Addr
	c.Poll, c.Interval = 100*time.Millisecond, 100*time.Millisecond
	c.Buffer.MaxBytes = 64 << 10 // the smallest allowed
	ra := runAgent(t, c)
	begin := time.Now()
	wait.Within(t, 10*time.Second, "first reading at upswatch", func() bool { return s.latest(serial) != nil })

	px.Cut()
	cut := time.Now()
	wait.Within(t, 30*time.Second, "the buffer full and dropping", func() bool { return ra.stats(serial).Buffer.DroppedFull > 0 })
	px.Restore()
	wait.Within(t, 30*time.Second, "buffer replayed", func() bool {
		st := ra.stats(serial)
		return st.Replayed > 0 && st.Buffer.Records == 0
	})
	ra.stop()
	st := ra.stats(serial)
	t.Logf("buffer %+v, %d readings taken, %d published", st.Buffer, st.ReadingsTaken, st.Published)
	if st.Buffer.Bytes > c.Buffer.MaxBytes {
		t.Errorf("buffer holds %d bytes, over max_bytes %d", st.Buffer.Bytes, c.Buffer.MaxBytes)
	}
	end := time.Now().Add(time.Second)
	want := int(st.ReadingsTaken-st.Buffer.DroppedFull) - st.Buffer.Records
	var pts []point
	wait.Within(t, 20*time.Second, "every kept reading in the history", func() bool {
		pts = s.history(t, serial, "battery.charge", begin.Add(-time.Second), end, 10*time.Millisecond)
		return len(pts) >= want
	})
	// One reading in flight at the cut may have reached upswatch with its
	// acknowledgement lost: buffered, then dropped as the oldest, yet
	// stored.
	if len(pts) != want && len(pts) != want+1 {
		t.Fatalf("history holds %d readings; taken %d - dropped %d = %d", len(pts), st.ReadingsTaken, st.Buffer.DroppedFull, want)
	}
	// What was dropped is the oldest of the cut: a gap right after it
	// began, then readings every poll.
	var gap time.Duration
	var gapAt time.Time
	for i := 1; i < len(pts); i++ {
		if d := pts[i].Time.Sub(pts[i-1].Time); d > gap {
			gap, gapAt = d, pts[i-1].Time
		}
	}
	if gapAt.Before(cut.Add(-3*time.Second)) || gap < time.Duration(st.Buffer.DroppedFull)*c.Poll/2 {
		t.Errorf("largest gap %v after %v (cut at %v, %d dropped): not the oldest of the cut", gap, gapAt, cut, st.Buffer.DroppedFull)
	}
}

// The broker stops acknowledging (the route black-holes the agent's
// packets, nothing is closed): readings not acknowledged within
// broker.ack_timeout go to the buffer, the dead session is noticed by
// the keepalive, and after reconnecting every reading reaches the
// history.
func TestBrokerStopsAcknowledging(t *testing.T) {
	t.Parallel()
	s := sharedServe(t)
	serial := newSerial()
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	pw := s.register(t, serial)
	px := testenv.NewProxy(t, strings.TrimPrefix(s.mqttURL, "tcp://"))
	c := agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: pw})
	c.Broker.URL = "tcp://" + px.Addr
	c.Poll, c.Interval = 250*time.Millisecond, 250*time.Millisecond
	c.Broker.AckTimeout = time.Second
	ra := runAgent(t, c)
	begin := time.Now()
	wait.Within(t, 10*time.Second, "first reading at upswatch", func() bool { return s.latest(serial) != nil })

	px.Blackhole()
	wait.Within(t, 15*time.Second, "unacknowledged readings buffered", func() bool { return ra.stats(serial).Buffer.Records >= 2 })
	wait.Within(t, 30*time.Second, "reconnected and replayed", func() bool {
		st := ra.stats(serial)
		return st.Replayed >= 2 && st.Buffer.Records == 0
	})
	ra.stop()
	st := ra.stats(serial)
	end := time.Now().Add(time.Second)
	// Readings queued behind the stalled publishes and taken in the last
	// moment wait on disk for the next run.
	want := int(st.ReadingsTaken) - st.Buffer.Records
	var pts []point
	wait.Within(t, 20*time.Second, "every reading in the history", func() bool {
		pts = s.history(t, serial, "battery.charge", begin.Add(-time.Second), end, 10*time.Millisecond)
		return len(pts) >= want
	})
	if len(pts) != want {
		t.Fatalf("history holds %d readings; the agent took %d, %d left on disk", len(pts), st.ReadingsTaken, st.Buffer.Records)
	}
}

// upswatch itself stopped (broker and all) while the UPS goes on battery
// and back, then started again on the same data: the agent reconnects,
// replays, and the outage is in the history and the timeline at its
// event time.
func TestServeRestartReplay(t *testing.T) {
	t.Parallel()
	s := startServe(t, filepath.Join(t.TempDir(), "data"), "", "")
	t.Cleanup(s.stop)
	serial := newSerial()
	n := testenv.NUT(t, testenv.NUTUnit{Name: "ups1", Dump: baseDump(serial, 100)})
	pw := s.register(t, serial)
	c := agentConfig(t, n, s, agentconfig.Unit{UPS: "ups1", Serial: serial, Password: pw})
	c.Poll, c.Interval = 250*time.Millisecond, 250*time.Millisecond
	ra := runAgent(t, c)
	begin := time.Now()
	wait.Within(t, 10*time.Second, "first reading at upswatch", func() bool { return s.latest(serial) != nil })

	mqttAddr, httpAddr := s.cfg.MQTT.Listen, s.app.HTTPAddr()
	s.stop()
	buffered := func(n int) func() bool { return func() bool { return ra.stats(serial).Buffer.Records >= n } }
	wait.Within(t, 15*time.Second, "readings buffered while upswatch is down", buffered(2))
	obAt := time.Now()
	n.Set(t, "ups1", "ups.status", "OB DISCHRG")
	n.WaitVar(t, "ups1", "ups.status", "OB DISCHRG")
	wait.Within(t, 15*time.Second, "on-battery readings buffered", buffered(ra.stats(serial).Buffer.Records+3))
	olAt := time.Now()
	n.Set(t, "ups1", "ups.status", "OL")
	n.WaitVar(t, "ups1", "ups.status", "OL")
	wait.Within(t, 15*time.Second, "on-line readings buffered", buffered(ra.stats(serial).Buffer.Records+2))

	s2 := startServe(t, s.cfg.DataDir, mqttAddr, httpAddr)
	t.Cleanup(s2.stop)
	restart := time.Now()
	wait.Within(t, 30*time.Second, "buffer replayed", func() bool {
		st := ra.stats(serial)
		return st.Replayed > 0 && st.Buffer.Records == 0
	})
	fired := s2.waitEvent(t, serial, "on_battery", "firing", begin, 20*time.Second)
	resolved := s2.waitEvent(t, serial, "on_battery", "resolved", begin, 20*time.Second)
	if fired.StartedAt.Before(obAt) || fired.StartedAt.After(olAt) || resolved.EndedAt.Before(olAt) || resolved.EndedAt.After(restart) {
		t.Errorf("outage %v..%v in the timeline; scripted %v..%v, upswatch back at %v", fired.StartedAt, resolved.EndedAt, obAt, olAt, restart)
	}
	ra.stop()
	st := ra.stats(serial)
	want := int(st.ReadingsTaken) - st.Buffer.Records
	end := time.Now().Add(time.Second)
	var pts []point
	wait.Within(t, 20*time.Second, "every reading in the history", func() bool {
		pts = s2.history(t, serial, "battery.charge", begin.Add(-time.Second), end, 10*time.Millisecond)
		return len(pts) >= want
	})
	if len(pts) != want {
		t.Fatalf("history holds %d readings; the agent took %d, %d left on disk", len(pts), st.ReadingsTaken, st.Buffer.Records)
	}
}
