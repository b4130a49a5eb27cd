package influx

import (
	"math"
	"strconv"
	"strings"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// Schema. One reading becomes up to two points with the same tag and
// timestamp, so a rewrite of the reading replaces them (InfluxDB keys a
// point by measurement, tag set and time): idempotent by construction.
const (
	// measReading holds the numeric NUT variables (field key = variable
	// name, float) and "status" (string, ups.status verbatim).
	measReading = "ups_reading"
	// measText holds the other text variables (ups.alarm,
	// ups.test.result, device.model...). They live apart from the numbers
	// so a Flux aggregate over ups_reading never meets a string it
	// cannot average.
	measText = "ups_text"
	// measPresence holds link state changes: field "state",
	// "online"/"offline".
	measPresence = "ups_presence"

	tagSerial   = "serial"
	fieldStatus = "status"
	fieldState  = "state"
	// fieldNoTexts is the ups_text point of a unit whose reading carries
	// no text variable any more (a point needs a field): Latest then
	// shows none. NUT names never start with '_'.
	fieldNoTexts = "_none"
)

// InfluxDB stores nanoseconds since the epoch in an int64; a time outside
// this range cannot be written.
var (
	minTime = store.MinTime
	maxTime = store.MaxTime
)

// encoder appends readings as line protocol with millisecond timestamps.
// Building the bytes directly costs a fraction of write.NewPoint's
// allocations (see BenchmarkEncode): the encoder is reused across
// batches and allocates nothing per reading once its buffer has grown.
type encoder struct {
	buf  []byte
	ends []int // ends[i]: offset just past line i's '\n'
	drop func(reason string, n int)
	// texts: the text sets this write decided on, per unit (textCache).
	texts map[ups.Serial]textMark
}

func (e *encoder) reset() {
	e.buf = e.buf[:0]
	e.ends = e.ends[:0]
}

// points is the number of lines encoded since reset.
func (e *encoder) points() int { return len(e.ends) }

// line returns line i without its '\n'.
func (e *encoder) line(i int) []byte {
	start := 0
	if i > 0 {
		start = e.ends[i-1]
	}
	return e.buf[start : e.ends[i]-1]
}

// appendReading encodes r, dropping (and counting) what no InfluxDB
// would accept: a bad serial or time drops the reading, a NaN, an
// infinity or a bad name drops one value. Its texts (the ups_text point)
// are written only when texts is set: the store leaves out texts that
// did not change since the unit's last text point (see textCache).
func (e *encoder) appendReading(r *ups.Reading, texts bool) {
	if !ups.ValidSerial(string(r.Serial)) {
		e.drop(reasonBadSerial, 1)
		return
	}
	if r.Time.Before(minTime) || r.Time.After(maxTime) {
		e.drop(reasonBadTime, 1)
		return
	}
	ts := r.Time.UnixMilli()
	switch r.Presence {
	case ups.PresenceNone:
	case ups.PresenceOnline, ups.PresenceOffline:
		e.begin(measPresence, r.Serial)
		e.buf = append(e.buf, fieldState+`="`...)
		e.buf = append(e.buf, r.Presence.String()...)
		e.buf = append(e.buf, '"')
		e.end(ts)
		return
	default:
		e.drop(reasonOther, 1)
		return
	}

	mark := len(e.buf)
	e.begin(measReading, r.Serial)
	fieldsStart := len(e.buf)
	for _, m := range r.Metrics {
		if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
			e.drop(reasonNonFinite, 1)
			continue
		}
		if !validName(m.Name) {
			e.drop(reasonBadName, 1)
			continue
		}
		e.comma(fieldsStart)
		e.buf = appendKey(e.buf, m.Name)
		e.buf = append(e.buf, '=')
		e.buf = strconv.AppendFloat(e.buf, m.Value, 'g', -1, 64)
	}
	if r.HasStatus {
		e.comma(fieldsStart)
		e.buf = append(e.buf, fieldStatus+"="...)
		e.buf = appendString(e.buf, r.Status.Raw)
	}
	if len(e.buf) == fieldsStart {
		e.buf = e.buf[:mark] // no fields: a point needs at least one
	} else {
		e.end(ts)
	}
	if !texts {
		return
	}

	mark = len(e.buf)
	e.begin(measText, r.Serial)
	fieldsStart = len(e.buf)
	for _, t := range r.Texts {
		if !validName(t.Name) {
			e.drop(reasonBadName, 1)
			continue
		}
		e.comma(fieldsStart)
		e.buf = appendKey(e.buf, t.Name)
		e.buf = append(e.buf, '=')
		e.buf = appendString(e.buf, t.Value)
	}
	if len(e.buf) == fieldsStart {
		if len(r.Texts) > 0 {
			e.buf = e.buf[:mark] // every text dropped: write nothing
			return
		}
		e.buf = append(e.buf, fieldNoTexts+"=true"...)
	}
	e.end(ts)
}

// begin appends "measurement,serial=S ". A valid serial is digits only:
// nothing to escape.
func (e *encoder) begin(meas string, s ups.Serial) {
	e.buf = append(e.buf, meas...)
	e.buf = append(e.buf, ","+tagSerial+"="...)
	e.buf = append(e.buf, s...)
	e.buf = append(e.buf, ' ')
}

func (e *encoder) comma(fieldsStart int) {
	if len(e.buf) > fieldsStart {
		e.buf = append(e.buf, ',')
	}
}

func (e *encoder) end(ts int64) {
	e.buf = append(e.buf, ' ')
	e.buf = strconv.AppendInt(e.buf, ts, 10)
	e.buf = append(e.buf, '\n')
	e.ends = append(e.ends, len(e.buf))
}

// validName: line protocol cannot carry a newline in a key, and a
// backslash before the escaped '=' would change its meaning. NUT names
// have neither.
func validName(s string) bool {
	return s != "" && !strings.ContainsAny(s, "\n\r\\")
}

// appendKey escapes a field key: commas, equals signs and spaces.
func appendKey(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ',', '=', ' ':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendString appends a quoted string field value, escaping quotes and
// backslashes.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
