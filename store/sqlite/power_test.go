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

// TestWriteWhileReading: a report reads a unit's week in one long query
// on the reader pool (StatusChanges, OnBattery, Query's pass). WAL mode
// lets the recorder commit meanwhile: the write below returns while a
// read transaction is open mid-way through its rows, and the read keeps
// its snapshot. Without WAL (journal_mode=DELETE) the write would wait
// on the reader's lock for the busy timeout and fail with SQLITE_BUSY.
func TestWriteWhileReading(t *testing.T) {
	s, _ := openStore(t, Options{})
	ctx := t.Context()
	var rs []ups.Reading
	for i := range 1000 {
		rs = append(rs, reading(unitA, t0.Add(time.Duration(i)*10*time.Second), kv{"ups.status", "OL"}, kv{"battery.charge", 100.0}))
	}
	if err := s.WriteReadings(ctx, rs); err != nil {
		t.Fatal(err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT ts FROM readings WHERE serial = ? ORDER BY ts`, string(unitA))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() { // the read transaction is open from here to Close
		t.Fatalf("no first row: %v", rows.Err())
	}
	// Bounded well under the busy timeout, so a write that waited for
	// the reader fails here rather than succeeding late.
	wctx, cancel := context.WithTimeout(ctx, busyTimeout/2)
	defer cancel()
	late := reading(unitA, t0.Add(time.Hour*24), kv{"ups.status", "OB"}, kv{"battery.charge", 99.0})
	if err := s.WriteReadings(wctx, []ups.Reading{late}); err != nil {
		t.Fatalf("write during a read: %v", err)
	}
	n := 1
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 1000 {
		t.Errorf("the read saw %d rows, want its snapshot's 1000", n)
	}
	// The write is there for the next read.
	got, err := s.Latest(ctx, unitA)
	if err != nil || !got.Time.Equal(late.Time) {
		t.Errorf("latest after the write: %v %v, want the reading at %s", got.Time, err, late.Time)
	}
}
