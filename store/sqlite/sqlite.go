// Package sqlite is the embedded history store: store.History on SQLite
// through the pure-Go modernc.org/sqlite driver, so `upswatch serve` keeps
// history on one machine with no external engine.
//
// One file in WAL mode. All writes go through a single connection (SQLite
// admits one writer at a time; queuing in database/sql is cheaper than
// SQLITE_BUSY retries), and queries use a separate pool of read-only
// connections, which WAL lets read a consistent snapshot while a write
// transaction is open.
//
// Times are stored as unix milliseconds: sub-millisecond precision is
// dropped and times come back in UTC.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// DefaultPruneInterval is how often Run applies the retention when
// Options.PruneInterval is zero.
const DefaultPruneInterval = 5 * time.Minute

// busyTimeout bounds how long a connection waits for a lock another
// process (a backup tool, the sqlite3 shell) holds before failing with
// SQLITE_BUSY. Inside this process the single writer never contends.
const busyTimeout = 10 * time.Second

// synchronous is FULL, not the NORMAL usually paired with WAL: the history
// consumer acks a bus batch as soon as WriteReadings returns, and with
// NORMAL a power cut can lose the last transactions committed before the
// WAL was synced, which the bus would then never redeliver. FULL syncs the
// WAL at every commit, one fsync per 500-reading batch: BenchmarkWriteReadings
// on the 2-core dev box gave 24-28k readings/s with FULL and 24-26k with
// NORMAL, no difference beyond the noise, so durability wins.
const synchronous = "FULL"

// Options configure a Store. The zero value is usable.
type Options struct {
	// Retention is how long readings are kept; Run deletes older ones.
	// Zero keeps everything forever.
	Retention time.Duration
	// PruneInterval is how often Run prunes; zero means
	// DefaultPruneInterval.
	PruneInterval time.Duration
	// ReadConns caps the read pool; zero means max(4, GOMAXPROCS).
	ReadConns int
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the store's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Store is the SQLite history store. It is safe for concurrent use.
type Store struct {
	w    *sql.DB // one connection: all writes
	r    *sql.DB // read-only pool: Query, Latest
	opts Options
	log  *slog.Logger
	m    *metrics

	// known caches serials already in the units table, so a batch does
	// not re-insert them. Entries are added only after the commit that
	// inserted them, and only if no DeleteUnit ran since that transaction
	// began (gen unchanged), so the cache never claims a row that is gone.
	mu    sync.Mutex
	known map[ups.Serial]struct{}
	gen   uint64

	pruneChunk int64 // defaultPruneChunk; tests lower it

	// latest is selectLatest prepared once: preparing it cost more than
	// running it (the console's fleet page asks it for every unit).
	latestOnce sync.Once
	latest     *sql.Stmt
	latestErr  error

	// afterPrune, when set (by tests), is called after each prune of Run.
	afterPrune func(n int64, err error)
}

var _ store.History = (*Store)(nil)

// Open opens (creating if needed) the database file at path and migrates
// its schema. The directory must exist. Open starts no goroutine; call Run
// to apply the retention.
func Open(path string, opts Options) (*Store, error) {
	switch {
	case path == "":
		return nil, errors.New("sqlite store: path is empty")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		// An in-memory database would not be shared between the writer
		// and the read pool, and a URI would bypass our DSN parameters.
		return nil, fmt.Errorf("sqlite store: path %q must be a plain file name", path)
	case strings.ContainsRune(path, '?'):
		// The driver splits its DSN at the first '?'.
		return nil, fmt.Errorf("sqlite store: path %q must not contain '?'", path)
	}
	if opts.Retention < 0 {
		return nil, fmt.Errorf("sqlite store: retention %s is negative", opts.Retention)
	}
	if opts.PruneInterval < 0 {
		return nil, fmt.Errorf("sqlite store: prune interval %s is negative", opts.PruneInterval)
	}
	if opts.PruneInterval == 0 {
		opts.PruneInterval = DefaultPruneInterval
	}
	if opts.ReadConns < 0 {
		return nil, fmt.Errorf("sqlite store: read connections %d is negative", opts.ReadConns)
	}
	if opts.ReadConns == 0 {
		opts.ReadConns = max(4, runtime.GOMAXPROCS(0))
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}

	common := url.Values{}
	common.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	common.Set("_journal_mode", "WAL")
	common.Set("_synchronous", synchronous)

	wq := cloneValues(common)
	// IMMEDIATE takes the write lock at BEGIN, so a transaction never
	// fails halfway on a lock upgrade; 64 MiB of page cache holds the
	// right-most leaf page of every unit's key range for ~10k units.
	// The writer's temporary store is memory: a multi-row INSERT OR
	// REPLACE keeps a statement journal of the pages it touches, which
	// otherwise goes to a temp file, a pwrite per page (the readers keep
	// the default, so a big report's sort can spill to disk).
	wq.Set("_txlock", "immediate")
	wq.Add("_pragma", "cache_size(-65536)")
	wq.Add("_pragma", "temp_store(memory)")
	w, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite store: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	ctx := context.Background()
	from, err := migrate(ctx, w)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite store: %s: %w", path, err)
	}
	if from != schemaVersion {
		log.Info("sqlite store schema migrated", "path", path, "from", from, "to", schemaVersion)
	}

	// The readers open only after the writer created the file and set WAL
	// (a persistent mode), so they never race the migration.
	rq := cloneValues(common)
	rq.Set("_query_only", "1")
	r, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite store: open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(opts.ReadConns)
	r.SetMaxIdleConns(opts.ReadConns)
	if err := r.PingContext(ctx); err != nil {
		_ = w.Close()
		_ = r.Close()
		return nil, fmt.Errorf("sqlite store: open %s for reading: %w", path, err)
	}

	return &Store{
		w:     w,
		r:     r,
		opts:  opts,
		log:   log,
		m:     m,
		known: make(map[ups.Serial]struct{}),

		pruneChunk: defaultPruneChunk,
	}, nil
}

// Close closes the database. It lets SQLite refresh its query planner
// statistics first (PRAGMA optimize, cheap when nothing changed).
func (s *Store) Close() error {
	_, optErr := s.w.Exec("PRAGMA optimize")
	if optErr != nil {
		s.log.Warn("sqlite store optimize failed", "err", optErr)
	}
	var stmtErr error
	if s.latest != nil {
		stmtErr = s.latest.Close()
	}
	return errors.Join(stmtErr, s.r.Close(), s.w.Close())
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}
