package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// MaxBuckets bounds the buckets one Query may span, so a careless range
// (a year at 1 s) is refused instead of building a huge answer.
const MaxBuckets = 10_000

// Query aggregates the numeric fields of one unit over [q.From, q.To).
//
// Buckets are aligned to multiples of q.Every since the unix epoch (UTC),
// not to q.From: the bucket of a reading at t starts at
// t - (t mod Every), so the same reading falls in the same bucket whatever
// range is asked for, and buckets of a day or an hour start at midnight or
// on the hour UTC. The first and last buckets may therefore extend beyond
// the range; they aggregate only the readings inside it. Every must be a
// whole number of milliseconds, the resolution of stored times.
//
// With q.Fields empty the answer holds every numeric field the unit
// reported in the range; a requested field without readings in the range
// is left out, as empty buckets are. Series are sorted by field name,
// points by time.
func (s *Store) Query(ctx context.Context, q store.Query) (store.Series, error) {
	from, to, every, err := validate(q)
	if err != nil {
		return store.Series{}, err
	}
	start := time.Now()
	defer func() { s.m.querySeconds.Observe(time.Since(start).Seconds()) }()

	// Split the requested fields between the columns and the JSON column.
	var cols []int
	var extras []string
	all := len(q.Fields) == 0
	if all {
		cols = make([]int, len(columns))
		for i := range cols {
			cols[i] = i
		}
	} else {
		for _, f := range q.Fields {
			if i, ok := columnIndex[f]; ok {
				if !slices.Contains(cols, i) {
					cols = append(cols, i)
				}
			} else if !slices.Contains(extras, f) {
				extras = append(extras, f)
			}
		}
	}

	// One read transaction, so both statements see the same snapshot.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.Series{}, fmt.Errorf("sqlite store: begin query: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	var fields []store.FieldSeries
	if len(cols) > 0 {
		fs, err := queryColumns(ctx, tx, q.Serial, from, to, every, cols)
		if err != nil {
			return store.Series{}, err
		}
		fields = append(fields, fs...)
	}
	if all || len(extras) > 0 {
		fs, err := queryExtras(ctx, tx, q.Serial, from, to, every, extras)
		if err != nil {
			return store.Series{}, err
		}
		fields = append(fields, fs...)
	}
	slices.SortFunc(fields, func(a, b store.FieldSeries) int { return strings.Compare(a.Field, b.Field) })
	return store.Series{
		Serial: q.Serial,
		From:   q.From,
		To:     q.To,
		Every:  q.Every,
		Fields: fields,
	}, nil
}

// validate checks q and returns its bounds in unix milliseconds: the
// stored ts satisfy from <= ts < to exactly when their times lie in
// [q.From, q.To).
func validate(q store.Query) (from, to, every int64, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", store.ErrBadQuery, fmt.Sprintf(format, args...))
	}
	switch {
	case !ups.ValidSerial(string(q.Serial)):
		return 0, 0, 0, bad("serial %q is not 12 or 16 digits", q.Serial)
	case !q.To.After(q.From):
		return 0, 0, 0, bad("to (%s) must be after from (%s)", q.To.Format(time.RFC3339Nano), q.From.Format(time.RFC3339Nano))
	case q.Every <= 0:
		return 0, 0, 0, bad("every (%s) must be positive", q.Every)
	case q.Every%time.Millisecond != 0:
		return 0, 0, 0, bad("every (%s) must be a whole number of milliseconds", q.Every)
	}
	for _, f := range q.Fields {
		if f == "" {
			return 0, 0, 0, bad("empty field name")
		}
	}
	from, to, every = ceilMilli(q.From), ceilMilli(q.To), q.Every.Milliseconds()
	// Buckets touched by [from, to): from the one holding from to the one
	// holding to-1. Computed before anything multiplies, so an absurd
	// range cannot overflow.
	if n := floorDiv(to-1, every) - floorDiv(from, every) + 1; n > MaxBuckets {
		return 0, 0, 0, bad("range %s at every %s spans %d buckets, more than %d", q.To.Sub(q.From), q.Every, n, MaxBuckets)
	}
	return from, to, every, nil
}

// ceilMilli is t in unix milliseconds, rounded up: a stored ts (a whole
// millisecond) is >= t exactly when it is >= ceilMilli(t).
func ceilMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// bucketExpr is the start of the bucket holding ts, ?4 being Every in ms.
// SQLite's % truncates towards zero like C's, so the double modulo keeps
// times before 1970 in the right bucket.
const bucketExpr = "(ts - ((ts % ?4) + ?4) % ?4)"

// queryColumns aggregates the given variable columns in one scan of the
// unit's key range.
func queryColumns(ctx context.Context, tx *sql.Tx, serial ups.Serial, from, to, every int64, cols []int) ([]store.FieldSeries, error) {
	var b strings.Builder
	b.WriteString("SELECT " + bucketExpr + " AS b")
	for _, i := range cols {
		c := columnName(i)
		fmt.Fprintf(&b, ", count(%[1]s), avg(%[1]s), min(%[1]s), max(%[1]s)", c)
	}
	b.WriteString(" FROM readings WHERE serial = ?1 AND ts >= ?2 AND ts < ?3 GROUP BY b ORDER BY b")
	rows, err := tx.QueryContext(ctx, b.String(), string(serial), from, to, every)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: query columns: %w", err)
	}
	defer rows.Close()

	series := make([]store.FieldSeries, len(cols))
	for k, i := range cols {
		series[k].Field = columns[i]
	}
	type agg struct {
		count         int64
		avg, min, max sql.NullFloat64
	}
	aggs := make([]agg, len(cols))
	dest := make([]any, 1+4*len(cols))
	var bucket int64
	dest[0] = &bucket
	for k := range aggs {
		dest[1+4*k] = &aggs[k].count
		dest[2+4*k] = &aggs[k].avg
		dest[3+4*k] = &aggs[k].min
		dest[4+4*k] = &aggs[k].max
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("sqlite store: scan columns: %w", err)
		}
		t := time.UnixMilli(bucket).UTC()
		for k, a := range aggs {
			if a.count == 0 {
				continue // the column was NULL in every row of the bucket
			}
			series[k].Points = append(series[k].Points, store.Point{
				Time: t, Mean: a.avg.Float64, Min: a.min.Float64, Max: a.max.Float64, Count: int(a.count),
			})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: read columns: %w", err)
	}
	return slices.DeleteFunc(series, func(f store.FieldSeries) bool { return len(f.Points) == 0 }), nil
}

// queryExtras aggregates the numeric variables held in the JSON column:
// all of them when names is empty.
func queryExtras(ctx context.Context, tx *sql.Tx, serial ups.Serial, from, to, every int64, names []string) ([]store.FieldSeries, error) {
	var b strings.Builder
	b.WriteString("SELECT j.key, " + bucketExpr + " AS b, count(j.value), avg(j.value), min(j.value), max(j.value)" +
		" FROM readings, json_each(readings.extra) AS j" +
		" WHERE serial = ?1 AND ts >= ?2 AND ts < ?3 AND extra IS NOT NULL AND j.type IN ('integer', 'real')")
	args := []any{string(serial), from, to, every}
	if len(names) > 0 {
		b.WriteString(" AND j.key IN (")
		for k, n := range names {
			if k > 0 {
				b.WriteString(", ")
			}
			args = append(args, n)
			fmt.Fprintf(&b, "?%d", len(args))
		}
		b.WriteString(")")
	}
	b.WriteString(" GROUP BY j.key, b ORDER BY j.key, b")
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: query extra fields: %w", err)
	}
	defer rows.Close()

	var series []store.FieldSeries
	for rows.Next() {
		var (
			key    string
			bucket int64
			p      store.Point
		)
		if err := rows.Scan(&key, &bucket, &p.Count, &p.Mean, &p.Min, &p.Max); err != nil {
			return nil, fmt.Errorf("sqlite store: scan extra fields: %w", err)
		}
		p.Time = time.UnixMilli(bucket).UTC()
		if n := len(series); n == 0 || series[n-1].Field != key {
			series = append(series, store.FieldSeries{Field: key})
		}
		f := &series[len(series)-1]
		f.Points = append(f.Points, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: read extra fields: %w", err)
	}
	return series, nil
}

// selectLatest reads the newest telemetry row of a unit: a backward step
// along the primary key.
var selectLatest = func() string {
	var b strings.Builder
	b.WriteString("SELECT ts, status")
	for i := range columns {
		b.WriteString(", " + columnName(i))
	}
	b.WriteString(", extra, texts FROM readings WHERE serial = ? ORDER BY ts DESC LIMIT 1")
	return b.String()
}()

// Latest returns the newest telemetry reading of a unit (presence changes
// are not readings of it), or store.ErrNotFound. Its Metrics hold the
// known variables in the order of package ups, then the others in the
// order they arrived.
func (s *Store) Latest(ctx context.Context, serial ups.Serial) (ups.Reading, error) {
	var (
		ts     int64
		status sql.NullString
		vars   [len(columns)]sql.NullFloat64
		extra  sql.NullString
		texts  sql.NullString
	)
	dest := make([]any, 0, 2+len(columns)+2)
	dest = append(dest, &ts, &status)
	for i := range vars {
		dest = append(dest, &vars[i])
	}
	dest = append(dest, &extra, &texts)
	err := s.r.QueryRowContext(ctx, selectLatest, string(serial)).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return ups.Reading{}, fmt.Errorf("sqlite store: latest of %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return ups.Reading{}, fmt.Errorf("sqlite store: latest of %s: %w", serial, err)
	}

	r := ups.Reading{Serial: serial, Time: time.UnixMilli(ts).UTC()}
	if status.Valid {
		r.SetText("ups.status", status.String)
	}
	for i, v := range vars {
		if v.Valid {
			r.SetNum(columns[i], v.Float64)
		}
	}
	if extra.Valid {
		err := decodeObject(extra.String, func(name string, v any) error {
			f, ok := v.(float64)
			if !ok {
				return fmt.Errorf("value of %q is %T, not a number", name, v)
			}
			r.SetNum(name, f)
			return nil
		})
		if err != nil {
			return ups.Reading{}, fmt.Errorf("sqlite store: latest of %s: decode extra: %w", serial, err)
		}
	}
	if texts.Valid {
		err := decodeObject(texts.String, func(name string, v any) error {
			t, ok := v.(string)
			if !ok {
				return fmt.Errorf("value of %q is %T, not a string", name, v)
			}
			r.SetText(name, t)
			return nil
		})
		if err != nil {
			return ups.Reading{}, fmt.Errorf("sqlite store: latest of %s: decode texts: %w", serial, err)
		}
	}
	return r, nil
}

// decodeObject calls fn for each member of the flat JSON object s, in the
// order written (a map would lose it).
func decodeObject(s string, fn func(name string, v any) error) error {
	dec := json.NewDecoder(strings.NewReader(s))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object (%v)", err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, ok := tok.(string)
		if !ok {
			return fmt.Errorf("unexpected %v", tok)
		}
		v, err := dec.Token()
		if err != nil {
			return err
		}
		if err := fn(name, v); err != nil {
			return err
		}
	}
	return nil
}
