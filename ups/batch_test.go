package ups

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
	"unsafe"
)

func sampleReadings() []Reading {
	var a Reading
	a.Serial = "123456789012"
	a.Time = time.UnixMilli(1764000000000).UTC()
	a.SetText("ups.status", "OB DISCHRG XYZ")
	a.SetNum("battery.charge", 87)
	a.SetNum("input.voltage", 0)
	a.SetNum("vendor.custom.thing", -1.5)
	a.SetText("ups.alarm", "Replace battery!")
	a.SetText("vendor.note", "héllo")
	b := Reading{Serial: "1234567890123456", Time: time.UnixMilli(5).UTC(), Presence: PresenceOffline}
	return []Reading{a, b}
}

func TestBatchRoundTrip(t *testing.T) {
	in := sampleReadings()
	enc := AppendBatch(nil, in)
	out, err := DecodeBatch(enc, nil)
	if err != nil {
		t.Fatalf("DecodeBatch: %v", err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip mismatch:\n in=%+v\nout=%+v", in, out)
	}
	if v, ok := out[0].Num(BatteryCharge); !ok || v != 87 {
		t.Fatalf("Num(BatteryCharge) = %v, %v", v, ok)
	}
	if !out[0].Status.Has(OB|DISCHRG) || out[0].Status.Any(OL) {
		t.Fatalf("status flags = %v", out[0].Status.Flags)
	}
}

func TestDecodeBatchRejectsCorruption(t *testing.T) {
	enc := AppendBatch(nil, sampleReadings())
	for cut := 0; cut < len(enc); cut++ {
		if _, err := DecodeBatch(enc[:cut], nil); !errors.Is(err, ErrBadBatch) {
			t.Fatalf("truncated at %d: err = %v, want ErrBadBatch", cut, err)
		}
	}
	if _, err := DecodeBatch(append(enc, 0), nil); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("trailing byte: err = %v", err)
	}
	bad := append([]byte{}, enc...)
	bad[0] = 99
	if _, err := DecodeBatch(bad, nil); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("bad version: err = %v", err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(AppendBatch(nil, sampleReadings()))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := DecodeBatch(b, nil)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to something that decodes
		// to the same readings.
		again, err := DecodeBatch(AppendBatch(nil, rs), nil)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again) != len(rs) {
			t.Fatalf("len %d != %d", len(again), len(rs))
		}
	})
}

func TestSerial(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"123456789012", true},
		{"1234567890123456", true},
		{"12345678901", false},
		{"1234567890123", false},
		{"12345678901a", false},
		{"", false},
		{"１２３４５６７８９０１２", false},
	}
	for _, tt := range tests {
		if _, err := ParseSerial(tt.in); (err == nil) != tt.ok {
			t.Errorf("ParseSerial(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestPartitionStable(t *testing.T) {
	// The mapping is part of the bus contract; these values must never
	// change.
	if p := Partition("123456789012", 16); p != Partition("123456789012", 16) || p < 0 || p >= 16 {
		t.Fatalf("Partition = %d", p)
	}
	seen := map[int]bool{}
	for i := 0; i < 1000; i++ {
		s := Serial(time.UnixMilli(int64(i)).Format("150405.000") + "00")
		seen[Partition(s, 16)] = true
	}
	if len(seen) != 16 {
		t.Fatalf("1000 serials hit %d of 16 partitions", len(seen))
	}
}

func TestParseStatus(t *testing.T) {
	s := ParseStatus("OL CHRG WEIRD")
	if !s.Has(OL|CHRG) || s.Any(OB) || s.Raw != "OL CHRG WEIRD" {
		t.Fatalf("got %+v", s)
	}
	if got := (OL | LB).String(); got != "OL LB" {
		t.Fatalf("String = %q", got)
	}
}

func BenchmarkBatchRoundTrip(b *testing.B) {
	rs := make([]Reading, 200)
	for i := range rs {
		rs[i] = sampleReadings()[0]
	}
	var buf []byte
	var out []Reading
	for b.Loop() {
		buf = AppendBatch(buf[:0], rs)
		out, _ = DecodeBatch(buf, out[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rs)), "ns/reading")
}

// manyReadings is n readings of distinct units, like a partition's batch.
func manyReadings(n int) []Reading {
	rs := make([]Reading, n)
	for i := range rs {
		rs[i] = sampleReadings()[0]
		rs[i].Serial = Serial(fmt.Sprintf("9000000%05d", i))
	}
	return rs
}

func TestBatchDecoder(t *testing.T) {
	in := sampleReadings()
	enc := AppendBatch(nil, in)
	bd := NewBatchDecoder()
	for round := range 3 { // warm arenas and intern tables give the same
		bd.Reset()
		out, err := bd.Append(nil, enc)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("round %d mismatch:\n in=%+v\nout=%+v", round, in, out)
		}
		for v := range numVars {
			a, aok := in[0].Num(v)
			b, bok := out[0].Num(v)
			if a != b || aok != bok {
				t.Fatalf("round %d: Num(%v) = %v, %v; want %v, %v", round, v, b, bok, a, aok)
			}
		}
	}
}

func TestBatchDecoderAppendsAndKeepsReadingsApart(t *testing.T) {
	bd := NewBatchDecoder()
	one := AppendBatch(nil, manyReadings(3))
	two := AppendBatch(nil, manyReadings(500)) // outgrows the first arena
	rs, err := bd.Append(nil, one)
	if err != nil {
		t.Fatal(err)
	}
	rs, err = bd.Append(rs, two)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 503 {
		t.Fatalf("%d readings, want 503", len(rs))
	}
	want := manyReadings(1)[0]
	// Appending to one reading's slices must not write into another's.
	rs[0].SetNum("vendor.other", 1)
	rs[0].SetText("vendor.more", "x")
	for i := 1; i < len(rs); i++ {
		if !reflect.DeepEqual(rs[i].Metrics, want.Metrics) || !reflect.DeepEqual(rs[i].Texts, want.Texts) {
			t.Fatalf("reading %d changed: %+v", i, rs[i])
		}
	}
	// Interned: the same serial decoded twice is one string.
	rs2, err := bd.Append(nil, one)
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(string(rs2[1].Serial)) != unsafe.StringData(string(rs[1].Serial)) {
		t.Fatal("serial not interned")
	}
}

func TestBatchDecoderRejectsCorruption(t *testing.T) {
	enc := AppendBatch(nil, sampleReadings())
	bd := NewBatchDecoder()
	prefix := manyReadings(2)
	for cut := 0; cut < len(enc); cut++ {
		rs, err := bd.Append(prefix, enc[:cut])
		if !errors.Is(err, ErrBadBatch) {
			t.Fatalf("truncated at %d: err = %v, want ErrBadBatch", cut, err)
		}
		if len(rs) != len(prefix) {
			t.Fatalf("truncated at %d: %d readings returned, want the %d given", cut, len(rs), len(prefix))
		}
	}
	if _, err := bd.Append(nil, append(enc, 0)); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("trailing byte: err = %v", err)
	}
}

// BenchmarkDecodeBatch is what each consumer of the READINGS stream pays
// per reading to decode a 200-reading batch: DecodeBatch allocates per
// reading, a warm BatchDecoder does not.
func BenchmarkDecodeBatch(b *testing.B) {
	rs := manyReadings(200)
	buf := AppendBatch(nil, rs)
	b.Run("DecodeBatch", func(b *testing.B) {
		b.ReportAllocs()
		var out []Reading
		for b.Loop() {
			out, _ = DecodeBatch(buf, out[:0])
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rs)), "ns/reading")
		b.ReportMetric(float64(testing.AllocsPerRun(10, func() { out, _ = DecodeBatch(buf, out[:0]) }))/float64(len(rs)), "allocs/reading")
	})
	b.Run("BatchDecoder", func(b *testing.B) {
		b.ReportAllocs()
		bd := NewBatchDecoder()
		var out []Reading
		for b.Loop() {
			bd.Reset()
			out, _ = bd.Append(out[:0], buf)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rs)), "ns/reading")
		b.ReportMetric(float64(testing.AllocsPerRun(10, func() { bd.Reset(); out, _ = bd.Append(out[:0], buf) }))/float64(len(rs)), "allocs/reading")
	})
}
