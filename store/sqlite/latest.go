package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

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
	s.latestOnce.Do(func() { s.latest, s.latestErr = s.r.PrepareContext(context.WithoutCancel(ctx), selectLatest) })
	if s.latestErr != nil {
		return ups.Reading{}, fmt.Errorf("sqlite store: prepare latest: %w", s.latestErr)
	}
	err := s.latest.QueryRowContext(ctx, string(serial)).Scan(dest...)
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
