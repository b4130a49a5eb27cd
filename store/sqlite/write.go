package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/upswatch/upswatch/ups"
)

// insertReadings[k] upserts rowsPerInsert[k] telemetry readings in one
// statement. INSERT OR REPLACE makes a redelivered batch idempotent on
// (serial, ts): the later copy replaces the earlier one whole, so no
// field of a stale copy survives; rows of one statement are applied in
// order, so within a batch the later copy wins too.
//
// Several rows per statement because each Exec through database/sql and
// the driver costs about as much as the row itself; a batch goes out in
// statements of 64 rows, the rest in 8s and 1s (three statements to
// prepare per transaction rather than one per remainder size).
var rowsPerInsert = [...]int{64, 8, 1}

var insertReadings = func() (q [len(rowsPerInsert)]string) {
	var cols, row strings.Builder
	cols.WriteString("serial, ts, status, flags")
	row.WriteString("(?, ?, ?, ?")
	for i := range columns {
		cols.WriteString(", " + columnName(i))
		row.WriteString(", ?")
	}
	cols.WriteString(", extra, texts")
	row.WriteString(", ?, ?)")
	for k, n := range rowsPerInsert {
		var b strings.Builder
		b.WriteString("INSERT OR REPLACE INTO readings (" + cols.String() + ") VALUES ")
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(row.String())
		}
		q[k] = b.String()
	}
	return q
}()

// nFixed is the number of parameters before the variable columns, and
// nParams those of one row.
const (
	nFixed  = 4
	nParams = nFixed + len(columns) + 2
)

const (
	insertPresence = "INSERT OR REPLACE INTO presence (serial, ts, state) VALUES (?, ?, ?)"
	insertUnit     = "INSERT OR IGNORE INTO units (serial) VALUES (?)"
)

// WriteReadings stores rs in one transaction and returns after it
// committed (synchronous=FULL: the WAL is on disk). Readings with a bad
// serial or presence, and single non-finite values, are dropped and
// counted, not returned as errors. On error nothing was written.
func (s *Store) WriteReadings(ctx context.Context, rs []ups.Reading) (err error) {
	if len(rs) == 0 {
		return nil
	}
	start := time.Now()
	defer func() {
		if err != nil {
			s.m.WriteErrors.Inc()
			return
		}
		s.m.WriteSeconds.Observe(time.Since(start).Seconds())
	}()

	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite store: begin write: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()

	// Prepared once per transaction; database/sql closes them with it.
	var presenceStmt, unitStmt *sql.Stmt
	var readingStmts [len(rowsPerInsert)]*sql.Stmt
	prepare := func(stmt **sql.Stmt, query string) error {
		if *stmt != nil {
			return nil
		}
		st, err := tx.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("sqlite store: prepare: %w", err)
		}
		*stmt = st
		return nil
	}

	// Read while this transaction holds the only writer connection, so
	// any DeleteUnit is wholly before or after it.
	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()

	var (
		// rows holds the parameters of readings not inserted yet, in
		// order, up to the largest statement's worth.
		rows                = make([]any, 0, rowsPerInsert[0]*nParams)
		enc                 encoder
		newUnits            []ups.Serial
		nReading, nPresence int
		drops               dropTally
	)
	// insert writes the held rows, the most per statement that fits;
	// all of them when final, else only whole statements of the largest.
	insert := func(final bool) error {
		for k, n := range rowsPerInsert {
			for len(rows) >= n*nParams && (final || k == 0) {
				if err := prepare(&readingStmts[k], insertReadings[k]); err != nil {
					return err
				}
				if _, err := readingStmts[k].ExecContext(ctx, rows[:n*nParams]...); err != nil {
					return fmt.Errorf("sqlite store: insert %d readings: %w", n, err)
				}
				rows = rows[:copy(rows, rows[n*nParams:])]
			}
		}
		return nil
	}
	for i := range rs {
		r := &rs[i]
		if !ups.ValidSerial(string(r.Serial)) {
			drops.add(dropBadSerial)
			s.log.Debug("sqlite store dropped reading", "reason", dropBadSerial)
			continue
		}
		ts := r.Time.UnixMilli()
		switch r.Presence {
		case ups.PresenceNone:
			rows = rows[:len(rows)+nParams]
			s.readingArgs(rows[len(rows)-nParams:], r, ts, &enc, &drops)
			if len(rows) == cap(rows) {
				if err := insert(false); err != nil {
					return err
				}
			}
			nReading++
		case ups.PresenceOnline, ups.PresenceOffline:
			if err := prepare(&presenceStmt, insertPresence); err != nil {
				return err
			}
			if _, err := presenceStmt.ExecContext(ctx, string(r.Serial), ts, r.Presence.String()); err != nil {
				return fmt.Errorf("sqlite store: insert presence: %w", err)
			}
			nPresence++
		default:
			drops.add(dropPresence)
			s.log.Debug("sqlite store dropped reading", "reason", dropPresence, "serial", r.Serial, "presence", int(r.Presence))
			continue
		}
		if !s.isKnown(r.Serial) && !contains(newUnits, r.Serial) {
			if err := prepare(&unitStmt, insertUnit); err != nil {
				return err
			}
			if _, err := unitStmt.ExecContext(ctx, string(r.Serial)); err != nil {
				return fmt.Errorf("sqlite store: insert unit: %w", err)
			}
			newUnits = append(newUnits, r.Serial)
		}
	}
	if err := insert(true); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite store: commit write: %w", err)
	}
	if len(newUnits) > 0 {
		s.mu.Lock()
		if s.gen == gen {
			for _, u := range newUnits {
				s.known[u] = struct{}{}
			}
		}
		s.mu.Unlock()
	}
	// Counted after the commit: a failed batch is retried whole and would
	// otherwise count its drops twice.
	for reason, n := range drops {
		s.m.Dropped.WithLabelValues(reason).Add(float64(n))
	}
	s.m.Written.Add(float64(nReading))
	s.m.Presence.Add(float64(nPresence))
	return nil
}

func (s *Store) isKnown(serial ups.Serial) bool {
	s.mu.Lock()
	_, ok := s.known[serial]
	s.mu.Unlock()
	return ok
}

// contains is a linear scan: a batch brings few new units (only the first
// batches after start or after a unit registered), so a map would cost
// more than it saves.
func contains(us []ups.Serial, u ups.Serial) bool {
	for _, x := range us {
		if x == u {
			return true
		}
	}
	return false
}

// dropTally counts the drops of one batch by reason; nil until the
// first, which most batches never see.
type dropTally map[string]int

func (d *dropTally) add(reason string) {
	if *d == nil {
		*d = make(dropTally)
	}
	(*d)[reason]++
}

// readingArgs fills args with the parameters of insertReading for r.
func (s *Store) readingArgs(args []any, r *ups.Reading, ts int64, enc *encoder, drops *dropTally) {
	args[0] = string(r.Serial)
	args[1] = ts
	if r.HasStatus {
		args[2] = r.Status.Raw
		args[3] = int64(r.Status.Flags)
	} else {
		args[2], args[3] = nil, nil
	}
	vars := args[nFixed : nFixed+len(columns)]
	clear(vars)
	enc.reset()
	for _, m := range r.Metrics {
		switch {
		case m.Name == "":
			drops.add(dropBadName)
			continue
		case math.IsNaN(m.Value) || math.IsInf(m.Value, 0):
			// JSON cannot hold them and SQLite turns NaN into NULL.
			drops.add(dropNonFinite)
			s.log.Debug("sqlite store dropped value", "reason", dropNonFinite, "serial", r.Serial, "field", m.Name)
			continue
		}
		// A name repeated in Metrics (SetNum never does it, a hand-built
		// reading might): the first value wins, in columns as in JSON.
		if i, ok := columnIndex[m.Name]; ok {
			if vars[i] == nil {
				vars[i] = m.Value
			}
			continue
		}
		enc.num(m.Name, m.Value)
	}
	args[nFixed+len(columns)] = enc.object(&enc.nums)
	for _, t := range r.Texts {
		if t.Name == "" {
			drops.add(dropBadName)
			continue
		}
		enc.text(t.Name, t.Value)
	}
	args[nFixed+len(columns)+1] = enc.object(&enc.texts)
}

// encoder builds the JSON objects of the extra and texts columns by hand:
// encoding/json would reflect over a map for every reading, at 10k
// readings/s a measurable share of the write cost, and a map would lose
// the order the variables arrived in, which Latest gives back.
type encoder struct {
	nums, texts         []byte
	numNames, textNames []string // keys already in each object
}

func (e *encoder) reset() {
	e.nums = e.nums[:0]
	e.texts = e.texts[:0]
	e.numNames = e.numNames[:0]
	e.textNames = e.textNames[:0]
}

// dup reports whether name is in *names, adding it if not. A linear scan:
// the lists are a handful of entries long.
func dup(names *[]string, name string) bool {
	for _, n := range *names {
		if n == name {
			return true
		}
	}
	*names = append(*names, name)
	return false
}

func (e *encoder) num(name string, v float64) {
	if dup(&e.numNames, name) {
		return
	}
	e.nums = appendKey(e.nums, name)
	e.nums = strconv.AppendFloat(e.nums, v, 'g', -1, 64)
}

func (e *encoder) text(name, v string) {
	if dup(&e.textNames, name) {
		return
	}
	e.texts = appendKey(e.texts, name)
	e.texts = appendJSONString(e.texts, v)
}

// object closes the object in *buf and returns it as the column value, or
// nil (SQL NULL) when it is empty, which costs no space in the row.
func (e *encoder) object(buf *[]byte) any {
	if len(*buf) == 0 {
		return nil
	}
	*buf = append(*buf, '}')
	return string(*buf)
}

func appendKey(b []byte, name string) []byte {
	if len(b) == 0 {
		b = append(b, '{')
	} else {
		b = append(b, ',')
	}
	b = appendJSONString(b, name)
	return append(b, ':')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does, so SQLite's json functions accept it.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
