package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/upswatch/upswatch/store/storetest"
	"github.com/upswatch/upswatch/ups"
)

func TestOnBattery(t *testing.T) {
	s, _ := openStore(t, Options{})
	storetest.OnBattery(t, s)
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
