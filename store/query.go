package store

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// MinTime and MaxTime bound the times a backend stores and a Query may
// ask for: the instants a unix nanosecond count can hold (InfluxDB's
// range), with a nanosecond of margin at each end.
var (
	MinTime = time.Unix(0, math.MinInt64+2).UTC()
	MaxTime = time.Unix(0, math.MaxInt64-1).UTC()
)

// Validate reports, wrapping ErrBadQuery with the reason, why no backend
// can answer q: a serial that is not 12 or 16 digits, To not after From, a
// range outside MinTime..MaxTime, an Every that is not a positive whole
// number of milliseconds (the resolution of stored times), a field name
// that is empty or holds a line break or a backslash, or more than
// MaxBuckets buckets. Every backend calls it first, so one request gets
// one answer whichever store is configured.
func (q Query) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadQuery, fmt.Sprintf(format, args...))
	}
	switch {
	case !ups.ValidSerial(string(q.Serial)):
		return bad("serial %q is not 12 or 16 digits", q.Serial)
	case !q.To.After(q.From):
		return bad("to (%s) must be after from (%s)", q.To.Format(time.RFC3339Nano), q.From.Format(time.RFC3339Nano))
	case q.Every <= 0:
		return bad("every (%s) must be positive", q.Every)
	case q.Every%time.Millisecond != 0:
		return bad("every (%s) must be a whole number of milliseconds", q.Every)
	case q.From.Before(MinTime) || q.To.After(MaxTime):
		return bad("range must lie within %s and %s", MinTime.Format(time.RFC3339), MaxTime.Format(time.RFC3339))
	}
	for _, f := range q.Fields {
		if f == "" || strings.ContainsAny(f, "\n\r\\") {
			return bad("invalid field name %q", truncate(f, 40))
		}
	}
	if _, _, _, n := q.Millis(); n > MaxBuckets {
		return bad("range %s at every %s spans %d buckets, more than %d", q.To.Sub(q.From), q.Every, n, MaxBuckets)
	}
	return nil
}

// Millis is a validated query in unix milliseconds: the stored times ts
// (whole milliseconds) in [q.From, q.To) are exactly those with
// from <= ts < to; every is q.Every and buckets the number of buckets,
// aligned to multiples of every since the epoch, that [from, to) touches.
// Counted before anything multiplies, so an absurd range cannot overflow.
func (q Query) Millis() (from, to, every, buckets int64) {
	from, to, every = CeilMilli(q.From), CeilMilli(q.To), q.Every.Milliseconds()
	if every <= 0 {
		return from, to, every, 0
	}
	return from, to, every, floorDiv(to-1, every) - floorDiv(from, every) + 1
}

// CeilMilli is t in unix milliseconds, rounded up: a stored ts (a whole
// millisecond) is >= t exactly when it is >= CeilMilli(t).
func CeilMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}

// floorDiv is a/b rounded towards minus infinity (b > 0): the index of the
// bucket of width b that holds a.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
