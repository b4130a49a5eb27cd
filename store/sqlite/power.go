package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

var _ store.PowerHistory = (*Store)(nil)

// OnBattery implements store.PowerHistory from the status changes (one
// pass along the primary key over the range).
func (s *Store) OnBattery(ctx context.Context, serial ups.Serial, from, to time.Time) ([]store.Span, error) {
	spans, err := store.OnBatteryOf(ctx, s, serial, from, to)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	return spans, nil
}

var _ store.StatusHistory = (*Store)(nil)

// StatusChanges implements store.StatusHistory in one pass along the
// primary key over the range. The texts column is decoded only when it
// differs from the row before's: a unit's texts rarely change, and
// decoding JSON on every row of a week would cost most of the pass.
func (s *Store) StatusChanges(ctx context.Context, serial ups.Serial, from, to time.Time, texts ...string) ([]store.StatusChange, error) {
	rows, err := s.r.QueryContext(ctx,
		`SELECT ts, flags, texts FROM readings WHERE serial = ? AND ts >= ? AND ts < ? ORDER BY ts`,
		string(serial), from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("sqlite store: status changes of %s: %w", serial, err)
	}
	defer rows.Close()
	ch := store.NewChanges(texts)
	vals := make([]string, len(texts))
	has := make([]bool, len(texts))
	text := func(i int) (string, bool) { return vals[i], has[i] }
	var last []byte
	for rows.Next() {
		var ts int64
		var flags sql.NullInt64
		var raw sql.RawBytes
		if err := rows.Scan(&ts, &flags, &raw); err != nil {
			return nil, fmt.Errorf("sqlite store: status changes of %s: %w", serial, err)
		}
		if !bytes.Equal(raw, last) {
			last = append(last[:0], raw...)
			clear(has)
			if len(raw) > 0 && len(texts) > 0 {
				err := decodeObject(string(raw), func(name string, v any) error {
					if i := slices.Index(texts, name); i >= 0 {
						vals[i], has[i] = fmt.Sprint(v), true
					}
					return nil
				})
				if err != nil {
					return nil, fmt.Errorf("sqlite store: status changes of %s: decode texts: %w", serial, err)
				}
			}
		}
		ch.Add(time.UnixMilli(ts), ups.Flag(flags.Int64), flags.Valid, text)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: status changes of %s: %w", serial, err)
	}
	return ch.Result(), nil
}
