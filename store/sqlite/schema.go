package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Schema encoding of a reading: one wide row per (serial, ts).
//
// The known NUT variables (ups.Vars at the time schema version 1 was
// fixed) are REAL columns; any other numeric variable goes into the JSON
// object in column extra, text variables into the JSON object in texts.
// Measured on the 2-core dev box with a day of 19-field readings at 10 s,
// 10 s buckets: the same values held as one JSON object per reading and
// aggregated with json_each (BenchmarkQueryDayJSON) took 545 ms; REAL
// columns with SQL aggregates 238 ms, and with the Go pass of query.go
// 57 ms (BenchmarkQueryDay; 5 min buckets: 245 ms for JSON, 29 ms). A
// REAL column is read without parsing; JSON is re-parsed for every row of
// every query. The JSON column keeps the schema open to the variables
// devices send beyond the known ones, without a migration per variable.
//
// The column list is frozen per schema version, not derived from
// ups.Vars at run time: a Var added to package ups later is stored in
// extra until a migration gives it a column (that migration must move the
// values out of extra with json_extract/json_remove, so a field is never
// split between the two places).
var columns = [...]string{
	"battery.charge", "battery.charge.low", "battery.charge.warning",
	"battery.runtime", "battery.runtime.low", "battery.voltage",
	"battery.voltage.nominal", "battery.temperature", "battery.packs.bad",
	"input.voltage", "input.voltage.nominal", "input.transfer.low",
	"input.transfer.high", "input.frequency", "input.frequency.nominal",
	"output.voltage", "output.frequency", "ups.load", "ups.temperature",
	"ups.realpower", "ups.power", "ambient.temperature",
}

// columnIndex maps a NUT variable name to its index in columns.
var columnIndex = func() map[string]int {
	m := make(map[string]int, len(columns))
	for i, name := range columns {
		m[name] = i
	}
	return m
}()

// columnName is the SQL identifier of a known variable: its NUT name with
// dots replaced by underscores ("battery.charge" -> battery_charge). The
// names come from the static list above, never from input, so they are
// safe to splice into SQL text.
func columnName(i int) string { return strings.ReplaceAll(columns[i], ".", "_") }

// migrations[i] brings the schema from user_version i to i+1. Append only:
// a released migration never changes, since databases in the field have
// already run it.
var migrations = []func() string{
	func() string {
		var b strings.Builder
		b.WriteString(`CREATE TABLE readings (
	serial TEXT NOT NULL,
	ts     INTEGER NOT NULL, -- unix milliseconds
	status TEXT,             -- raw ups.status; NULL when the reading had none
	flags  INTEGER,          -- parsed ups.Flag bits, so outages are a WHERE away
`)
		for i := range columns {
			fmt.Fprintf(&b, "\t%s REAL,\n", columnName(i))
		}
		b.WriteString(`	extra  TEXT,             -- JSON object of other numeric variables
	texts  TEXT,             -- JSON object of text variables
	PRIMARY KEY (serial, ts)
) WITHOUT ROWID;
CREATE TABLE presence (
	serial TEXT NOT NULL,
	ts     INTEGER NOT NULL,
	state  TEXT NOT NULL,    -- online | offline
	PRIMARY KEY (serial, ts)
) WITHOUT ROWID;
-- units lists every serial with rows, so retention can prune unit by unit
-- along the primary keys instead of scanning the whole table for old ts.
CREATE TABLE units (
	serial TEXT PRIMARY KEY
) WITHOUT ROWID;
`)
		return b.String()
	},
}

// schemaVersion is the user_version this build writes.
var schemaVersion = len(migrations)

// migrate brings the database up to schemaVersion inside one immediate
// transaction (the writer DSN sets _txlock=immediate), so two processes
// opening the same file at once cannot both migrate. It returns the
// version found.
func migrate(ctx context.Context, db *sql.DB) (from int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin migration: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&from); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if from > schemaVersion {
		return from, fmt.Errorf("database schema version %d is newer than this build supports (%d)", from, schemaVersion)
	}
	if from == schemaVersion {
		return from, tx.Rollback()
	}
	for v := from; v < schemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]()); err != nil {
			return from, fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	// PRAGMA takes no bound parameters; the value is our own integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return from, fmt.Errorf("set schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return from, fmt.Errorf("commit migration: %w", err)
	}
	return from, nil
}
