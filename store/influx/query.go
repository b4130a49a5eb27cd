package influx

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// aggregates are computed in one Flux script, one yield each; the result
// name tells them apart.
var aggregates = []string{"mean", "min", "max", "count"}

// Query aggregates the numeric fields of one unit over [q.From, q.To)
// with Flux's aggregateWindow, which runs on 1.8 (Flux 0.65) and 2.x, or,
// on 1.x with buckets of a minute or less or a range of an hour or less,
// from the raw points (rawEvery, rawSpan).
//
// Buckets are aligned to multiples of q.Every since the unix epoch, as in
// store/sqlite: Point.Time is the aligned start even when the first
// bucket begins before q.From. Fields without readings in the range are
// left out; series are sorted by field name, points by time.
func (s *Store) Query(ctx context.Context, q store.Query) (store.Series, error) {
	if err := q.Validate(); err != nil {
		return store.Series{}, err
	}
	start := time.Now()
	defer func() { s.m.QuerySeconds.Observe(time.Since(start).Seconds()) }()
	if s.v1 && (q.Every <= rawEvery || q.To.Sub(q.From) <= rawSpan) {
		return s.queryRaw(ctx, q)
	}
	return s.queryFlux(ctx, q)
}

// rawEvery: at or below this bucket width, Query on InfluxDB 1.x reads
// the points and aggregates them here. The Flux of 1.8 (0.65) runs
// aggregateWindow itself, a table per window: measured here, a unit's
// week of two fields at one-minute buckets took 9.3 s that way and 0.18 s
// to read raw. Units report every second at the most, so a bucket this
// narrow holds few points to read. InfluxDB 2.x pushes aggregateWindow
// down to its storage engine and keeps the Flux aggregates.
const rawEvery = time.Minute

// rawSpan: a range this short is read raw whatever its buckets (the
// report's lowest charge of an outage: one bucket over a few minutes,
// 50-170 ms through Flux).
const rawSpan = time.Hour

// bucketKey is a field's bucket, by its epoch-aligned start.
type bucketKey struct {
	field string
	t     int64
}

// align is the start of t's bucket of width every, aligned on the epoch.
func align(t, every int64) int64 { return t - ((t%every)+every)%every }

// filterFlux is the Flux source of q's numeric points: the unit's
// ups_reading fields but the status, [From, To) exactly, q.Fields only.
func (s *Store) filterFlux(b *strings.Builder, q store.Query) {
	b.WriteString("from(bucket: ")
	b.WriteString(fluxString(s.cfg.Bucket))
	fmt.Fprintf(b, ")\n  |> range(start: %s, stop: %s)\n", fluxTime(q.From), fluxTime(q.To))
	b.WriteString(`  |> filter(fn: (r) => r._measurement == "` + measReading + `" and r.serial == `)
	b.WriteString(fluxString(string(q.Serial)))
	b.WriteString(` and r._field != "` + fieldStatus + `")` + "\n")
	// InfluxDB 1.8's storage reads range's stop inclusively; the filter
	// makes [From, To) exact on every version.
	fmt.Fprintf(b, "  |> filter(fn: (r) => r._time < %s)\n", fluxTime(q.To))
	if len(q.Fields) > 0 {
		b.WriteString("  |> filter(fn: (r) => ")
		for i, f := range q.Fields {
			if i > 0 {
				b.WriteString(" or ")
			}
			b.WriteString("r._field == ")
			b.WriteString(fluxString(f))
		}
		b.WriteString(")\n")
	}
}

// queryRaw answers q from the raw points, aggregated here.
func (s *Store) queryRaw(ctx context.Context, q store.Query) (store.Series, error) {
	var b strings.Builder
	s.filterFlux(&b, q)
	b.WriteString(`  |> keep(columns: ["_time", "_field", "_value"])` + "\n")
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	res, err := s.query.Query(ctx, b.String())
	if err != nil {
		return store.Series{}, s.queryErr("query", err)
	}
	defer res.Close()
	type acc struct {
		p   store.Point
		sum float64
	}
	accs := map[bucketKey]*acc{}
	every := q.Every.Nanoseconds()
	for res.Next() {
		r := res.Record()
		v, ok := toFloat(r.Value())
		if !ok {
			continue
		}
		k := bucketKey{r.Field(), align(r.Time().UnixNano(), every)}
		a := accs[k]
		if a == nil {
			a = &acc{p: store.Point{Time: time.Unix(0, k.t).UTC(), Min: v, Max: v}}
			accs[k] = a
		}
		a.sum += v
		a.p.Count++
		a.p.Min, a.p.Max = min(a.p.Min, v), max(a.p.Max, v)
	}
	if err := res.Err(); err != nil {
		return store.Series{}, s.queryErr("query", err)
	}
	points := make(map[bucketKey]*store.Point, len(accs))
	for k, a := range accs {
		a.p.Mean = a.sum / float64(a.p.Count)
		points[k] = &a.p
	}
	return seriesOf(q, points), nil
}

// queryFlux answers q with Flux's aggregateWindow, one yield an
// aggregate.
func (s *Store) queryFlux(ctx context.Context, q store.Query) (store.Series, error) {
	var b strings.Builder
	b.WriteString("data = ")
	s.filterFlux(&b, q)
	every := strconv.FormatInt(q.Every.Nanoseconds(), 10) + "ns"
	for _, agg := range aggregates {
		fmt.Fprintf(&b, "data |> aggregateWindow(every: %s, fn: %s, createEmpty: false, timeSrc: \"_start\") |> yield(name: %q)\n", every, agg, agg)
	}

	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	res, err := s.query.Query(ctx, b.String())
	if err != nil {
		return store.Series{}, s.queryErr("query", err)
	}
	defer res.Close()

	points := map[bucketKey]*store.Point{}
	every64 := q.Every.Nanoseconds()
	for res.Next() {
		r := res.Record()
		v, ok := toFloat(r.Value())
		if !ok {
			continue
		}
		// Flux clips the first window's _start to the range start; the
		// bucket is the epoch-aligned one holding it.
		k := bucketKey{r.Field(), align(r.Time().UnixNano(), every64)}
		p := points[k]
		if p == nil {
			p = &store.Point{Time: time.Unix(0, k.t).UTC()}
			points[k] = p
		}
		switch r.Result() {
		case "mean":
			p.Mean = v
		case "min":
			p.Min = v
		case "max":
			p.Max = v
		case "count":
			p.Count = int(v)
		}
	}
	if err := res.Err(); err != nil {
		return store.Series{}, s.queryErr("query", err)
	}

	return seriesOf(q, points), nil
}

// seriesOf orders the buckets into q's series: fields by name, points by
// time.
func seriesOf(q store.Query, points map[bucketKey]*store.Point) store.Series {
	byField := map[string][]store.Point{}
	for k, p := range points {
		byField[k.field] = append(byField[k.field], *p)
	}
	series := store.Series{Serial: q.Serial, From: q.From, To: q.To, Every: q.Every, Fields: make([]store.FieldSeries, 0, len(byField))}
	for f, ps := range byField {
		slices.SortFunc(ps, func(a, b store.Point) int { return a.Time.Compare(b.Time) })
		series.Fields = append(series.Fields, store.FieldSeries{Field: f, Points: ps})
	}
	slices.SortFunc(series.Fields, func(a, b store.FieldSeries) int { return strings.Compare(a.Field, b.Field) })
	return series
}

// latestWindows are the look-back ranges Latest tries in turn: a unit
// that reports often is found in the first, cheap one; a silent unit
// costs a scan of its whole history only once the short ranges are empty.
var latestWindows = []time.Duration{time.Hour, 7 * 24 * time.Hour, 400 * 24 * time.Hour, 0}

// Latest returns the most recent telemetry reading of a unit: every
// numeric variable, the status and the text variables stored at that
// instant.
//
// Flux's last() gives each field's last value, which for a field the
// newest reading lacks is an older one; keeping only the values at the
// newest time of all rebuilds exactly the newest reading.
func (s *Store) Latest(ctx context.Context, serial ups.Serial) (ups.Reading, error) {
	if !ups.ValidSerial(string(serial)) {
		return ups.Reading{}, fmt.Errorf("influx store: latest: %w", store.ErrNotFound)
	}
	now := time.Now()
	// Devices with a fast clock write a little into the future.
	stop := now.Add(24 * time.Hour)
	for _, back := range latestWindows {
		from := minTime
		if back > 0 {
			from = now.Add(-back)
		}
		r, found, err := s.latestIn(ctx, serial, from, stop)
		if err != nil {
			return ups.Reading{}, err
		}
		if found {
			return r, nil
		}
	}
	// Nothing before tomorrow: look at the far future once, for units
	// whose clock is badly wrong.
	r, found, err := s.latestIn(ctx, serial, stop, maxTime)
	if err != nil {
		return ups.Reading{}, err
	}
	if !found {
		return ups.Reading{}, fmt.Errorf("influx store: latest %s: %w", serial, store.ErrNotFound)
	}
	return r, nil
}

func (s *Store) latestIn(ctx context.Context, serial ups.Serial, from, to time.Time) (ups.Reading, bool, error) {
	flux := "from(bucket: " + fluxString(s.cfg.Bucket) + ")\n" +
		"  |> range(start: " + fluxTime(from) + ", stop: " + fluxTime(to) + ")\n" +
		`  |> filter(fn: (r) => (r._measurement == "` + measReading + `" or r._measurement == "` + measText + `") and r.serial == ` + fluxString(string(serial)) + ")\n" +
		"  |> last()\n"
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	res, err := s.query.Query(ctx, flux)
	if err != nil {
		return ups.Reading{}, false, s.queryErr("latest", err)
	}
	defer res.Close()

	type value struct {
		meas, field string
		t           time.Time
		v           any
	}
	// The newest reading point and, apart, the newest text point: texts
	// are written only when they change (see WriteReadings), so the
	// unit's current texts are those of its last text point, often
	// older than its last reading.
	var vals []value
	var newest, newestText time.Time
	for res.Next() {
		r := res.Record()
		v := value{r.Measurement(), r.Field(), r.Time(), r.Value()}
		if v.meas == measText {
			if v.t.After(newestText) {
				newestText = v.t
			}
		} else if v.t.After(newest) {
			newest = v.t
		}
		vals = append(vals, v)
	}
	if newestText.After(newest) {
		newest = newestText // the newest reading had texts only
	}
	if err := res.Err(); err != nil {
		return ups.Reading{}, false, s.queryErr("latest", err)
	}
	if len(vals) == 0 {
		return ups.Reading{}, false, nil
	}
	// Stable output: metrics and texts by name.
	slices.SortFunc(vals, func(a, b value) int { return strings.Compare(a.field, b.field) })
	r := ups.Reading{Serial: serial, Time: newest.UTC()}
	for _, v := range vals {
		if v.meas == measText && (!v.t.Equal(newestText) || v.field == fieldNoTexts) {
			continue
		}
		if v.meas != measText && !v.t.Equal(newest) {
			continue
		}
		switch {
		case v.meas == measReading && v.field == fieldStatus:
			if str, ok := v.v.(string); ok {
				r.SetText("ups.status", str)
			}
		case v.meas == measReading:
			if f, ok := toFloat(v.v); ok {
				r.SetNum(v.field, f)
			}
		case v.meas == measText:
			if str, ok := v.v.(string); ok {
				r.SetText(v.field, str)
			}
		}
	}
	return r, true, nil
}

// queryErr classifies a query failure like a write failure: a server
// that cannot answer now is ErrUnavailable.
func (s *Store) queryErr(op string, err error) error {
	c := classify(err)
	switch c.kind {
	case kindUnavailable:
		return fmt.Errorf("influx store: %s: %w: %w", op, store.ErrUnavailable, err)
	case kindConfig:
		s.log.Error("influx refused the query: check url, token, org and bucket", "status", c.status, "error", c.message, "bucket", s.cfg.Bucket)
	}
	return fmt.Errorf("influx store: %s: %w", op, err)
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

// fluxString quotes s as a Flux string literal. "${" would start an
// interpolation; "\$" escapes it (Flux 0.65 and later).
func fluxString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// fluxTime is a Flux time literal.
func fluxTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}
