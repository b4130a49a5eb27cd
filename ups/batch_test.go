package ups

import (
	"errors"

	"reflect"
	"testing"
	"time"
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
