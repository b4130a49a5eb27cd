package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// defaultPruneChunk bounds the rows one prune transaction deletes, so the
// single writer connection is handed back to WriteReadings between chunks
// even when a retention is first applied to a year of history.
const defaultPruneChunk = 5000

// pruneReadings deletes up to ?3 of a unit's readings older than ?2:
// everything before the (?3+1)th oldest, or all of them when there are
// fewer. ts is unique within a unit, so it deletes exactly ?3 rows unless
// it reached the cut.
var (
	pruneReadings = pruneStmt("readings")
	prunePresence = pruneStmt("presence")
)

func pruneStmt(table string) string {
	return fmt.Sprintf(`DELETE FROM %s WHERE serial = ?1 AND ts < coalesce(
	(SELECT ts FROM %[1]s WHERE serial = ?1 AND ts < ?2 ORDER BY ts LIMIT 1 OFFSET ?3), ?2)`, table)
}

// pruneStatements bounds the statements of one prune transaction, so a
// sweep over thousands of units with little to delete still hands the
// writer back to WriteReadings often.
const pruneStatements = 500

// Prune deletes the readings and presence changes older than before and
// returns how many rows it deleted. It works unit by unit along the
// primary keys, grouping units into transactions of at most 5000 deleted
// rows or 500 statements: one fsync per group instead of one per unit, and
// no transaction long enough to stall the writes. It stops early with
// ctx's error when ctx is done; what was committed stays deleted.
func (s *Store) Prune(ctx context.Context, before time.Time) (total int64, err error) {
	serials, err := s.units(ctx)
	if err != nil {
		return 0, err
	}
	cut := store.CeilMilli(before)

	var (
		tx          *sql.Tx
		rows, stmts int64 // in the open transaction
	)
	defer func() {
		if tx != nil {
			_ = tx.Rollback()
		}
	}()
	commit := func() error {
		if tx == nil {
			return nil
		}
		err := tx.Commit()
		tx = nil
		if err != nil {
			return fmt.Errorf("sqlite store: prune: commit: %w", err)
		}
		total += rows
		s.m.pruned.Add(float64(rows))
		rows, stmts = 0, 0
		return nil
	}

	for _, serial := range serials {
		for _, stmt := range []string{pruneReadings, prunePresence} {
			for {
				if err := ctx.Err(); err != nil {
					return total, fmt.Errorf("sqlite store: prune: %w", err)
				}
				if tx == nil {
					if tx, err = s.w.BeginTx(ctx, nil); err != nil {
						return total, fmt.Errorf("sqlite store: prune: begin: %w", err)
					}
				}
				budget := s.pruneChunk - rows
				res, err := tx.ExecContext(ctx, stmt, string(serial), cut, budget)
				if err != nil {
					return total, fmt.Errorf("sqlite store: prune %s: %w", serial, err)
				}
				n, err := res.RowsAffected()
				if err != nil {
					return total, fmt.Errorf("sqlite store: prune %s: %w", serial, err)
				}
				rows += n
				stmts++
				if rows >= s.pruneChunk || stmts >= pruneStatements {
					if err := commit(); err != nil {
						return total, err
					}
				}
				if n < budget {
					break // this unit's rows in this table are done
				}
			}
		}
	}
	if err := commit(); err != nil {
		return total, err
	}
	return total, nil
}

// units lists the serials that have rows, from the read pool: a unit
// created after the snapshot has nothing old enough to prune yet.
func (s *Store) units(ctx context.Context) ([]ups.Serial, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT serial FROM units")
	if err != nil {
		return nil, fmt.Errorf("sqlite store: list units: %w", err)
	}
	defer rows.Close()
	var serials []ups.Serial
	for rows.Next() {
		var serial string
		if err := rows.Scan(&serial); err != nil {
			return nil, fmt.Errorf("sqlite store: list units: %w", err)
		}
		serials = append(serials, ups.Serial(serial))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: list units: %w", err)
	}
	return serials, nil
}

// Run applies Options.Retention every Options.PruneInterval, the first
// time at once, until ctx is done; it then returns nil. A failed prune is
// logged and counted, and retried at the next interval: old rows staying
// a few minutes longer is harmless. With no retention Run only waits for
// ctx, so it can be wired like any other component.
func (s *Store) Run(ctx context.Context) error {
	if s.opts.Retention == 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.opts.PruneInterval)
	defer t.Stop()
	for {
		start := time.Now()
		n, err := s.Prune(ctx, start.Add(-s.opts.Retention))
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.m.pruneErrors.Inc()
			s.log.Error("sqlite store prune failed", "err", err, "deleted", n)
		case n > 0:
			s.log.Info("sqlite store pruned", "deleted", n, "retention", s.opts.Retention, "took", time.Since(start))
		}
		if s.afterPrune != nil {
			s.afterPrune(n, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// DeleteUnit erases all history of a unit (the privacy policy's erasure
// on account deletion) in one transaction.
func (s *Store) DeleteUnit(ctx context.Context, serial ups.Serial) (err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite store: delete %s: begin: %w", serial, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, q := range []string{
		"DELETE FROM readings WHERE serial = ?",
		"DELETE FROM presence WHERE serial = ?",
		"DELETE FROM units WHERE serial = ?",
	} {
		if _, err := tx.ExecContext(ctx, q, string(serial)); err != nil {
			return fmt.Errorf("sqlite store: delete %s: %w", serial, err)
		}
	}
	// Forget the unit and bump the generation before commit, while this
	// transaction holds the only writer connection: a batch that committed
	// before us but has not yet cached its new units sees the generation
	// changed and caches nothing (see WriteReadings). If the commit fails
	// the cache merely misses a row that exists, which costs one INSERT OR
	// IGNORE.
	s.mu.Lock()
	delete(s.known, serial)
	s.gen++
	s.mu.Unlock()
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite store: delete %s: commit: %w", serial, err)
	}
	return nil
}
