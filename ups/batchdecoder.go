package ups

import (
	"fmt"
	"math"
	"time"

	"github.com/upswatch/upswatch/internal/wire"
)

// BatchDecoder decodes reading batches into memory it reuses from one
// batch to the next. Every consumer of the READINGS stream (history
// recorder, rule engine, battery tracker) decodes every batch, so the
// decode runs several times per reading: with DecodeBatch that was a
// Serial, a Metrics and a Texts slice and a string per text and status
// allocated per reading per consumer. Here a reading's Metrics and Texts
// are windows of arenas kept across batches, and serials, statuses, text
// values and unknown names are interned (a unit sends the same ones
// again and again), so a warm decoder allocates nothing per reading.
//
// Readings returned by Append stay valid until the next Reset; their
// strings (immutable) stay valid for ever and may be kept. A
// BatchDecoder is not safe for concurrent use: each consumer loop owns
// one.
type BatchDecoder struct {
	metrics []Metric
	texts   []Text

	// Interned strings. Each table is cleared when it reaches its bound,
	// so a stream of ever-new values (a unit reporting a clock as text)
	// costs what it did before interning, never unbounded memory.
	serials  map[string]Serial
	statuses map[string]Status
	strs     map[string]string
}

// Bounds of the intern tables: more units than a deployment has, more
// distinct statuses and texts than the fleet's steady state.
const (
	maxInternedSerials = 1 << 20
	maxInternedStrs    = 1 << 16
	// maxInternedLen: longer texts are rarely repeated; not worth a slot.
	maxInternedLen = 64
)

// NewBatchDecoder returns a decoder that interns.
func NewBatchDecoder() *BatchDecoder {
	return &BatchDecoder{
		serials:  map[string]Serial{},
		statuses: map[string]Status{},
		strs:     map[string]string{},
	}
}

// Reset lets the next Append reuse the arenas: every reading returned
// since the last Reset must be out of use.
func (bd *BatchDecoder) Reset() {
	clear(bd.metrics) // drop the names' references for the GC
	clear(bd.texts)
	bd.metrics = bd.metrics[:0]
	bd.texts = bd.texts[:0]
}

// Append decodes a batch made by AppendBatch and appends its readings to
// rs. On error rs is returned as it was given.
func (bd *BatchDecoder) Append(rs []Reading, b []byte) ([]Reading, error) {
	before := len(rs)
	d := batchDec{wire.NewDecoder(b, ErrBadBatch), bd}
	if v := d.Byte(); v != batchVersion {
		if d.Err() != nil {
			return rs, d.Err()
		}
		return rs, fmt.Errorf("%w: unknown version %d", ErrBadBatch, v)
	}
	n := d.Uvarint()
	if n > uint64(len(b)) { // each reading takes at least one byte
		return rs, fmt.Errorf("%w: count %d exceeds size", ErrBadBatch, n)
	}
	for i := uint64(0); i < n && d.Err() == nil; i++ {
		rs = append(rs, Reading{})
		d.reading(&rs[len(rs)-1])
	}
	if d.Err() != nil {
		clear(rs[before:])
		return rs[:before], d.Err()
	}
	if d.Len() != 0 {
		clear(rs[before:])
		return rs[:before], fmt.Errorf("%w: %d trailing bytes", ErrBadBatch, d.Len())
	}
	return rs, nil
}

// dictVar maps a dictionary index (k-1) to the known variable of that
// name, so indexing a reading's dictionary names needs no map lookup.
var dictVar = func() []int16 {
	t := make([]int16, len(dictionary))
	for i, name := range dictionary {
		t[i] = -1
		if v, ok := varByName[name]; ok {
			t[i] = int16(v)
		}
	}
	return t
}()

type batchDec struct {
	*wire.Decoder
	bd *BatchDecoder
}

// name returns a name and its known variable (-1 for none).
func (d batchDec) name() (string, int) {
	k := d.Uvarint()
	if k == 0 {
		s := d.bd.str(d.StrBytes())
		if v, ok := varByName[s]; ok {
			return s, int(v)
		}
		return s, -1
	}
	if k > uint64(len(dictionary)) {
		d.Failf("unknown name index %d", k)
		return "", -1
	}
	return dictionary[k-1], int(dictVar[k-1])
}

func (d batchDec) reading(r *Reading) {
	r.Serial = d.bd.serial(d.StrBytes())
	r.Time = time.UnixMilli(d.Varint()).UTC()
	r.Presence = Presence(d.Byte())
	if d.Byte() == 1 {
		r.Status = d.bd.status(d.StrBytes())
		r.HasStatus = true
	}
	n := d.Uvarint()
	if n > uint64(d.Len())/9 {
		d.Failf("truncated metrics")
		return
	}
	if n > 0 {
		ms := d.bd.grabMetrics(int(n))
		for i := range ms {
			name, v := d.name()
			ms[i] = Metric{name, math.Float64frombits(d.U64())}
			if v >= 0 && i < math.MaxUint8 {
				r.idx[v] = uint8(i + 1) // a repeated name: the last wins, as in Reindex
			}
		}
		if d.Err() != nil {
			return
		}
		r.Metrics = ms
	}
	n = d.Uvarint()
	if n > uint64(d.Len())/2 {
		d.Failf("truncated texts")
		return
	}
	if n > 0 {
		ts := d.bd.grabTexts(int(n))
		for i := range ts {
			name, _ := d.name()
			ts[i] = Text{name, d.bd.str(d.StrBytes())}
		}
		if d.Err() == nil {
			r.Texts = ts
		}
	}
}

// grabMetrics returns n metrics from the arena, capped so that appending
// to one reading's Metrics can never overwrite the next reading's. A full
// arena is replaced, not grown: readings already returned keep the old
// one.
func (bd *BatchDecoder) grabMetrics(n int) []Metric {
	if len(bd.metrics)+n > cap(bd.metrics) {
		bd.metrics = make([]Metric, 0, max(2*cap(bd.metrics), n, bd.minArena(1024)))
	}
	i := len(bd.metrics)
	bd.metrics = bd.metrics[:i+n]
	return bd.metrics[i : i+n : i+n]
}

func (bd *BatchDecoder) grabTexts(n int) []Text {
	if len(bd.texts)+n > cap(bd.texts) {
		bd.texts = make([]Text, 0, max(2*cap(bd.texts), n, bd.minArena(256)))
	}
	i := len(bd.texts)
	bd.texts = bd.texts[:i+n]
	return bd.texts[i : i+n : i+n]
}

// minArena is the least arena worth allocating: n for a long-lived
// decoder, nothing more than needed for DecodeBatch's one-shot one.
func (bd *BatchDecoder) minArena(n int) int {
	if bd.serials == nil {
		return 0
	}
	return n
}

// The intern lookups index the maps with string(b), which Go does without
// allocating; only a miss copies b.

func (bd *BatchDecoder) serial(b []byte) Serial {
	if bd.serials == nil {
		return Serial(b)
	}
	if s, ok := bd.serials[string(b)]; ok {
		return s
	}
	if len(bd.serials) >= maxInternedSerials {
		clear(bd.serials)
	}
	s := Serial(b)
	bd.serials[string(s)] = s
	return s
}

func (bd *BatchDecoder) status(b []byte) Status {
	if bd.statuses == nil || len(b) > maxInternedLen {
		return ParseStatus(string(b))
	}
	if st, ok := bd.statuses[string(b)]; ok {
		return st
	}
	if len(bd.statuses) >= maxInternedStrs {
		clear(bd.statuses)
	}
	st := ParseStatus(string(b))
	bd.statuses[st.Raw] = st
	return st
}

func (bd *BatchDecoder) str(b []byte) string {
	if bd.strs == nil || len(b) > maxInternedLen {
		return string(b)
	}
	if s, ok := bd.strs[string(b)]; ok {
		return s
	}
	if len(bd.strs) >= maxInternedStrs {
		clear(bd.strs)
	}
	s := string(b)
	bd.strs[s] = s
	return s
}
