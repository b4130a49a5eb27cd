package battery

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// richUnit is a unit with every part of its state in use: dates, a
// maintenance date, self-tests, an open hour and day, a baseline, a
// trend, an outage measurement, an open outage, signals, a swap and a
// firing alert.
func richUnit(t testing.TB) *Unit {
	t.Helper()
	s := &sim{k: 1.2, r50: 1800, capacity: linearLoss(0.04), load: uniformLoad(20, 80), noise: 0.02,
		step: 30 * time.Minute, rng: rand.New(rand.NewPCG(21, 22))}
	u := &Unit{Serial: "S1"}
	u.Observe(reading(tSim, map[string]string{"battery.date": "2024/05/01", "battery.mfr.date": "2024/01/02",
		"battery.date.maintenance": "2026-06-01", "ups.test.result": "Aborted"},
		map[string]float64{"battery.temperature": 31, "ups.test.interval": 604800}), nil)
	u.SetOwnerDate(tSim, tSim) // later than battery.date: a recorded swap
	s.run(u, tSim.Add(time.Hour), 150*day, nil)
	end := tSim.Add(150*day + time.Hour)
	for i, st := range []string{"OL", "OB DISCHRG", "OB DISCHRG", "OL CHRG", "OB DISCHRG"} {
		r := &ups.Reading{Serial: "S1", Time: end.Add(time.Duration(i) * 5 * time.Minute)}
		r.SetText("ups.status", st)
		r.SetNum("ups.load", 40)
		r.SetNum("battery.charge", float64(100-10*i))
		r.SetText("ups.test.result", []string{"Done and error", "Done and passed"}[min(i, 1)])
		u.Observe(r, nil)
	}
	if u.H.OBStart == 0 || u.H.OutageAt == 0 || u.H.TrN == 0 || u.T.N < 3 || u.Alerts[alertMaintenance].Since == 0 || u.SwapN == 0 || u.Sig == [numSignals]uint32{} {
		t.Fatalf("the rich unit lacks a part: %+v", u)
	}
	return u
}

func TestCodecRoundTrip(t *testing.T) {
	for _, u := range []*Unit{{Serial: "S1"}, richUnit(t)} {
		b, err := u.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		v := Unit{Serial: u.Serial}
		if err := v.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		w := *u
		w.rateOf, w.rate = 0, 0 // a cache, not stored
		if !reflect.DeepEqual(w, v) {
			t.Fatalf("round trip changed the state:\n%+v\n%+v", *u, v)
		}
		t.Logf("stored state: %d bytes", len(b))
		if len(b) > 512 {
			t.Errorf("stored state %d bytes, want at most 512", len(b))
		}
		for i := range b {
			if err := new(Unit).UnmarshalBinary(b[:i]); !errors.Is(err, ErrBadState) {
				t.Fatalf("truncated at %d of %d: %v", i, len(b), err)
			}
		}
	}
}

func FuzzUnitUnmarshal(f *testing.F) {
	rich, _ := richUnit(f).MarshalBinary()
	empty, _ := (&Unit{}).MarshalBinary()
	f.Add(rich)
	f.Add(empty)
	f.Fuzz(func(t *testing.T, b []byte) {
		var u Unit
		if err := u.UnmarshalBinary(b); err != nil {
			return
		}
		again, _ := u.MarshalBinary()
		var v Unit
		if err := v.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-decoding a re-encoded state: %v", err)
		}
		// Compared as bytes, not with reflect.DeepEqual: a stored NaN
		// (the fuzzer found one) is never equal to itself. b itself may
		// hold non-minimal varints, so again need not equal b.
		if third, _ := v.MarshalBinary(); !bytes.Equal(third, again) {
			t.Fatalf("re-encoding a decoded state changed it:\n%x\n%x", again, third)
		}
		// A decoded state must be usable.
		u.HealthAt(tSim)
		u.ForecastAt(tSim)
		u.Observe(reading(tSim.Add(400*day), map[string]string{"ups.test.result": "Aborted"}, map[string]float64{"ups.load": 50, "battery.charge": 100, "battery.runtime": 900}), nil)
	})
}
