package rules

import (
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// typical is a full upsc view of a mid-range line-interactive unit.
func typical(status string, input, charge, runtime float64) ups.Reading {
	var r ups.Reading
	r.Serial = testSerial
	r.Time = t0
	r.SetText("ups.status", status)
	for _, kv := range []struct {
		n string
		v float64
	}{
		{"battery.charge", charge}, {"battery.charge.low", 10}, {"battery.charge.warning", 20},
		{"battery.runtime", runtime}, {"battery.runtime.low", 120}, {"battery.voltage", 13.5},
		{"battery.voltage.nominal", 12}, {"input.voltage", input}, {"input.voltage.nominal", 230},
		{"input.transfer.low", 170}, {"input.transfer.high", 280}, {"input.frequency", 50},
		{"output.voltage", 230}, {"ups.load", 23}, {"ups.realpower.nominal", 900},
		{"battery.temperature", 27},
	} {
		r.SetNum(kv.n, kv.v)
	}
	r.SetText("ups.test.result", "Done and passed")
	r.SetText("ups.beeper.status", "enabled")
	r.SetText("device.model", "Back-UPS RS 1500")
	return r
}

func BenchmarkEvaluate(b *testing.B) {
	for _, bc := range []struct {
		name string
		r    ups.Reading
	}{
		{"online", typical("OL CHRG", 231, 100, 2400)},
		{"onbattery", typical("OB DISCHRG", 0, 85, 1800)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := NewEvaluator(nil)
			st := &UnitState{Site: "depot"}
			r := bc.r
			var out []Event
			// Warm up: the unit's alerts (on_battery) are firing already.
			for range 10 {
				r.Time = r.Time.Add(10 * time.Second)
				out = e.Evaluate(st, &r, r.Time, out[:0])
			}
			b.ReportAllocs()
			for b.Loop() {
				r.Time = r.Time.Add(10 * time.Second)
				out = e.Evaluate(st, &r, r.Time, out[:0])
			}
			if len(out) != 0 {
				b.Fatalf("steady state produced events: %+v", out)
			}
		})
	}
}

func BenchmarkTick(b *testing.B) {
	e := NewEvaluator(nil)
	st := &UnitState{}
	r := typical("OB DISCHRG", 0, 85, 1800)
	for range 10 {
		r.Time = r.Time.Add(10 * time.Second)
		e.Evaluate(st, &r, r.Time, nil)
	}
	now := r.Time
	b.ReportAllocs()
	for b.Loop() {
		e.Tick(st, now.Add(time.Second), nil)
	}
}

func BenchmarkMarshalState(b *testing.B) {
	e := NewEvaluator(nil)
	st := &UnitState{Site: "depot"}
	r := typical("OB DISCHRG", 0, 85, 1800)
	for range 10 {
		r.Time = r.Time.Add(10 * time.Second)
		e.Evaluate(st, &r, r.Time, nil)
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = st.AppendBinary(buf[:0])
		var s UnitState
		if err := s.UnmarshalBinary(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf)), "bytes/state")
}

// TestStateMemory100k measures the heap held by the states of 100,000
// units, one in ten of them on battery with alerts firing.
func TestStateMemory100k(t *testing.T) {
	const n = 100_000
	e := NewEvaluator(nil)
	online := typical("OL CHRG", 231, 100, 2400)
	onbatt := typical("OB DISCHRG", 0, 15, 100)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	states := make(map[ups.Serial]*UnitState, n)
	var encoded int
	for i := range n {
		serial := ups.Serial(strings.Repeat("0", 6) + strings.TrimLeft(time.Duration(i).String(), "n"))
		st := &UnitState{Site: "site-" + string(rune('a'+i%20))}
		r := online
		if i%10 == 0 {
			r = onbatt
		}
		r.Serial = serial
		for k := range 3 {
			r.Time = t0.Add(time.Duration(k) * 10 * time.Second)
			e.Evaluate(st, &r, r.Time, nil)
		}
		states[serial] = st
		if i%1000 == 0 {
			b, _ := st.MarshalBinary()
			encoded += len(b)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	mb := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	t.Logf("100,000 unit states (map included): %.1f MB heap; encoded state %.0f bytes on average", mb, float64(encoded)/100)
	if mb > 100 {
		t.Fatalf("states take %.1f MB, want < 100", mb)
	}
	runtime.KeepAlive(states)
}

func TestStateRoundTripAndCorruption(t *testing.T) {
	e := NewEvaluator(nil)
	st := &UnitState{Site: "depot"}
	r := typical("OB DISCHRG RB", 0, 15, 100)
	for k := range 5 {
		r.Time = t0.Add(time.Duration(k) * 10 * time.Second)
		e.Evaluate(st, &r, r.Time, nil)
	}
	if len(st.alerts) < 3 {
		t.Fatalf("expected several alerts, got %v", st.Firing())
	}
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got UnitState
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := got.MarshalBinary()
	if string(b) != string(b2) {
		t.Fatal("re-encoding differs")
	}
	for cut := range len(b) {
		var s UnitState
		if err := s.UnmarshalBinary(b[:cut]); !errors.Is(err, ErrBadState) {
			t.Fatalf("truncated at %d: err = %v", cut, err)
		}
	}
	bad := append([]byte{99}, b[1:]...)
	if err := new(UnitState).UnmarshalBinary(bad); !errors.Is(err, ErrBadState) {
		t.Fatalf("bad version: %v", err)
	}
}

func TestEventJSON(t *testing.T) {
	ev := Event{Kind: Resolved, Rule: "on_battery", Severity: Warning, Serial: testSerial,
		At: t0.Add(10 * time.Minute), StartedAt: t0, EndedAt: t0.Add(10 * time.Minute),
		Duration: 10 * time.Minute, Values: []Value{{"input.voltage", 231}}, Status: "OL CHRG",
		Fingerprint: "123456789012/on_battery/1764000000000", Message: "power restored after 10m0s"}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"resolved","rule":"on_battery","severity":"warning","serial":"123456789012",` +
		`"at":"2025-11-24T16:10:00Z","started_at":"2025-11-24T16:00:00Z","ended_at":"2025-11-24T16:10:00Z",` +
		`"duration_ns":600000000000,"values":[{"name":"input.voltage","value":231}],"status":"OL CHRG",` +
		`"fingerprint":"123456789012/on_battery/1764000000000","message":"power restored after 10m0s"}`
	if string(b) != want {
		t.Fatalf("JSON:\n got %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Kind != Resolved || back.Severity != Warning || back.Duration != ev.Duration || !back.At.Equal(ev.At) {
		t.Fatalf("round trip: %+v", back)
	}
	if ev.DedupID() != ev.Fingerprint+"/resolved" {
		t.Fatalf("DedupID = %q", ev.DedupID())
	}
}
