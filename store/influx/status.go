package influx

import (
	"context"
	"strings"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

var _ store.StatusHistory = (*Store)(nil)

// StatusChanges implements store.StatusHistory: ups.status (a field of
// ups_reading) and the texts asked (fields of ups_text, same timestamp)
// pivoted into one row per reading, in time order; store.Changes keeps
// the changes.
func (s *Store) StatusChanges(ctx context.Context, serial ups.Serial, from, to time.Time, texts ...string) ([]store.StatusChange, error) {
	var b strings.Builder
	b.WriteString("from(bucket: " + fluxString(s.cfg.Bucket) + ")\n")
	b.WriteString("  |> range(start: " + fluxTime(from) + ", stop: " + fluxTime(to) + ")\n")
	b.WriteString("  |> filter(fn: (r) => r.serial == " + fluxString(string(serial)) +
		` and ((r._measurement == "` + measReading + `" and r._field == "` + fieldStatus + `")`)
	if len(texts) > 0 {
		b.WriteString(` or (r._measurement == "` + measText + `" and (`)
		for i, t := range texts {
			if i > 0 {
				b.WriteString(" or ")
			}
			b.WriteString("r._field == " + fluxString(t))
		}
		b.WriteString("))")
	}
	b.WriteString("))\n")
	// As in Query: 1.8 reads range's stop inclusively.
	b.WriteString("  |> filter(fn: (r) => r._time < " + fluxTime(to) + ")\n")
	b.WriteString(`  |> keep(columns: ["_time", "_field", "_value", "_measurement"])` + "\n")
	// A text named like the status field stays apart from it.
	b.WriteString(`  |> map(fn: (r) => ({_time: r._time, _value: r._value, _field: if r._measurement == "` + measReading + `" then "` + fieldStatus + `" else "t." + r._field}))` + "\n")
	b.WriteString("  |> group()\n")
	b.WriteString(`  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")` + "\n")
	b.WriteString(`  |> sort(columns: ["_time"])` + "\n")

	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	res, err := s.query.Query(ctx, b.String())
	if err != nil {
		return nil, s.queryErr("status changes", err)
	}
	defer res.Close()
	ch := store.NewChanges(texts)
	var lastStatus string
	var flags ups.Flag
	for res.Next() {
		rec := res.Record()
		status, hasStatus := rec.ValueByKey(fieldStatus).(string)
		if hasStatus && status != lastStatus {
			// Parsed on change only: most readings repeat the last.
			lastStatus, flags = status, ups.ParseStatus(status).Flags
		}
		ch.Add(rec.Time(), flags, hasStatus, func(i int) (string, bool) {
			v, ok := rec.ValueByKey("t." + texts[i]).(string)
			return v, ok
		})
	}
	if err := res.Err(); err != nil {
		return nil, s.queryErr("status changes", err)
	}
	return ch.Result(), nil
}
