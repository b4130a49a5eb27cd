package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/store/storetest"
	"github.com/upswatch/upswatch/ups"
)

// TestOnBattery: spans of OB readings, from the first to the next reading
// that is not, calibration and self-test excluded, readings without a
// status ignored, the last span open when the range ends on battery, and
// another unit's readings not mixed in.
func TestOnBattery(t *testing.T) {
	s, _ := openStore(t, Options{})
	ctx := context.Background()
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	var rs []ups.Reading
	for _, r := range []struct {
		sec    int
		status string
	}{
		{0, "OL"}, {10, "OB DISCHRG"}, {13, "OL CHRG"}, // a 3 s blip
		{20, "OB CAL"}, {25, "OL"}, // calibration: not an outage
		{30, "OB"}, {35, ""}, {40, "OB LB"}, {50, "OL"}, // a reading without status inside
		{60, "OB TEST"}, {62, "OL"},
		{70, "OB"}, // still on battery at the end
	} {
		rd := reading(unitA, at(r.sec), kv{"battery.charge", 90.0})
		if r.status != "" {
			rd = reading(unitA, at(r.sec), kv{"ups.status", r.status}, kv{"battery.charge", 90.0})
		}
		rs = append(rs, rd, reading(unitB, at(r.sec), kv{"ups.status", "OB"}))
	}
	if err := s.WriteReadings(ctx, rs); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		from, to int
		want     []store.Span
	}{
		{"all", -10, 100, []store.Span{{Start: at(10), End: at(13)}, {Start: at(30), End: at(50)}, {Start: at(70)}}},
		{"cut inside an outage", 32, 45, []store.Span{{Start: at(40)}}},
		{"on line throughout", 0, 10, nil},
		{"to is exclusive", 0, 13, []store.Span{{Start: at(10)}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.OnBattery(ctx, unitA, at(tt.from), at(tt.to))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("spans %v, want %v", got, tt.want)
			}
			for i := range got {
				if !got[i].Start.Equal(tt.want[i].Start) || !got[i].End.Equal(tt.want[i].End) {
					t.Errorf("span %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestStatusChanges(t *testing.T) {
	s, _ := openStore(t, Options{})
	storetest.StatusChanges(t, s)
}
