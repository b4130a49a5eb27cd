package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

const (
	unitA ups.Serial = "123456789012"
	unitB ups.Serial = "1234567890123456"
)

// t0 is on the hour, so minute and hour buckets start at it.
var t0 = time.Date(2025, 11, 24, 10, 0, 0, 0, time.UTC)

func openStore(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

// kv is a variable of a test reading: a float64 is numeric, a string is
// text ("ups.status" included).
type kv struct {
	name  string
	value any
}

func reading(serial ups.Serial, at time.Time, vars ...kv) ups.Reading {
	r := ups.Reading{Serial: serial, Time: at}
	for _, v := range vars {
		switch x := v.value.(type) {
		case float64:
			r.SetNum(v.name, x)
		case string:
			r.SetText(v.name, x)
		default:
			panic(fmt.Sprintf("bad test value %T", x))
		}
	}
	return r
}

func write(t testing.TB, s *Store, rs ...ups.Reading) {
	t.Helper()
	if err := s.WriteReadings(context.Background(), rs); err != nil {
		t.Fatalf("WriteReadings: %v", err)
	}
}

func count(t testing.TB, s *Store, table string, serial ups.Serial) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow("SELECT count(*) FROM "+table+" WHERE serial = ?", string(serial)).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// fixture is a unit's readings over two minutes: input.voltage is a
// column, output.current lives in the JSON column.
func fixture() []ups.Reading {
	return []ups.Reading{
		reading(unitA, t0, kv{"ups.status", "OL"}, kv{"input.voltage", 230.0}, kv{"output.current", 1.0}),
		reading(unitA, t0.Add(10*time.Second), kv{"ups.status", "OL"}, kv{"input.voltage", 232.0}, kv{"output.current", 2.0}),
		reading(unitA, t0.Add(20*time.Second), kv{"ups.status", "OL"}, kv{"input.voltage", 234.0}, kv{"output.current", 6.0}),
		reading(unitA, t0.Add(70*time.Second),
			kv{"ups.status", "OB DISCHRG"}, kv{"input.voltage", 0.0}, kv{"battery.charge", 87.0},
			kv{"output.current", 4.5}, kv{"ups.alarm", "Replace \"battery\"\n"}, kv{"device.model", "Smart-UPS 1500"}),
	}
}

func m(name string, v float64) ups.Metric { return ups.Metric{Name: name, Value: v} }

func pt(at time.Time, mean, min, max float64, n int) store.Point {
	return store.Point{Time: at, Mean: mean, Min: min, Max: max, Count: n}
}

func TestRoundTrip(t *testing.T) {
	s, _ := openStore(t, Options{})
	ctx := context.Background()
	rs := fixture()
	write(t, s, rs...)

	got, err := s.Latest(ctx, unitA)
	if err != nil {
		t.Fatalf("Latest: %v", err)
	}
	want := rs[3]
	if !got.Time.Equal(want.Time) || got.Serial != want.Serial || got.Status != want.Status || !got.HasStatus {
		t.Errorf("Latest header = %v %v %+v %v, want %v %v %+v", got.Serial, got.Time, got.Status, got.HasStatus, want.Serial, want.Time, want.Status)
	}
	// Known variables come back in package ups order, then the others.
	wantMetrics := []ups.Metric{m("battery.charge", 87), m("input.voltage", 0), m("output.current", 4.5)}
	if !reflect.DeepEqual(got.Metrics, wantMetrics) {
		t.Errorf("Latest metrics = %v, want %v", got.Metrics, wantMetrics)
	}
	if !reflect.DeepEqual(got.Texts, want.Texts) {
		t.Errorf("Latest texts = %q, want %q", got.Texts, want.Texts)
	}
	if v, ok := got.Num(ups.BatteryCharge); !ok || v != 87 {
		t.Errorf("Latest Num(BatteryCharge) = %v %v, want 87 (index rebuilt)", v, ok)
	}

	series, err := s.Query(ctx, store.Query{Serial: unitA, From: t0, To: t0.Add(2 * time.Minute), Every: time.Minute})
	if err != nil {
		t.Fatalf("Query: %v", err)
	}
	wantSeries := store.Series{
		Serial: unitA, From: t0, To: t0.Add(2 * time.Minute), Every: time.Minute,
		Fields: []store.FieldSeries{
			{Field: "battery.charge", Points: []store.Point{pt(t0.Add(time.Minute), 87, 87, 87, 1)}},
			{Field: "input.voltage", Points: []store.Point{pt(t0, 232, 230, 234, 3), pt(t0.Add(time.Minute), 0, 0, 0, 1)}},
			{Field: "output.current", Points: []store.Point{pt(t0, 3, 1, 6, 3), pt(t0.Add(time.Minute), 4.5, 4.5, 4.5, 1)}},
		},
	}
	if !reflect.DeepEqual(series, wantSeries) {
		t.Errorf("Query =\n%+v\nwant\n%+v", series, wantSeries)
	}
}

func TestLatestNotFound(t *testing.T) {
	s, _ := openStore(t, Options{})
	// A unit with only a presence change has no reading either.
	write(t, s, ups.Reading{Serial: unitB, Time: t0, Presence: ups.PresenceOnline})
	for _, serial := range []ups.Serial{unitA, unitB} {
		if _, err := s.Latest(context.Background(), serial); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Latest(%s) error = %v, want ErrNotFound", serial, err)
		}
	}
}

func TestPresence(t *testing.T) {
	s, _ := openStore(t, Options{})
	write(t, s,
		reading(unitA, t0, kv{"input.voltage", 230.0}),
		ups.Reading{Serial: unitA, Time: t0.Add(time.Second), Presence: ups.PresenceOffline},
		ups.Reading{Serial: unitA, Time: t0.Add(2 * time.Second), Presence: ups.PresenceOnline},
	)
	got, err := s.Latest(context.Background(), unitA)
	if err != nil {
		t.Fatalf("Latest: %v", err)
	}
	if !got.Time.Equal(t0) {
		t.Errorf("Latest time = %v, want the telemetry reading's %v", got.Time, t0)
	}
	rows, err := s.r.Query("SELECT ts, state FROM presence WHERE serial = ? ORDER BY ts", string(unitA))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var timeline []string
	for rows.Next() {
		var ts int64
		var state string
		if err := rows.Scan(&ts, &state); err != nil {
			t.Fatal(err)
		}
		timeline = append(timeline, fmt.Sprintf("%d:%s", ts-t0.UnixMilli(), state))
	}
	if want := []string{"1000:offline", "2000:online"}; !reflect.DeepEqual(timeline, want) {
		t.Errorf("presence timeline = %v, want %v", timeline, want)
	}
}

func TestIdempotent(t *testing.T) {
	s, _ := openStore(t, Options{})
	ctx := context.Background()
	batch := append(fixture(), ups.Reading{Serial: unitA, Time: t0, Presence: ups.PresenceOnline})
	q := store.Query{Serial: unitA, From: t0, To: t0.Add(time.Hour), Every: time.Hour}

	write(t, s, batch...)
	first, err := s.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, batch...) // a redelivered bus batch
	second, err := s.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("after rewrite Query =\n%+v\nwant\n%+v", second, first)
	}
	if n := count(t, s, "readings", unitA); n != 4 {
		t.Errorf("readings rows = %d, want 4", n)
	}
	if n := count(t, s, "presence", unitA); n != 1 {
		t.Errorf("presence rows = %d, want 1", n)
	}
}

func fieldNames(s store.Series) []string {
	var names []string
	for _, f := range s.Fields {
		names = append(names, f.Field)
	}
	return names
}

func TestQueryFields(t *testing.T) {
	s, _ := openStore(t, Options{})
	write(t, s, fixture()...)
	write(t, s, reading(unitB, t0, kv{"input.voltage", 120.0}, kv{"input.current", 3.0}))

	tests := []struct {
		name   string
		serial ups.Serial
		fields []string
		want   []string
	}{
		{"all", unitA, nil, []string{"battery.charge", "input.voltage", "output.current"}},
		{"column", unitA, []string{"input.voltage"}, []string{"input.voltage"}},
		{"json", unitA, []string{"output.current"}, []string{"output.current"}},
		{"both sorted, duplicates once", unitA, []string{"output.current", "input.voltage", "output.current"}, []string{"input.voltage", "output.current"}},
		{"unknown and unreported", unitA, []string{"nope", "ups.load"}, nil},
		{"other unit's field", unitA, []string{"input.current"}, nil},
		{"other unit, all", unitB, nil, []string{"input.current", "input.voltage"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Query(context.Background(), store.Query{
				Serial: tt.serial, From: t0, To: t0.Add(time.Hour), Every: time.Minute, Fields: tt.fields,
			})
			if err != nil {
				t.Fatal(err)
			}
			if names := fieldNames(got); !reflect.DeepEqual(names, tt.want) {
				t.Errorf("fields = %v, want %v", names, tt.want)
			}
		})
	}
}

func TestQueryBuckets(t *testing.T) {
	s, _ := openStore(t, Options{})
	var rs []ups.Reading
	// One reading every 10 s from 09:59:00 to 10:01:50, value = seconds
	// since 09:59.
	base := t0.Add(-time.Minute)
	for i := range 18 {
		rs = append(rs, reading(unitA, base.Add(time.Duration(i)*10*time.Second), kv{"ups.load", float64(i * 10)}))
	}
	write(t, s, rs...)

	tests := []struct {
		name     string
		from, to time.Time
		every    time.Duration
		want     []store.Point
	}{
		{
			name: "aligned minutes",
			from: base, to: base.Add(3 * time.Minute), every: time.Minute,
			want: []store.Point{pt(base, 25, 0, 50, 6), pt(t0, 85, 60, 110, 6), pt(t0.Add(time.Minute), 145, 120, 170, 6)},
		},
		{
			// Buckets stay on the minute: the first starts before From
			// but holds only the readings from From on.
			name: "unaligned from and to",
			from: base.Add(25 * time.Second), to: t0.Add(15 * time.Second), every: time.Minute,
			want: []store.Point{pt(base, 40, 30, 50, 3), pt(t0, 65, 60, 70, 2)},
		},
		{
			name: "hour bucket starts on the hour",
			from: t0.Add(30 * time.Second), to: t0.Add(time.Hour), every: time.Hour,
			want: []store.Point{pt(t0, 130, 90, 170, 9)},
		},
		{
			name: "to is exclusive",
			from: base, to: base.Add(10 * time.Second), every: time.Second,
			want: []store.Point{pt(base, 0, 0, 0, 1)},
		},
		{
			name: "sub-millisecond from rounds up",
			from: base.Add(time.Microsecond), to: base.Add(20 * time.Second), every: 10 * time.Second,
			want: []store.Point{pt(base.Add(10*time.Second), 10, 10, 10, 1)},
		},
		{
			// 7 s does not divide a minute: buckets are multiples of 7 s
			// since the epoch.
			name: "odd width",
			from: t0, to: t0.Add(20 * time.Second), every: 7 * time.Second,
			want: func() []store.Point {
				e := int64(7000)
				b := func(ms int64) time.Time { return time.UnixMilli(ms - ms%e).UTC() }
				m := t0.UnixMilli()
				if b(m) == b(m+10000) {
					return []store.Point{pt(b(m), 65, 60, 70, 2)}
				}
				return []store.Point{pt(b(m), 60, 60, 60, 1), pt(b(m+10000), 70, 70, 70, 1)}
			}(),
		},
		{
			name: "empty range",
			from: t0.Add(time.Hour), to: t0.Add(2 * time.Hour), every: time.Minute,
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Query(context.Background(), store.Query{Serial: unitA, From: tt.from, To: tt.to, Every: tt.every})
			if err != nil {
				t.Fatal(err)
			}
			var points []store.Point
			switch len(got.Fields) {
			case 0:
			case 1:
				points = got.Fields[0].Points
			default:
				t.Fatalf("fields = %v, want only ups.load", fieldNames(got))
			}
			if !reflect.DeepEqual(points, tt.want) {
				t.Errorf("points =\n%+v\nwant\n%+v", points, tt.want)
			}
		})
	}
}

func TestQueryValidation(t *testing.T) {
	s, _ := openStore(t, Options{})
	tests := []struct {
		name string
		q    store.Query
		want string
	}{
		{"bad serial", store.Query{Serial: "12ab", From: t0, To: t0.Add(time.Hour), Every: time.Minute}, `serial "12ab" is not 12 or 16 digits`},
		{"to before from", store.Query{Serial: unitA, From: t0, To: t0.Add(-time.Second), Every: time.Minute}, "must be after from"},
		{"to equals from", store.Query{Serial: unitA, From: t0, To: t0, Every: time.Minute}, "must be after from"},
		{"zero every", store.Query{Serial: unitA, From: t0, To: t0.Add(time.Hour)}, "every (0s) must be positive"},
		{"negative every", store.Query{Serial: unitA, From: t0, To: t0.Add(time.Hour), Every: -time.Minute}, "must be positive"},
		{"sub-millisecond every", store.Query{Serial: unitA, From: t0, To: t0.Add(time.Hour), Every: 1500 * time.Microsecond}, "whole number of milliseconds"},
		{"too many buckets", store.Query{Serial: unitA, From: t0, To: t0.Add(24 * time.Hour), Every: time.Second}, "spans 86400 buckets, more than 20000"},
		{"empty field", store.Query{Serial: unitA, From: t0, To: t0.Add(time.Hour), Every: time.Minute, Fields: []string{"ups.load", ""}}, `invalid field name ""`},
		{"huge range", store.Query{Serial: unitA, From: store.MinTime, To: store.MaxTime, Every: time.Millisecond}, "more than 20000"},
		{"beyond any store", store.Query{Serial: unitA, From: time.Unix(-1<<40, 0), To: time.Unix(1<<40, 0), Every: time.Millisecond}, "range must lie within"},
		{"field with a line break", store.Query{Serial: unitA, From: t0, To: t0.Add(time.Hour), Every: time.Minute, Fields: []string{"a\nb"}}, "invalid field name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Query(context.Background(), tt.q)
			if !errors.Is(err, store.ErrBadQuery) {
				t.Fatalf("error = %v, want ErrBadQuery", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
	// The limit itself is accepted, even when the range is unaligned.
	ok := store.Query{Serial: unitA, From: t0, To: t0.Add(store.MaxBuckets * time.Second), Every: time.Second}
	if _, err := s.Query(context.Background(), ok); err != nil {
		t.Errorf("Query of exactly %d buckets: %v", store.MaxBuckets, err)
	}
}

func TestDeleteUnit(t *testing.T) {
	s, _ := openStore(t, Options{})
	ctx := context.Background()
	write(t, s, fixture()...)
	write(t, s,
		ups.Reading{Serial: unitA, Time: t0, Presence: ups.PresenceOnline},
		reading(unitB, t0, kv{"input.voltage", 120.0}),
		ups.Reading{Serial: unitB, Time: t0, Presence: ups.PresenceOnline},
	)
	if err := s.DeleteUnit(ctx, unitA); err != nil {
		t.Fatalf("DeleteUnit: %v", err)
	}
	if _, err := s.Latest(ctx, unitA); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Latest after delete: %v, want ErrNotFound", err)
	}
	for _, table := range []string{"readings", "presence", "units"} {
		if n := count(t, s, table, unitA); n != 0 {
			t.Errorf("%s rows of deleted unit = %d, want 0", table, n)
		}
		if n := count(t, s, table, unitB); n != 1 {
			t.Errorf("%s rows of other unit = %d, want 1", table, n)
		}
	}
	// A unit that comes back is registered again, so retention sees it.
	write(t, s, reading(unitA, t0.Add(time.Hour), kv{"input.voltage", 230.0}))
	if n := count(t, s, "units", unitA); n != 1 {
		t.Errorf("units rows after the unit wrote again = %d, want 1", n)
	}
}

func TestPrune(t *testing.T) {
	s, _ := openStore(t, Options{})
	s.pruneChunk = 100
	ctx := context.Background()
	// More than two chunks for one unit, so the chunk loop runs.
	n := int(s.pruneChunk)*2 + 10
	var rs []ups.Reading
	for i := range n {
		rs = append(rs, reading(unitA, t0.Add(time.Duration(i)*time.Second), kv{"ups.load", float64(i)}))
	}
	rs = append(rs,
		ups.Reading{Serial: unitA, Time: t0, Presence: ups.PresenceOnline},
		ups.Reading{Serial: unitA, Time: t0.Add(time.Duration(n) * time.Second), Presence: ups.PresenceOffline},
		reading(unitB, t0, kv{"ups.load", 1.0}),
		reading(unitB, t0.Add(time.Duration(n)*time.Second), kv{"ups.load", 1.0}),
	)
	write(t, s, rs...)

	before := t0.Add(time.Duration(n-5) * time.Second) // keeps unitA's last 5 readings
	deleted, err := s.Prune(ctx, before)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if want := int64(n - 5 + 1 + 1); deleted != want {
		t.Errorf("Prune deleted %d rows, want %d", deleted, want)
	}
	if got := count(t, s, "readings", unitA); got != 5 {
		t.Errorf("unitA readings left = %d, want 5", got)
	}
	if got := count(t, s, "presence", unitA); got != 1 {
		t.Errorf("unitA presence left = %d, want 1", got)
	}
	if got := count(t, s, "readings", unitB); got != 1 {
		t.Errorf("unitB readings left = %d, want 1", got)
	}
	if deleted, err := s.Prune(ctx, before); err != nil || deleted != 0 {
		t.Errorf("second Prune = %d, %v; want 0, nil", deleted, err)
	}
	if got := counterValue(t, s.m.pruned); got != float64(n-5+2) {
		t.Errorf("pruned_total = %v, want %d", got, n-5+2)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Prune(cancelled, before); !errors.Is(err, context.Canceled) {
		t.Errorf("Prune with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestRun(t *testing.T) {
	s, _ := openStore(t, Options{Retention: time.Hour})
	now := time.Now()
	write(t, s,
		reading(unitA, now.Add(-2*time.Hour), kv{"ups.load", 1.0}),
		reading(unitA, now.Add(-time.Minute), kv{"ups.load", 2.0}),
	)
	pruned := make(chan error, 1)
	s.afterPrune = func(_ int64, err error) { pruned <- err }

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if err := <-pruned; err != nil {
		t.Fatalf("first prune: %v", err)
	}
	if got := count(t, s, "readings", unitA); got != 1 {
		t.Errorf("readings after Run's first prune = %d, want 1", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
}

func TestRunWithoutRetention(t *testing.T) {
	s, _ := openStore(t, Options{})
	s.afterPrune = func(int64, error) { t.Error("Run pruned with no retention") }
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "history.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := fixture()
	write(t, s, rs...)
	ctx := context.Background()
	q := store.Query{Serial: unitA, From: t0, To: t0.Add(time.Hour), Every: time.Minute}
	wantSeries, err := s.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	wantLatest, err := s.Latest(ctx, unitA)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	var version int
	if err := s.r.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != schemaVersion {
		t.Errorf("user_version = %d, %v; want %d", version, err, schemaVersion)
	}
	var mode string
	if err := s.r.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	gotSeries, err := s.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotSeries, wantSeries) {
		t.Errorf("Query after reopen =\n%+v\nwant\n%+v", gotSeries, wantSeries)
	}
	gotLatest, err := s.Latest(ctx, unitA)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotLatest, wantLatest) {
		t.Errorf("Latest after reopen = %+v, want %+v", gotLatest, wantLatest)
	}
}

func TestOpenErrors(t *testing.T) {
	newer := filepath.Join(t.TempDir(), "newer.db")
	s, err := Open(newer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		path string
		opts Options
		want string
	}{
		{"empty path", "", Options{}, "path is empty"},
		{"memory", ":memory:", Options{}, "must be a plain file name"},
		{"uri", "file:x.db", Options{}, "must be a plain file name"},
		{"question mark", filepath.Join(t.TempDir(), "a?b.db"), Options{}, "must not contain '?'"},
		{"negative retention", filepath.Join(t.TempDir(), "r.db"), Options{Retention: -time.Hour}, "retention -1h0m0s is negative"},
		{"missing directory", filepath.Join(t.TempDir(), "no", "such", "dir.db"), Options{}, "no/such/dir.db"},
		{"newer schema", newer, Options{}, "schema version 99 is newer than this build supports (1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.path, tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDropped(t *testing.T) {
	s, _ := openStore(t, Options{})
	bad := reading(unitA, t0, kv{"input.voltage", 230.0}, kv{"output.current", 2.0})
	bad.Metrics = append(bad.Metrics,
		ups.Metric{Name: "battery.charge", Value: math.NaN()},
		ups.Metric{Name: "ups.power.nominal", Value: math.Inf(1)},
		ups.Metric{Name: "", Value: 1},
	)
	write(t, s,
		bad,
		reading("not-a-serial", t0, kv{"input.voltage", 230.0}),
		ups.Reading{Serial: unitA, Time: t0, Presence: 9},
	)
	got, err := s.Latest(context.Background(), unitA)
	if err != nil {
		t.Fatal(err)
	}
	want := []ups.Metric{m("input.voltage", 230), m("output.current", 2)}
	if !reflect.DeepEqual(got.Metrics, want) {
		t.Errorf("stored metrics = %v, want %v", got.Metrics, want)
	}
	for reason, n := range map[string]float64{dropNonFinite: 2, dropBadName: 1, dropBadSerial: 1, dropPresence: 1} {
		if got := counterValue(t, s.m.Dropped.WithLabelValues(reason)); got != n {
			t.Errorf("dropped{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	if got := counterValue(t, s.m.Written); got != 1 {
		t.Errorf("readings_written_total = %v, want 1", got)
	}
}

func TestMetricsRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	// Two stores on one registry (a reopen) share the series.
	s1, _ := openStore(t, Options{Registerer: reg})
	s2, _ := openStore(t, Options{Registerer: reg})
	write(t, s1, fixture()...)
	write(t, s2, fixture()[:1]...)

	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]string{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
			}
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = fmt.Sprint(v)
		}
	}
	for name, want := range map[string]string{
		`upswatch_store_readings_written_total{backend=sqlite}`:          "5",
		`upswatch_store_write_seconds{backend=sqlite}`:                   "2",
		`upswatch_store_dropped_total{backend=sqlite,reason=non_finite}`: "0",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q (all: %v)", name, got[name], want, got)
		}
	}
}

// counterValue reads a counter without prometheus/testutil, whose diff
// dependency the module does not carry.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("read counter: %v", err)
	}
	return m.GetCounter().GetValue()
}

// TestConcurrentQueryDuringWrite runs queries on the read pool while the
// writer commits batches: every query succeeds and, reading committed
// snapshots, never sees the count go down.
func TestConcurrentQueryDuringWrite(t *testing.T) {
	s, _ := openStore(t, Options{})
	ctx := context.Background()
	const batches, perBatch = 40, 50
	q := store.Query{Serial: unitA, From: t0, To: t0.Add(24 * time.Hour), Every: time.Hour, Fields: []string{"ups.load", "output.current"}}

	writerDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(writerDone)
		for b := range batches {
			rs := make([]ups.Reading, perBatch)
			for i := range rs {
				at := t0.Add(time.Duration(b*perBatch+i) * time.Second)
				rs[i] = reading(unitA, at, kv{"ups.load", 50.0}, kv{"output.current", 1.5}, kv{"ups.status", "OL"})
			}
			if err := s.WriteReadings(ctx, rs); err != nil {
				t.Errorf("WriteReadings: %v", err)
				return
			}
		}
	})
	for range 3 {
		wg.Go(func() {
			last := 0
			for done := false; !done; {
				select {
				case <-writerDone:
					done = true // one more query after the last commit
				default:
				}
				got, err := s.Query(ctx, q)
				if err != nil {
					t.Errorf("Query: %v", err)
					return
				}
				n := 0
				for _, f := range got.Fields {
					if f.Field == "ups.load" {
						for _, p := range f.Points {
							n += p.Count
						}
					}
				}
				if n < last || n%perBatch != 0 {
					t.Errorf("Query saw %d readings after %d: not a committed snapshot", n, last)
					return
				}
				last = n
				if _, err := s.Latest(ctx, unitA); err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Latest: %v", err)
					return
				}
			}
			if last != batches*perBatch {
				t.Errorf("final Query saw %d readings, want %d", last, batches*perBatch)
			}
		})
	}
	wg.Wait()
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"tab\tnl\n\x01", `"tab\u0009nl\u000a\u0001"`},
		{"héllo ⚡", `"héllo ⚡"`},
		{"bad\xffutf8", `"bad\ufffdutf8"`},
	}
	for _, tt := range tests {
		if got := string(appendJSONString(nil, tt.in)); got != tt.want {
			t.Errorf("appendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestEachNumber(t *testing.T) {
	type member struct {
		name string
		v    float64
	}
	tests := []struct {
		in      string
		want    []member
		wantErr bool
	}{
		{in: `{}`},
		{in: `{"a":1}`, want: []member{{"a", 1}}},
		{in: `{"output.current":1.5,"x":-2e-07,"y":1e+21}`, want: []member{{"output.current", 1.5}, {"x", -2e-07}, {"y", 1e+21}}},
		{in: `{"q\"u,o}te":3}`, want: []member{{`q"u,o}te`, 3}}},
		{in: ``, wantErr: true},
		{in: `[]`, wantErr: true},
		{in: `{"a":}`, wantErr: true},
		{in: `{"a":1,}`, wantErr: true},
		{in: `{"a" 1}`, wantErr: true},
		{in: `{"a":"x"}`, wantErr: true},
		{in: `{"a":1}x}`, wantErr: true},
		{in: `{"unterminated}`, wantErr: true},
	}
	for _, tt := range tests {
		var got []member
		err := eachNumber(tt.in, func(name string, v float64) { got = append(got, member{name, v}) })
		if (err != nil) != tt.wantErr {
			t.Errorf("eachNumber(%s) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("eachNumber(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// FuzzExtraRoundTrip checks that what the encoder writes to the extra
// column is valid JSON that eachNumber and SQLite-compatible readers parse
// back to the same members.
func FuzzExtraRoundTrip(f *testing.F) {
	f.Add("output.current", 1.5, "x\"\\\x01\xff", -2e-7)
	f.Add("a", 0.0, "b", 1e300)
	f.Fuzz(func(t *testing.T, n1 string, v1 float64, n2 string, v2 float64) {
		if n1 == "" || n2 == "" || n1 == n2 || math.IsNaN(v1+v2) || math.IsInf(v1+v2, 0) {
			t.Skip()
		}
		var enc encoder
		enc.num(n1, v1)
		enc.num(n2, v2)
		obj := enc.object(&enc.nums).(string)
		var std map[string]float64
		if err := json.Unmarshal([]byte(obj), &std); err != nil {
			t.Fatalf("encoder wrote invalid JSON %s: %v", obj, err)
		}
		got := map[string]float64{}
		if err := eachNumber(obj, func(name string, v float64) { got[name] = v }); err != nil {
			t.Fatalf("eachNumber(%s): %v", obj, err)
		}
		if !reflect.DeepEqual(got, std) {
			t.Errorf("eachNumber(%s) = %v, encoding/json = %v", obj, got, std)
		}
	})
}

// FuzzEachNumber: arbitrary (corrupt) column content is an error, never a
// panic.
func FuzzEachNumber(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a\"":1,"b":2}`, `{"`, `{"\`, `{"a":`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = eachNumber(s, func(string, float64) {})
	})
}

func TestWriteCancelled(t *testing.T) {
	s, _ := openStore(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.WriteReadings(ctx, fixture())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteReadings with a cancelled context = %v, want context.Canceled", err)
	}
	if n := count(t, s, "readings", unitA); n != 0 {
		t.Errorf("rows after a failed write = %d, want 0", n)
	}
	if got := counterValue(t, s.m.WriteErrors); got != 1 {
		t.Errorf("write_errors_total = %v, want 1", got)
	}
	// The store is still usable, and the unit cache was not polluted: the
	// retried batch registers the unit.
	write(t, s, fixture()...)
	if n := count(t, s, "units", unitA); n != 1 {
		t.Errorf("units rows after the retry = %d, want 1", n)
	}
}

func TestLatestWithoutStatus(t *testing.T) {
	s, _ := openStore(t, Options{})
	write(t, s, reading(unitA, t0.Add(1500*time.Microsecond), kv{"ups.load", 12.0}))
	got, err := s.Latest(context.Background(), unitA)
	if err != nil {
		t.Fatal(err)
	}
	if got.HasStatus || got.Status != (ups.Status{}) || got.Texts != nil {
		t.Errorf("Latest = status %+v (has %v), texts %v; want none", got.Status, got.HasStatus, got.Texts)
	}
	if want := t0.Add(time.Millisecond); !got.Time.Equal(want) || got.Time.Location() != time.UTC {
		t.Errorf("Latest time = %v, want %v in UTC (millisecond precision)", got.Time, want)
	}
}

// TestPruneManyUnits checks that prune transactions spanning several
// units, split by the row budget, delete exactly the old rows.
func TestPruneManyUnits(t *testing.T) {
	const units, old, recent = 30, 5, 2
	for _, chunk := range []int64{1, 7, 1000} {
		t.Run(fmt.Sprint("chunk=", chunk), func(t *testing.T) {
			s, _ := openStore(t, Options{})
			s.pruneChunk = chunk
			var rs []ups.Reading
			for u := range units {
				serial := ups.Serial(fmt.Sprintf("%012d", u))
				for i := range old + recent {
					rs = append(rs, reading(serial, t0.Add(time.Duration(i)*time.Minute), kv{"ups.load", 1.0}))
				}
				rs = append(rs, ups.Reading{Serial: serial, Time: t0, Presence: ups.PresenceOnline})
			}
			write(t, s, rs...)
			deleted, err := s.Prune(context.Background(), t0.Add(old*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(units * (old + 1)); deleted != want {
				t.Errorf("deleted = %d, want %d", deleted, want)
			}
			var left int
			if err := s.r.QueryRow("SELECT count(*) FROM readings").Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left != units*recent {
				t.Errorf("readings left = %d, want %d", left, units*recent)
			}
		})
	}
}
