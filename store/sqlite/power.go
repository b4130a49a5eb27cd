package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

var _ store.PowerHistory = (*Store)(nil)

// OnBattery implements store.PowerHistory from the flags column: one pass
// along the primary key over the range.
func (s *Store) OnBattery(ctx context.Context, serial ups.Serial, from, to time.Time) ([]store.Span, error) {
	rows, err := s.r.QueryContext(ctx,
		`SELECT ts, flags FROM readings WHERE serial = ? AND ts >= ? AND ts < ? AND flags IS NOT NULL ORDER BY ts`,
		string(serial), from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("sqlite store: on battery of %s: %w", serial, err)
	}
	defer rows.Close()
	var out []store.Span
	var cur *store.Span
	for rows.Next() {
		var ts, flags int64
		if err := rows.Scan(&ts, &flags); err != nil {
			return nil, fmt.Errorf("sqlite store: on battery of %s: %w", serial, err)
		}
		f := ups.Flag(flags)
		ob := f&ups.OB != 0 && f&(ups.CAL|ups.TEST) == 0
		switch {
		case ob && cur == nil:
			cur = &store.Span{Start: time.UnixMilli(ts).UTC()}
		case !ob && cur != nil:
			cur.End = time.UnixMilli(ts).UTC()
			out = append(out, *cur)
			cur = nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: on battery of %s: %w", serial, err)
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out, nil
}
