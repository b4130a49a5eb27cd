package influx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// WriteReadings writes rs in chunks of BatchSize points, one HTTP request
// each, and returns after the server accepted them all. On an error some
// chunks may already be written; the caller's retry rewrites them, which
// (serial, time) keys make harmless.
//
// A reading's texts (device.model, device.mfr, ups.alarm...) are written
// only when they differ from the unit's last text point written by this
// store, or that is older than textRefresh: a unit repeats the same
// texts in nearly every reading, and rewriting them was a third of the
// values InfluxDB stored per reading. Latest reads the texts of the
// newest text point.
func (s *Store) WriteReadings(ctx context.Context, rs []ups.Reading) error {
	if len(rs) == 0 {
		return nil
	}
	start := time.Now()
	now := s.now()
	e := s.encoders.Get().(*encoder)
	defer s.encoders.Put(e)
	e.reset()
	clear(e.texts)
	var readings, presence int
	for i := range rs {
		e.appendReading(&rs[i], s.texts.changed(e.texts, &rs[i], now))
		if rs[i].Presence == ups.PresenceNone {
			readings++
		} else {
			presence++
		}
		if e.points() >= s.cfg.BatchSize {
			if err := s.flush(ctx, e); err != nil {
				return s.writeFailed(err)
			}
		}
	}
	if err := s.flush(ctx, e); err != nil {
		return s.writeFailed(err)
	}
	// Only now: after a failed write the retry must write the texts again.
	s.texts.remember(e.texts)
	s.m.Written.Add(float64(readings))
	s.m.Presence.Add(float64(presence))
	s.m.WriteSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// textRefresh bounds how long a unit's unchanged texts go unwritten, so
// that another instance's text point (several share the history
// consumer) or a lost cache (a restart) is superseded within it. With
// several instances that is also the error bound of one case: a text
// that changes (on instance B) and changes back (on instance A, whose
// cache still holds the first value) shows the changed value until A
// rewrites it, at most textRefresh later.
const textRefresh = 10 * time.Minute

// textCache is the text set last written per unit: its hash and when.
type textCache struct {
	mu    sync.Mutex
	units map[ups.Serial]textMark
}

type textMark struct {
	hash uint64 // 0: the reading had no texts
	at   time.Time
}

// maxTextCache bounds the cache: past it, it starts again (the texts of
// every unit are then written once more).
const maxTextCache = 1 << 20

// changed reports whether r's texts must be written, noting the decision
// in pending (this write's, remembered once it succeeded).
func (c *textCache) changed(pending map[ups.Serial]textMark, r *ups.Reading, now time.Time) bool {
	if r.Presence != ups.PresenceNone {
		return false
	}
	h := textsHash(r.Texts)
	last, ok := pending[r.Serial]
	if !ok {
		c.mu.Lock()
		last, ok = c.units[r.Serial]
		c.mu.Unlock()
	}
	write := false
	switch {
	case !r.HasStatus && len(r.Metrics) == 0:
		// No ups_reading point: the text point is the reading.
		write = len(r.Texts) > 0
	case !ok:
		write = h != 0 // first sight: texts if it has any
	case h != last.hash:
		write = true // changed, or gone (the "_none" point)
	default:
		write = h != 0 && now.Sub(last.at) >= textRefresh
	}
	if write || !ok {
		pending[r.Serial] = textMark{h, now}
	}
	return write
}

// remember keeps the marks of a successful write.
func (c *textCache) remember(pending map[ups.Serial]textMark) {
	if len(pending) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.units == nil || len(c.units) >= maxTextCache {
		c.units = make(map[ups.Serial]textMark, len(pending))
	}
	for s, m := range pending {
		c.units[s] = m
	}
}

// textsHash is FNV-1a over the names and values, never 0 for a
// non-empty set.
func textsHash(ts []ups.Text) uint64 {
	if len(ts) == 0 {
		return 0
	}
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	add := func(s string) {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * prime
		}
		h = (h ^ 0xff) * prime // separator: "ab"+"c" differs from "a"+"bc"
	}
	for _, t := range ts {
		add(t.Name)
		add(t.Value)
	}
	return max(h, 1)
}

func (s *Store) writeFailed(err error) error {
	s.m.WriteErrors.Inc()
	return err
}

// flush sends the encoded lines and resets e.
func (s *Store) flush(ctx context.Context, e *encoder) error {
	defer e.reset()
	if e.points() == 0 {
		return nil
	}
	return s.send(ctx, e, 0, e.points())
}

// send writes lines [from, to) of e. A chunk the server refuses whole
// (a 400 that is not a partial write, or 413) is split in halves until
// the bad lines stand alone, so only they are dropped.
func (s *Store) send(ctx context.Context, e *encoder, from, to int) error {
	start := 0
	if from > 0 {
		start = e.ends[from-1]
	}
	body := string(e.buf[start:e.ends[to-1]])

	wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	err := s.write.WriteRecord(wctx, body)
	cancel()
	if err == nil {
		return nil
	}
	n := to - from
	switch c := classify(err); c.kind {
	case kindRejected:
		if c.partial {
			// The server wrote the rest and says how many it dropped.
			dropped := c.dropped
			if dropped <= 0 {
				dropped = 1
			}
			s.countDropped(c.reason, dropped)
			s.log.Warn("influx dropped points as bad data", "reason", c.reason, "points", dropped, "batch", n, "status", c.status, "error", c.message)
			return nil
		}
		if n == 1 {
			s.countDropped(c.reason, 1)
			s.log.Warn("influx refused a point as bad data", "reason", c.reason, "status", c.status, "error", c.message, "line", truncate(string(e.line(from)), 200))
			return nil
		}
		mid := from + n/2
		if err := s.send(ctx, e, from, mid); err != nil {
			return err
		}
		return s.send(ctx, e, mid, to)
	case kindConfig:
		s.log.Error("influx refused the write: check url, token, org and bucket", "status", c.status, "error", c.message, "bucket", s.cfg.Bucket)
		return fmt.Errorf("influx store: write %d points: %w", n, err)
	default:
		if ctx.Err() != nil {
			return fmt.Errorf("influx store: write %d points: %w", n, ctx.Err())
		}
		return fmt.Errorf("influx store: write %d points: %w: %w", n, store.ErrUnavailable, err)
	}
}

type errKind int

const (
	kindUnavailable errKind = iota // retry later
	kindConfig                     // fix the configuration
	kindRejected                   // bad data: drop
)

type classified struct {
	kind    errKind
	status  int
	message string
	partial bool   // the server wrote the other points of the request
	dropped int    // points dropped, when the server said
	reason  string // for rejected points
}

// classify sorts a write error by what the caller should do about it.
func classify(err error) classified {
	var he *http2.Error
	if !errors.As(err, &he) || he.StatusCode == 0 {
		return classified{kind: kindUnavailable, message: err.Error()}
	}
	c := classified{status: he.StatusCode, message: he.Message}
	if c.message == "" {
		c.message = he.Error()
	}
	switch {
	case he.StatusCode == http.StatusUnauthorized, he.StatusCode == http.StatusForbidden,
		he.StatusCode == http.StatusNotFound:
		c.kind = kindConfig
	case he.StatusCode == http.StatusRequestEntityTooLarge:
		c.kind, c.reason = kindRejected, reasonTooLarge
	case he.StatusCode == http.StatusTooManyRequests, he.StatusCode >= 500:
		c.kind = kindUnavailable
	case he.StatusCode >= 400:
		c.kind = kindRejected
		c.reason, c.partial, c.dropped = parseRejection(c.message)
	default:
		c.kind = kindUnavailable
	}
	return c
}

// parseRejection reads a 4xx write error's message. 1.x says, e.g.:
//
//	partial write: field type conflict: input field "x" on measurement
//	"ups_reading" is type float, already exists as type string dropped=1
//	partial write: points beyond retention policy dropped=2
//	unable to parse 'ups_reading,...': invalid number
//
// and 2.x similar texts in JSON's "message".
func parseRejection(msg string) (reason string, partial bool, dropped int) {
	partial = strings.Contains(msg, "partial write")
	switch {
	case strings.Contains(msg, "field type conflict"):
		reason = reasonTypeConflict
	case strings.Contains(msg, "beyond retention"):
		reason = reasonRetention
	case strings.Contains(msg, "unable to parse"), strings.Contains(msg, "invalid"):
		reason = reasonParse
	default:
		reason = reasonOther
	}
	if i := strings.LastIndex(msg, "dropped="); i >= 0 {
		digits := msg[i+len("dropped="):]
		end := 0
		for end < len(digits) && digits[end] >= '0' && digits[end] <= '9' {
			end++
		}
		dropped, _ = strconv.Atoi(digits[:end])
	}
	return reason, partial, dropped
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
