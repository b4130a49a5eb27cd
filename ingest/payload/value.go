package payload

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// valKind is the JSON type of a raw value; upsc values are all strings.
type valKind uint8

const (
	valString valKind = iota
	valNumber
	valTrue
	valFalse
	valNull
)

// maxLinearOthers is how many non-interned names of one reading are
// checked for duplicates by a linear scan before switching to a set.
const maxLinearOthers = 16

// addField validates one variable of the current reading and records it.
// val is the unescaped string, or the number token, or unused for
// literals. It must not be retained: it may point into a scratch buffer.
func (s *state) addField(name []byte, kind valKind, val []byte) error {
	var info nameInfo
	id, interned := nameIdx.lookup(name)
	if interned {
		info = nameList[id]
	}
	if !interned && !validName(name) {
		return s.fail(ReasonMalformed, "invalid variable name %s (want 1 to %d of A-Z a-z 0-9 . _ -)", quote(name), maxNameLen)
	}
	var nameOff int32
	if interned {
		w, bit := info.id/64, uint64(1)<<(info.id%64)
		if s.seen[w]&bit != 0 {
			return s.fail(ReasonMalformed, "duplicate variable %s", quote(name))
		}
		s.seen[w] |= bit
	} else {
		if s.seenOther(name) {
			return s.fail(ReasonMalformed, "duplicate variable %s", quote(name))
		}
		nameOff = s.addOther(name)
	}

	f := field{kind: kindText, nameID: -1, textID: -1}
	if interned {
		f.nameID = int32(info.id)
	} else {
		f.nameOff, f.nameLen = nameOff, int32(len(name))
	}
	textual := info.textual || (!interned && isTextual(name))

	switch kind {
	case valNull:
		return nil // null means absent
	case valTrue:
		f.textID = textTrue
	case valFalse:
		f.textID = textFalse
	case valNumber, valString:
		if textual {
			s.setText(&f, val)
			break
		}
		t := val
		if kind == valString {
			t = trimSpace(val)
			if len(t) == 0 && info.known {
				return nil // NUT's empty value means unknown
			}
			if !isNumeric(t) {
				if isNaNInf(t) {
					return s.fail(ReasonNaNInf, "%s = %s is not a finite number", name, quote(t))
				}
				s.setText(&f, val)
				break
			}
		}
		v, err := parseFloat(t)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return s.fail(ReasonNaNInf, "%s = %s overflows a 64-bit float", name, t)
		}
		if msg := rangeError(info, name, v); msg != "" {
			// Dropped, not rejected: see the package comment.
			s.dropped++
			if r := &s.recs[len(s.recs)-1]; r.dropMsg == "" {
				r.dropMsg = msg
			}
			return nil
		}
		f.kind, f.num = kindNum, v
	}
	s.fields = append(s.fields, f)
	r := &s.recs[len(s.recs)-1]
	switch {
	case f.kind == kindNum:
		r.nMetric++
	case f.nameID != statusID: // goes to Reading.Status, not Texts
		r.nText++
	}
	return nil
}

func (s *state) setText(f *field, val []byte) {
	if id, ok := textIdx.lookup(val); ok {
		f.textID = int32(id)
		return
	}
	f.textOff, f.textLen = int32(len(s.arena)), int32(len(val))
	s.arena = append(s.arena, val...)
}

// seenOther reports whether a non-interned name was already in the
// current reading.
func (s *state) seenOther(name []byte) bool {
	if len(s.others) > maxLinearOthers {
		_, ok := s.othersSet[string(name)]
		return ok
	}
	for _, o := range s.others {
		if bytes.Equal(s.arena[o.off:o.off+o.n], name) {
			return true
		}
	}
	return false
}

// addOther stores a non-interned name in the arena and remembers it for
// the duplicate check, which becomes a set past maxLinearOthers names so
// a hostile payload cannot make it quadratic.
func (s *state) addOther(name []byte) int32 {
	off := int32(len(s.arena))
	s.arena = append(s.arena, name...)
	s.others = append(s.others, span{off, int32(len(name))})
	if len(s.others) > maxLinearOthers {
		if s.othersSet == nil {
			s.othersSet = make(map[string]struct{})
		}
		if len(s.others) == maxLinearOthers+1 {
			for _, o := range s.others[:maxLinearOthers] {
				s.othersSet[string(s.arena[o.off:o.off+o.n])] = struct{}{}
			}
		}
		s.othersSet[string(name)] = struct{}{}
	}
	return off
}

// rangeError describes why v is not a credible value of the variable
// name, or returns "" when it is.
func rangeError(info nameInfo, name []byte, v float64) string {
	if info.known {
		vi := ups.Vars[info.v]
		if v < vi.Min || v > vi.Max {
			return string(name) + " = " + fmtFloat(v) + " is out of range [" +
				fmtFloat(vi.Min) + ", " + fmtFloat(vi.Max) + "]"
		}
		return ""
	}
	if math.Abs(v) > ups.AbsurdLimit {
		return string(name) + " = " + fmtFloat(v) + " is beyond the limit of ±" +
			fmtFloat(ups.AbsurdLimit) + " for any variable"
	}
	return ""
}

// setTime reads a JSON reading's ts: unix milliseconds as a number or a
// numeric string, or an RFC 3339 string.
func (s *state) setTime(kind valKind, val []byte) error {
	r := &s.recs[len(s.recs)-1]
	if r.tsSeen {
		return s.fail(ReasonMalformed, "duplicate variable \"ts\"")
	}
	r.tsSeen = true
	var t time.Time
	switch kind {
	case valNull:
		return nil
	case valNumber, valString:
		v := trimSpace(val)
		if kind == valNumber || isNumeric(v) {
			ms, err := parseFloat(v)
			if err != nil || math.IsInf(ms, 0) {
				return s.fail(ReasonBadTimestamp, "ts %s is not a valid unix time in milliseconds", quote(v))
			}
			var ok bool
			if t, ok = s.msTime(ms); !ok {
				if ms >= float64(minTime.Unix()) && ms < 1e11 {
					return s.fail(ReasonBadTimestamp, "ts %s is before 2000-01-01; it looks like unix seconds, but ts must be unix milliseconds", quote(v))
				}
				return s.fail(ReasonBadTimestamp, "ts %s is not a unix time in milliseconds between 2000-01-01 and %s after receipt", quote(v), s.lim.MaxFuture)
			}
		} else {
			var err error
			t, err = time.Parse(time.RFC3339Nano, string(v))
			if err != nil {
				return s.fail(ReasonBadTimestamp, "ts %s is neither unix milliseconds nor RFC 3339", quote(v))
			}
		}
	default:
		return s.fail(ReasonBadTimestamp, "ts must be unix milliseconds or an RFC 3339 string, not a boolean")
	}
	t = t.UTC()
	if t.Before(s.minTime) {
		return s.fail(ReasonBadTimestamp, "ts %s is before 2000-01-01", t.Format(time.RFC3339Nano))
	}
	if t.After(s.maxTime) {
		return s.fail(ReasonBadTimestamp, "ts %s is more than %s ahead of receipt at %s",
			t.Format(time.RFC3339Nano), s.lim.MaxFuture, s.received.Format(time.RFC3339Nano))
	}
	r.time, r.hasTime = t, true
	return nil
}

// msTime converts unix milliseconds to a time, reporting false when ms is
// outside [2000-01-01, receipt + MaxFuture] (checked on the float first,
// so no conversion overflows).
func (s *state) msTime(ms float64) (time.Time, bool) {
	if ms < float64(s.minTime.UnixMilli()) || ms > float64(s.maxTime.UnixMilli()+1) {
		return time.Time{}, false
	}
	whole := math.Floor(ms)
	t := time.UnixMilli(int64(whole)).Add(time.Duration((ms - whole) * 1e6))
	if t.Before(s.minTime) || t.After(s.maxTime) {
		return time.Time{}, false
	}
	return t, true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// isNumeric reports whether b is a plain decimal number as NUT and JSON
// write them: [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?.
// Hex, underscores, "Inf" and "NaN", which strconv also accepts, are not.
func isNumeric(b []byte) bool {
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	digits := 0
	for i < len(b) && isDigit(b[i]) {
		i++
		digits++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && isDigit(b[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		exp := 0
		for i < len(b) && isDigit(b[i]) {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isNaNInf reports whether b spells a NaN or an infinity the way strconv
// or other languages print them ("NaN", "+Inf", "-infinity").
func isNaNInf(b []byte) bool {
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		b = b[1:]
	}
	return bytes.EqualFold(b, []byte("nan")) || bytes.EqualFold(b, []byte("inf")) ||
		bytes.EqualFold(b, []byte("infinity"))
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseFloat parses a number isNumeric accepted. Most telemetry values
// ("230.5", "100", "27.40") have few digits and no exponent: then the
// mantissa and the power of ten are exact floats and one division is
// correctly rounded (Clinger's fast path), several times faster than
// strconv. Anything else goes to strconv.ParseFloat.
func parseFloat(b []byte) (float64, error) {
	i, neg := 0, false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		i++
	}
	var mant uint64
	frac := 0
	dot := false
	for ; i < len(b); i++ {
		c := b[i]
		if c == '.' {
			dot = true
			continue
		}
		if !isDigit(c) || mant >= 1e15 {
			return parseSlow(b)
		}
		mant = mant*10 + uint64(c-'0')
		if dot {
			frac++
		}
	}
	if frac >= len(pow10) {
		return parseSlow(b)
	}
	v := float64(mant) / pow10[frac]
	if neg {
		v = -v
	}
	return v, nil
}

func parseSlow(b []byte) (float64, error) {
	v, err := strconv.ParseFloat(string(b), 64)
	if errors.Is(err, strconv.ErrRange) && v == 0 {
		// Underflow: strconv reports a range error but the nearest
		// float, zero, is the right reading of a tiny value.
		return v, nil
	}
	return v, err
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// quote quotes b for an error message, cut to a readable length.
func quote(b []byte) string {
	const max = 40
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}
