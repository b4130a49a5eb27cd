package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// benchReading is a realistic telemetry reading: ups.status, 17 known
// variables, two others and two texts, about what a Smart-UPS reports.
func benchReading(serial ups.Serial, at time.Time, i int) ups.Reading {
	f := float64(i % 100)
	r := ups.Reading{Serial: serial, Time: at}
	r.SetText("ups.status", "OL CHRG")
	for _, v := range []struct {
		name  string
		value float64
	}{
		{"battery.charge", 90 + f/10}, {"battery.charge.low", 10}, {"battery.runtime", 1800 + f},
		{"battery.runtime.low", 120}, {"battery.voltage", 27.1 + f/100}, {"battery.voltage.nominal", 24},
		{"battery.temperature", 29.5}, {"input.voltage", 228 + f/10}, {"input.voltage.nominal", 230},
		{"input.transfer.low", 170}, {"input.transfer.high", 280}, {"input.frequency", 50 + f/1000},
		{"output.voltage", 230}, {"output.frequency", 50}, {"ups.load", 35 + f/5},
		{"ups.temperature", 31}, {"ups.realpower", 410 + f},
		{"output.current", 1.8 + f/100}, {"input.current", 2.1},
	} {
		r.SetNum(v.name, v.value)
	}
	r.SetText("device.model", "Smart-UPS 1500")
	r.SetText("ups.test.result", "Done and passed")
	return r
}

func benchSerial(u int) ups.Serial { return ups.Serial(fmt.Sprintf("%012d", 100000000000+u)) }

// BenchmarkWriteReadings writes 500-reading batches spread over 200
// units, or 2,000-reading batches over 10,000 (each reading then lands on
// a page of its own: a fleet's worth of units), each reading a new
// (serial, ts), as the history consumer does.
func BenchmarkWriteReadings(b *testing.B) {
	for _, c := range []struct{ batch, units int }{{500, 200}, {2000, 10000}} {
		b.Run(fmt.Sprintf("units=%d", c.units), func(b *testing.B) {
			s, _ := openStore(b, Options{})
			ctx := context.Background()
			rs := make([]ups.Reading, c.batch)
			for i := range rs {
				rs[i] = benchReading(benchSerial(i%c.units), t0, i)
			}
			n := 0
			for b.Loop() {
				for i := range rs {
					rs[i].Serial = benchSerial(n % c.units)
					rs[i].Time = t0.Add(time.Duration(n/c.units) * 10 * time.Second)
					n++
				}
				if err := s.WriteReadings(ctx, rs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

// dayOfReadings writes a day of readings at 10 s for the given units.
func dayOfReadings(b *testing.B, s *Store, units int) {
	b.Helper()
	ctx := context.Background()
	const perDay = 24 * 60 * 6
	rs := make([]ups.Reading, 0, 500)
	for i := range perDay {
		for u := range units {
			rs = append(rs, benchReading(benchSerial(u), t0.Add(time.Duration(i)*10*time.Second), i))
			if len(rs) == cap(rs) {
				if err := s.WriteReadings(ctx, rs); err != nil {
					b.Fatal(err)
				}
				rs = rs[:0]
			}
		}
	}
	if err := s.WriteReadings(ctx, rs); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkQueryDay aggregates all fields of one unit over a day of
// readings at 10 s (8640 readings, 19 numeric fields), among 4 units.
func BenchmarkQueryDay(b *testing.B) {
	s, _ := openStore(b, Options{})
	dayOfReadings(b, s, 4)
	for _, every := range []time.Duration{10 * time.Second, 5 * time.Minute} {
		b.Run("every="+every.String(), func(b *testing.B) {
			q := store.Query{Serial: benchSerial(0), From: t0, To: t0.Add(24 * time.Hour), Every: every}
			for b.Loop() {
				got, err := s.Query(context.Background(), q)
				if err != nil {
					b.Fatal(err)
				}
				if len(got.Fields) != 19 {
					b.Fatalf("fields = %d, want 19", len(got.Fields))
				}
			}
		})
	}
}

// BenchmarkQueryDayJSON is the road not taken, kept as the measurement
// behind the schema: the same day held as one JSON object per reading and
// aggregated with json_each, as a schema without variable columns would.
func BenchmarkQueryDayJSON(b *testing.B) {
	s, _ := openStore(b, Options{})
	dayOfReadings(b, s, 4)
	ctx := context.Background()
	// Build the JSON-only copy inside SQLite from the wide rows.
	var obj string
	for i := range columns {
		if i > 0 {
			obj += ", "
		}
		obj += fmt.Sprintf("'%s', %s", columns[i], columnName(i))
	}
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE readings_json (serial TEXT, ts INTEGER, metrics TEXT,
		PRIMARY KEY (serial, ts)) WITHOUT ROWID`); err != nil {
		b.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO readings_json SELECT serial, ts,
		json_patch(json_remove(json_object(`+obj+`), '$.ambient.temperature'), coalesce(extra, '{}')) FROM readings`); err != nil {
		b.Fatal(err)
	}
	const query = `SELECT j.key, (ts - ts % ?4) AS b, count(j.value), avg(j.value), min(j.value), max(j.value)
		FROM readings_json, json_each(readings_json.metrics) AS j
		WHERE serial = ?1 AND ts >= ?2 AND ts < ?3 AND j.type IN ('integer', 'real')
		GROUP BY j.key, b ORDER BY j.key, b`
	for _, every := range []time.Duration{10 * time.Second, 5 * time.Minute} {
		b.Run("every="+every.String(), func(b *testing.B) {
			for b.Loop() {
				rows, err := s.r.QueryContext(ctx, query, string(benchSerial(0)), t0.UnixMilli(), t0.Add(24*time.Hour).UnixMilli(), every.Milliseconds())
				if err != nil {
					b.Fatal(err)
				}
				keys := map[string]bool{}
				for rows.Next() {
					var key string
					var bucket, n int64
					var mean, lo, hi float64
					if err := rows.Scan(&key, &bucket, &n, &mean, &lo, &hi); err != nil {
						b.Fatal(err)
					}
					keys[key] = true
				}
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
				rows.Close()
				if len(keys) != 19 {
					b.Fatalf("fields = %d, want 19", len(keys))
				}
			}
		})
	}
}
