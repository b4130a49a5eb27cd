package battery

import (
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// benchReading is a reading as a real unit sends it: the variables of a
// common usbhid-ups dump, texts included.
func benchReading(serial ups.Serial) *ups.Reading {
	r := &ups.Reading{Serial: serial}
	r.SetText("ups.status", "OL CHRG")
	for _, kv := range [][2]string{
		{"battery.date", "2024/05/01"}, {"battery.mfr.date", "2024/01/02"}, {"battery.type", "PbAc"},
		{"ups.test.result", "No test initiated"}, {"ups.mfr", "American Power Conversion"},
		{"ups.model", "Back-UPS XS 1500G"}, {"ups.serial", "3B1234X56789"}, {"device.type", "ups"},
		{"driver.name", "usbhid-ups"}, {"ups.beeper.status", "enabled"}, {"input.sensitivity", "medium"},
	} {
		r.SetText(kv[0], kv[1])
	}
	for _, kv := range []struct {
		n string
		v float64
	}{
		{"battery.charge", 100}, {"battery.charge.low", 10}, {"battery.charge.warning", 50},
		{"battery.runtime", 1850}, {"battery.runtime.low", 120}, {"battery.voltage", 27.1},
		{"battery.voltage.nominal", 24}, {"input.voltage", 231}, {"input.voltage.nominal", 230},
		{"input.transfer.low", 155}, {"input.transfer.high", 280}, {"output.voltage", 230},
		{"ups.load", 37}, {"ups.realpower.nominal", 865}, {"ups.delay.shutdown", 20},
		{"ups.timer.reboot", 0}, {"ups.timer.shutdown", -1}, {"ups.test.interval", 1209600},
		{"battery.temperature", 29},
	} {
		r.SetNum(kv.n, kv.v)
	}
	return r
}

// BenchmarkObserve is the cost per reading for one unit reporting every
// 10 s (hour and day closes included as they come).
func BenchmarkObserve(b *testing.B) {
	r := benchReading("S1")
	u := &Unit{}
	at := tSim
	var evs []rules.Event
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(10 * time.Second)
		r.Time = at
		evs = u.Observe(r, evs[:0])
	}
}

// BenchmarkFleet100k cycles readings over 100,000 units, each reading
// every 10 s, so states are out of cache as in a real fleet; it reports
// the memory and stored bytes per unit after a simulated week.
func BenchmarkFleet100k(b *testing.B) {
	const n = 100_000
	units := make([]Unit, n)
	rs := make([]*ups.Reading, 64)
	for i := range rs {
		rs[i] = benchReading(ups.Serial(fmt.Sprintf("S%05d", i)))
	}
	var evs []rules.Event
	// Three weeks of hourly readings for every unit, to fill the states
	// (baseline, recent days) before measuring.
	for step := range 21 * 24 {
		at := tSim.Add(time.Duration(step) * time.Hour)
		for i := range units {
			r := rs[i%len(rs)]
			r.Time = at
			r.Metrics[3].Value = 1800 + float64(i%97) // battery.runtime varies
			evs = units[i].Observe(r, evs[:0])
		}
	}
	stored := 0
	for i := range units {
		buf, _ := units[i].MarshalBinary()
		stored += len(buf)
	}
	i, at := 0, tSim.Add(21*24*time.Hour)
	b.ResetTimer()
	for b.Loop() {
		r := rs[i%len(rs)]
		r.Time = at
		evs = units[i].Observe(r, evs[:0])
		if i++; i == n {
			i, at = 0, at.Add(10*time.Second)
		}
	}
	b.ReportMetric(float64(unsafe.Sizeof(Unit{})), "mem-bytes/unit")
	b.ReportMetric(float64(stored)/n, "stored-bytes/unit")
}

// BenchmarkEncode is the cost of the stored form of a full state.
func BenchmarkEncode(b *testing.B) {
	u := richUnit(b)
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf, _ = u.AppendBinary(buf[:0])
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}

// BenchmarkTrackerBatch is the tracker's CPU per reading without the
// bus: decoding a 200-reading batch (its own consumer decodes what the
// rule engine decodes too) with the tracker's reused ups.BatchDecoder,
// finding each unit's state and observing.
func BenchmarkTrackerBatch(b *testing.B) {
	const n = 200
	rs := make([]ups.Reading, n)
	units := make(map[ups.Serial]*Unit, n)
	for i := range rs {
		rs[i] = *benchReading(ups.Serial(fmt.Sprintf("1100000%05d", i)))
		units[rs[i].Serial] = &Unit{}
	}
	at := tSim
	var out []ups.Reading
	var evs []rules.Event
	var buf []byte
	dec := ups.NewBatchDecoder()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		at = at.Add(10 * time.Second)
		for i := range rs {
			rs[i].Time = at
		}
		buf = ups.AppendBatch(buf[:0], rs)
		b.StartTimer()
		var err error
		dec.Reset()
		out, err = dec.Append(out[:0], buf)
		if err != nil {
			b.Fatal(err)
		}
		for i := range out {
			evs = units[out[i].Serial].Observe(&out[i], evs[:0])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/reading")
}
