// Package payload decodes the telemetry a UPS unit publishes on
// ups/{serial}/telemetry into validated ups.Readings, exactly per the
// device contract: a JSON object of NUT variable names to values, a JSON
// array of such objects (oldest first), or upsc text verbatim.
//
// Validation rejects the whole payload, with a counted Reason, for
// anything that is not a credible reading: malformed input, NaN or
// infinity, a bad ts, a payload beyond Limits. Out-of-range numbers are
// the exception: such a value (a known variable outside its ups.Vars
// range, any other beyond ±ups.AbsurdLimit) is dropped from its reading
// and counted in Decoder.Dropped, and the rest of the reading is kept.
// Real units report such values all the time from driver bugs
// (battery.temperature in kelvin, input.frequency times 100, 255 for
// "unknown"; 37 of the 718 dumps of NUT's device library do), and
// rejecting their whole readings would leave those units with no status
// and no alerts at all. A reading left with no variable by the drops is
// rejected as ReasonOutOfRange.
//
// The decoder runs for every MQTT message, so it avoids reflection and
// generic JSON trees: a small scanner reads the narrow JSON subset the
// contract allows (flat objects of scalars) in one pass, and all text of a
// payload shares one allocation.
package payload

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// Reason is why a payload was rejected. It is a fixed, small set, meant to
// be used as a Prometheus label value.
type Reason string

// Rejection reasons.
const (
	// ReasonMalformed: not JSON of the contract's shape nor upsc text, a
	// bad variable name, a duplicate variable, or a nested value.
	ReasonMalformed Reason = "malformed"
	// ReasonNaNInf: a NaN or infinite value, or a number overflowing
	// float64.
	ReasonNaNInf Reason = "nan_inf"
	// ReasonOutOfRange: every variable of a reading was out of range (a
	// known variable outside its range, any other beyond
	// ups.AbsurdLimit). Single such values are dropped, not rejected.
	ReasonOutOfRange Reason = "out_of_range"
	// ReasonOversized: the payload exceeds Limits.MaxBytes, or holds more
	// readings or fields than the limits allow.
	ReasonOversized Reason = "oversized"
	// ReasonBadTimestamp: ts is unparseable, before 2000-01-01, or too far
	// in the future.
	ReasonBadTimestamp Reason = "bad_timestamp"
	// ReasonEmpty: the payload or one of its readings carries no variable.
	ReasonEmpty Reason = "empty"
)

// Reasons lists every Reason, so a caller can create its counters at zero
// before the first rejection.
func Reasons() []Reason {
	return []Reason{ReasonMalformed, ReasonNaNInf, ReasonOutOfRange,
		ReasonOversized, ReasonBadTimestamp, ReasonEmpty}
}

// Error is a rejected payload. The whole payload is rejected, never a
// part of it, so one message counts once.
type Error struct {
	Reason Reason
	// Index is the reading's position in a JSON array, -1 otherwise.
	Index int
	// Msg says what is wrong, without the reading index.
	Msg string
}

func (e *Error) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("reading %d: %s", e.Index, e.Msg)
	}
	return e.Msg
}

// Limits bounds what one payload may hold. A zero or negative field takes
// its default.
type Limits struct {
	MaxBytes    int           // payload size; default 1 MiB
	MaxReadings int           // readings per payload; default 10000
	MaxFields   int           // fields per reading, ts included; default 1024
	MaxFuture   time.Duration // how far ts may be ahead of receipt; default 1h
}

// Default limits.
const (
	DefaultMaxBytes    = 1 << 20
	DefaultMaxReadings = 10000
	// A metered ePDU reports 581 variables in NUT's device library (a
	// UPS up to about 100): 1024 accepts every real device and still
	// bounds the work of one reading.
	DefaultMaxFields = 1024
	DefaultMaxFuture = time.Hour
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxReadings <= 0 {
		l.MaxReadings = DefaultMaxReadings
	}
	if l.MaxFields <= 0 {
		l.MaxFields = DefaultMaxFields
	}
	if l.MaxFuture <= 0 {
		l.MaxFuture = DefaultMaxFuture
	}
	return l
}

// Decoder decodes telemetry payloads. It is safe for concurrent use: its
// scratch buffers come from a pool, so one Decoder serves every goroutine.
type Decoder struct {
	lim     Limits
	pool    sync.Pool // of *state
	dropped atomic.Uint64
}

// New returns a Decoder enforcing l (zero fields take their defaults).
func New(l Limits) *Decoder {
	return &Decoder{lim: l.withDefaults()}
}

// Dropped returns how many out-of-range values d has dropped from the
// payloads it accepted (see the package comment), for a metric.
func (d *Decoder) Dropped() uint64 { return d.dropped.Load() }

// Limits returns the limits d enforces, defaults filled in.
func (d *Decoder) Limits() Limits { return d.lim }

// Decode decodes one payload published by the unit serial and received at
// received, appending its readings to dst (oldest first). On rejection it
// returns dst unchanged and an *Error.
//
// The form is told by the first non-space byte: '{' a JSON object, '[' a
// JSON array of objects, anything else upsc text.
//
// The readings of one payload share their backing arrays and strings
// (one allocation each); every reading's Metrics and Texts are capped at
// their length, so appending to one reading never touches another.
// Decode keeps no reference to payload.
func (d *Decoder) Decode(serial ups.Serial, payload []byte, received time.Time, dst []ups.Reading) ([]ups.Reading, error) {
	if len(payload) > d.lim.MaxBytes {
		return dst, &Error{Reason: ReasonOversized, Index: -1,
			Msg: fmt.Sprintf("payload of %d bytes exceeds the limit of %d", len(payload), d.lim.MaxBytes)}
	}
	s, _ := d.pool.Get().(*state)
	if s == nil {
		s = &state{}
	}
	s.start(&d.lim, received)
	err := s.decode(payload)
	if err == nil {
		dst = s.build(serial, dst)
		if s.dropped > 0 {
			d.dropped.Add(uint64(s.dropped))
		}
	}
	s.release()
	if s.reusable() {
		d.pool.Put(s)
	}
	if err != nil {
		return dst, err
	}
	return dst, nil
}

// field is one variable of a reading while the payload is being read.
// It holds no pointer, so the scratch costs the garbage collector
// nothing: interned names and texts are ids into nameList and textList,
// others byte ranges of state.arena, which become substrings of one
// string once the payload is known to be good.
type field struct {
	nameID  int32 // into nameList, or -1: in the arena
	nameOff int32
	nameLen int32
	textID  int32 // into textList, or -1: in the arena
	textOff int32
	textLen int32
	num     float64
	kind    fieldKind
}

type fieldKind uint8

const (
	kindNum fieldKind = iota
	kindText
)

// rec is one reading while the payload is being read: its fields are
// state.fields[start:end].
type rec struct {
	start, end     int
	nMetric, nText int
	time           time.Time
	hasTime        bool
	tsSeen         bool
	dropMsg        string // why the first out-of-range value was dropped
}

// span is a byte range of state.arena.
type span struct{ off, n int32 }

// state is the scratch of one Decode call, pooled.
type state struct {
	lim      *Limits
	received time.Time
	minTime  time.Time
	maxTime  time.Time
	fields   []field
	recs     []rec
	arena    []byte
	keyBuf   []byte // unescaped JSON key
	valBuf   []byte // unescaped JSON string value
	// Duplicate detection: interned names by id, others by scan (few) or
	// set (many), so a hostile payload cannot make it quadratic.
	seen      []uint64
	others    []span // non-interned names of the reading, in the arena
	othersSet map[string]struct{}
	index     int // current reading's index for errors (-1 for a single one)
	dropped   int // out-of-range values dropped from this payload
	nFields   int // fields read in the current reading, ts and nulls included
}

// The pool keeps states whose buffers stay below these sizes, so one huge
// payload does not pin its memory forever.
const (
	maxPooledFields = 1 << 14
	maxPooledArena  = 1 << 18
)

var minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (s *state) start(lim *Limits, received time.Time) {
	s.lim = lim
	s.received = received.UTC()
	s.minTime = minTime
	s.maxTime = s.received.Add(lim.MaxFuture)
	s.fields = s.fields[:0]
	s.recs = s.recs[:0]
	s.arena = s.arena[:0]
	s.dropped = 0
}

func (s *state) release() {
	s.fields = s.fields[:0]
	clear(s.recs)
	s.recs = s.recs[:0]
	s.lim = nil
}

func (s *state) reusable() bool {
	return cap(s.fields) <= maxPooledFields && cap(s.arena) <= maxPooledArena
}

func (s *state) fail(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Index: s.index, Msg: fmt.Sprintf(format, args...)}
}

// decode reads the payload into fields and recs, validating everything.
func (s *state) decode(p []byte) error {
	i := skipSpace(p, 0)
	if i == len(p) {
		return &Error{Reason: ReasonEmpty, Index: -1, Msg: "payload is empty"}
	}
	switch p[i] {
	case '{':
		return s.decodeJSON(p, i, false)
	case '[':
		return s.decodeJSON(p, i, true)
	}
	return s.decodeUpsc(p)
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space, also skipping a UTF-8 byte order mark at the start.
func skipSpace(p []byte, i int) int {
	if i == 0 && len(p) >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF {
		i = 3
	}
	for i < len(p) && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t') {
		i++
	}
	return i
}

// beginReading starts a new reading at index idx (-1 for a single one).
func (s *state) beginReading(idx int) error {
	if idx >= s.lim.MaxReadings {
		return &Error{Reason: ReasonOversized, Index: -1,
			Msg: fmt.Sprintf("more than %d readings", s.lim.MaxReadings)}
	}
	s.index = idx
	s.nFields = 0
	if s.seen == nil {
		s.seen = make([]uint64, seenWords)
	}
	clear(s.seen)
	s.others = s.others[:0]
	if len(s.othersSet) > 0 {
		clear(s.othersSet)
	}
	s.recs = append(s.recs, rec{start: len(s.fields)})
	return nil
}

// countField enforces MaxFields; every member counts, ts and nulls too,
// since each costs work to read.
func (s *state) countField() error {
	s.nFields++
	if s.nFields > s.lim.MaxFields {
		return s.fail(ReasonOversized, "more than %d fields", s.lim.MaxFields)
	}
	return nil
}

// endReading closes the current reading.
func (s *state) endReading() error {
	r := &s.recs[len(s.recs)-1]
	r.end = len(s.fields)
	if r.end == r.start {
		if r.dropMsg != "" {
			return s.fail(ReasonOutOfRange, "%s", r.dropMsg)
		}
		return s.fail(ReasonEmpty, "reading has no variables")
	}
	return nil
}

// build turns the validated fields into readings appended to dst. All
// metrics of the payload share one array, all texts another, and all
// non-interned strings one string: three allocations however many
// readings.
func (s *state) build(serial ups.Serial, dst []ups.Reading) []ups.Reading {
	var arena string
	if len(s.arena) > 0 {
		arena = string(s.arena)
	}
	nm, nt := 0, 0
	for i := range s.recs {
		nm += s.recs[i].nMetric
		nt += s.recs[i].nText
	}
	var metrics []ups.Metric
	var texts []ups.Text
	if nm > 0 {
		metrics = make([]ups.Metric, 0, nm)
	}
	if nt > 0 {
		texts = make([]ups.Text, 0, nt)
	}
	dst = growReadings(dst, len(s.recs))
	for ri := range s.recs {
		rc := &s.recs[ri]
		// Built in place: a Reading is large and copying it costs write
		// barriers.
		dst = dst[:len(dst)+1]
		r := &dst[len(dst)-1]
		*r = ups.Reading{Serial: serial, Time: s.received}
		if rc.hasTime {
			r.Time = rc.time
		}
		m0, t0 := len(metrics), len(texts)
		for fi := rc.start; fi < rc.end; fi++ {
			f := &s.fields[fi]
			var name string
			if f.nameID >= 0 {
				name = nameList[f.nameID].name
			} else {
				name = arena[f.nameOff : f.nameOff+f.nameLen]
			}
			if f.kind == kindNum {
				metrics = append(metrics, ups.Metric{Name: name, Value: f.num})
				continue
			}
			var text string
			if f.textID >= 0 {
				text = textList[f.textID]
			} else {
				text = arena[f.textOff : f.textOff+f.textLen]
			}
			if f.nameID == statusID {
				r.SetText(name, text)
				continue
			}
			texts = append(texts, ups.Text{Name: name, Value: text})
		}
		// Full slice expressions: an append by a later user of one
		// reading must not overwrite the next reading's variables.
		if len(metrics) > m0 {
			r.Metrics = metrics[m0:len(metrics):len(metrics)]
			r.Reindex()
		}
		if len(texts) > t0 {
			r.Texts = texts[t0:len(texts):len(texts)]
		}
	}
	return dst
}

func growReadings(dst []ups.Reading, n int) []ups.Reading {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	out := make([]ups.Reading, len(dst), len(dst)+n)
	copy(out, dst)
	return out
}
