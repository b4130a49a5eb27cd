package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

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
	if err := q.Validate(); err != nil {
		return store.Series{}, err
	}
	from, to, every, buckets := q.Millis()
	start := time.Now()
	defer func() { s.m.QuerySeconds.Observe(time.Since(start).Seconds()) }()

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

	fields, err := s.aggregate(ctx, q.Serial, from, to, every, buckets, cols, extras, all)
	if err != nil {
		return store.Series{}, err
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

// The aggregation runs in Go over one ordered range scan of the unit's
// primary key, not as SQL aggregates: GROUP BY on a computed bucket made
// SQLite sort the rows and evaluate four aggregate functions per column
// per row, and json_each re-parsed the extra column once per row for the
// keys; BenchmarkQueryDay measured the Go pass several times faster for a
// day at 10 s on the dev box. The rows arrive in ts order, so each field
// closes a bucket as soon as the next one starts, in constant memory per
// field.

// fieldAgg accumulates one field's points.
type fieldAgg struct {
	name    string
	capHint int
	points  []store.Point
	bucket  int64 // start of the open bucket, valid when n > 0
	sum     float64
	min     float64
	max     float64
	n       int
}

func (f *fieldAgg) add(bucket int64, v float64) {
	if f.n > 0 && bucket != f.bucket {
		f.flush()
	}
	if f.n == 0 {
		f.bucket, f.sum, f.min, f.max = bucket, 0, v, v
	}
	f.sum += v
	f.min = min(f.min, v)
	f.max = max(f.max, v)
	f.n++
}

func (f *fieldAgg) flush() {
	if f.n == 0 {
		return
	}
	if f.points == nil {
		f.points = make([]store.Point, 0, f.capHint)
	}
	f.points = append(f.points, store.Point{
		Time:  time.UnixMilli(f.bucket).UTC(),
		Mean:  f.sum / float64(f.n),
		Min:   f.min,
		Max:   f.max,
		Count: f.n,
	})
	f.n = 0
}

// aggregate scans the unit's readings in [from, to) and aggregates the
// given columns and the named extra fields (every extra field when all).
func (s *Store) aggregate(ctx context.Context, serial ups.Serial, from, to, every, buckets int64, cols []int, extras []string, all bool) ([]store.FieldSeries, error) {
	// A field has at most min(buckets, rows) points: sizing its slice at
	// its first point saves the regrowth that was a quarter of the cost
	// of a day at 10 s. Counting along the key costs little next to the
	// scan that follows; it is a hint, so it need not share its snapshot.
	var nrows int64
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM readings WHERE serial = ? AND ts >= ? AND ts < ?",
		string(serial), from, to).Scan(&nrows); err != nil {
		return nil, fmt.Errorf("sqlite store: query %s: count: %w", serial, err)
	}
	if nrows == 0 {
		return nil, nil
	}
	capHint := int(min(buckets, nrows))

	wantExtra := all || len(extras) > 0
	var b strings.Builder
	b.WriteString("SELECT ts")
	for _, i := range cols {
		b.WriteString(", " + columnName(i))
	}
	if wantExtra {
		b.WriteString(", extra")
	}
	b.WriteString(" FROM readings WHERE serial = ? AND ts >= ? AND ts < ? ORDER BY ts")
	rows, err := s.r.QueryContext(ctx, b.String(), string(serial), from, to)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: query %s: %w", serial, err)
	}
	defer rows.Close()

	colAggs := make([]fieldAgg, len(cols))
	for k, i := range cols {
		colAggs[k] = fieldAgg{name: columns[i], capHint: capHint}
	}
	extraAggs := make(map[string]*fieldAgg, len(extras))
	for _, name := range extras {
		extraAggs[name] = &fieldAgg{name: name, capHint: capHint}
	}

	// Scanning into *any hands over the driver's value without
	// database/sql's conversions: float64 or nil for a REAL column,
	// string or nil for extra.
	var ts int64
	vals := make([]any, len(cols)+1)
	dest := make([]any, 0, 2+len(cols))
	dest = append(dest, &ts)
	for k := range vals {
		dest = append(dest, &vals[k])
	}
	if !wantExtra {
		dest = dest[:len(dest)-1]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("sqlite store: query %s: scan: %w", serial, err)
		}
		bucket := ts - floorMod(ts, every)
		for k := range cols {
			switch v := vals[k].(type) {
			case nil:
			case float64:
				colAggs[k].add(bucket, v)
			case int64: // REAL affinity stores numbers as REAL; tolerate hand edits
				colAggs[k].add(bucket, float64(v))
			default:
				return nil, fmt.Errorf("sqlite store: query %s: column %s holds %T", serial, columns[cols[k]], v)
			}
		}
		if !wantExtra || vals[len(cols)] == nil {
			continue
		}
		obj, ok := vals[len(cols)].(string)
		if !ok {
			return nil, fmt.Errorf("sqlite store: query %s: extra holds %T", serial, vals[len(cols)])
		}
		err := eachNumber(obj, func(name string, v float64) {
			f := extraAggs[name]
			if f == nil {
				if !all {
					return
				}
				f = &fieldAgg{name: strings.Clone(name), capHint: capHint} // name may point into obj
				extraAggs[f.name] = f
			}
			f.add(bucket, v)
		})
		if err != nil {
			return nil, fmt.Errorf("sqlite store: query %s: extra at %d: %w", serial, ts, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: query %s: %w", serial, err)
	}

	var out []store.FieldSeries
	collect := func(f *fieldAgg) {
		f.flush()
		if len(f.points) > 0 {
			out = append(out, store.FieldSeries{Field: f.name, Points: f.points})
		}
	}
	for k := range colAggs {
		collect(&colAggs[k])
	}
	for _, f := range extraAggs {
		collect(f)
	}
	return out, nil
}

// floorMod is a mod m in [0, m), also for times before 1970.
func floorMod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}

// eachNumber calls fn for each member of the extra column's flat JSON
// object, as encoder writes it: string keys, number values. It avoids
// encoding/json, which for a day of readings cost more than the scan; a
// key with escapes (never a NUT name, but possible) is unquoted by
// encoding/json. The key passed to fn may alias s.
func eachNumber(s string, fn func(name string, v float64)) error {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return errors.New("not a JSON object")
	}
	i := 1
	if s[i] == '}' {
		return nil
	}
	for {
		// Key.
		if s[i] != '"' {
			return fmt.Errorf("expected a key at offset %d", i)
		}
		end, escaped := i+1, false
		for end < len(s) && s[end] != '"' {
			if s[end] == '\\' {
				escaped = true
				end++
			}
			end++
		}
		if end >= len(s) {
			return errors.New("unterminated key")
		}
		key := s[i+1 : end]
		if escaped {
			if err := json.Unmarshal([]byte(s[i:end+1]), &key); err != nil {
				return fmt.Errorf("key at offset %d: %w", i, err)
			}
		}
		i = end + 1
		if i >= len(s) || s[i] != ':' {
			return fmt.Errorf("expected ':' at offset %d", i)
		}
		i++
		// Number, up to the next ',' or the closing '}'.
		end = i
		for end < len(s) && s[end] != ',' && s[end] != '}' {
			end++
		}
		v, err := strconv.ParseFloat(s[i:end], 64)
		if err != nil {
			return fmt.Errorf("value of %q: %w", key, err)
		}
		fn(key, v)
		if end >= len(s)-1 {
			return nil
		}
		i = end + 1
	}
}
