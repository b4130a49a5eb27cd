package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Both backends answer a query only after Validate: the table is the one
// answer every store gives.
func TestQueryValidate(t *testing.T) {
	const unit = "123456789012"
	t0 := time.Date(2025, 11, 24, 16, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		q    Query
		want string // "" = valid
	}{
		{"valid", Query{Serial: unit, From: t0, To: t0.Add(time.Hour), Every: time.Minute, Fields: []string{"ups.load"}}, ""},
		{"exactly the limit", Query{Serial: unit, From: t0, To: t0.Add(MaxBuckets * time.Second), Every: time.Second}, ""},
		{"the limit, unaligned", Query{Serial: unit, From: t0.Add(time.Millisecond), To: t0.Add(MaxBuckets * time.Second), Every: time.Second}, ""},
		{"bad serial", Query{Serial: "12ab", From: t0, To: t0.Add(time.Hour), Every: time.Minute}, `serial "12ab" is not 12 or 16 digits`},
		{"to before from", Query{Serial: unit, From: t0, To: t0.Add(-time.Second), Every: time.Minute}, "must be after from"},
		{"to equals from", Query{Serial: unit, From: t0, To: t0, Every: time.Minute}, "must be after from"},
		{"zero every", Query{Serial: unit, From: t0, To: t0.Add(time.Hour)}, "every (0s) must be positive"},
		{"negative every", Query{Serial: unit, From: t0, To: t0.Add(time.Hour), Every: -time.Minute}, "must be positive"},
		{"sub-millisecond every", Query{Serial: unit, From: t0, To: t0.Add(time.Hour), Every: 1500 * time.Microsecond}, "whole number of milliseconds"},
		{"too many buckets", Query{Serial: unit, From: t0, To: t0.Add(24 * time.Hour), Every: time.Second}, "spans 86400 buckets, more than 20000"},
		{"one bucket over", Query{Serial: unit, From: t0.Add(time.Millisecond), To: t0.Add(time.Millisecond + MaxBuckets*time.Second), Every: time.Second}, "spans 20001 buckets"},
		{"empty field", Query{Serial: unit, From: t0, To: t0.Add(time.Hour), Every: time.Minute, Fields: []string{"ups.load", ""}}, `invalid field name ""`},
		{"field with a line break", Query{Serial: unit, From: t0, To: t0.Add(time.Hour), Every: time.Minute, Fields: []string{"a\nb"}}, `invalid field name "a\nb"`},
		{"field with a backslash", Query{Serial: unit, From: t0, To: t0.Add(time.Hour), Every: time.Minute, Fields: []string{`a\`}}, `invalid field name "a\\"`},
		{"before MinTime", Query{Serial: unit, From: MinTime.Add(-time.Second), To: t0, Every: time.Hour}, "range must lie within"},
		{"after MaxTime", Query{Serial: unit, From: t0, To: MaxTime.Add(time.Second), Every: time.Hour}, "range must lie within"},
		{"huge range", Query{Serial: unit, From: MinTime, To: MaxTime, Every: time.Millisecond}, "more than 20000"},
		{"beyond any store", Query{Serial: unit, From: time.Unix(-1<<40, 0), To: time.Unix(1<<40, 0), Every: time.Millisecond}, "range must lie within"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.q.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrBadQuery) {
				t.Fatalf("error = %v, want ErrBadQuery", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestQueryMillis(t *testing.T) {
	t0 := time.UnixMilli(1_000_000)
	for _, tt := range []struct {
		from, to                time.Time
		every                   time.Duration
		wantFrom, wantTo, wantN int64
	}{
		{t0, t0.Add(10 * time.Second), time.Second, 1_000_000, 1_010_000, 10},
		// Sub-millisecond bounds round up: no stored time lies between.
		{t0.Add(-time.Microsecond), t0.Add(time.Second + time.Microsecond), time.Second, 1_000_000, 1_001_001, 2},
		{time.UnixMilli(-1500), time.UnixMilli(500), time.Second, -1500, 500, 3},
	} {
		from, to, every, n := Query{From: tt.from, To: tt.to, Every: tt.every}.Millis()
		if from != tt.wantFrom || to != tt.wantTo || every != tt.every.Milliseconds() || n != tt.wantN {
			t.Errorf("Millis(%v, %v, %v) = %d, %d, %d, %d; want %d, %d, %d, %d", tt.from, tt.to, tt.every,
				from, to, every, n, tt.wantFrom, tt.wantTo, tt.every.Milliseconds(), tt.wantN)
		}
	}
}
