package payload

import (
	"bytes"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON forms of the contract are a flat object of scalars or an array
// of such objects. This scanner reads exactly that subset of RFC 8259 in
// one pass, with no tree and no reflection: a key is looked up in the
// name table while its bytes are still in the payload, and a value goes
// straight to its validation. Strings must be valid UTF-8; lone UTF-16
// surrogates in \u escapes become U+FFFD, as encoding/json does. The fuzz
// test checks the scanner against encoding/json.

// decodeJSON reads the object or array starting at p[i].
func (s *state) decodeJSON(p []byte, i int, array bool) error {
	var err error
	if !array {
		if err = s.beginReading(-1); err != nil {
			return err
		}
		if i, err = s.object(p, i); err != nil {
			return err
		}
		if err = s.endReading(); err != nil {
			return err
		}
		return s.trailing(p, i)
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == ']' {
		if err = s.trailing(p, i+1); err != nil {
			return err
		}
		return &Error{Reason: ReasonEmpty, Index: -1, Msg: "array holds no readings"}
	}
	for n := 0; ; n++ {
		if err = s.beginReading(n); err != nil {
			return err
		}
		if i >= len(p) || p[i] != '{' {
			return s.fail(ReasonMalformed, "array element is not a JSON object (%s)", s.near(p, i))
		}
		if i, err = s.object(p, i); err != nil {
			return err
		}
		if err = s.endReading(); err != nil {
			return err
		}
		i = skipSpace(p, i)
		if i < len(p) && p[i] == ',' {
			i = skipSpace(p, i+1)
			continue
		}
		if i < len(p) && p[i] == ']' {
			return s.trailing(p, i+1)
		}
		return s.fail(ReasonMalformed, "expected ',' or ']' after the reading (%s)", s.near(p, i))
	}
}

// trailing rejects anything but white space after the top-level value.
func (s *state) trailing(p []byte, i int) error {
	i = skipSpace(p, i)
	if i != len(p) {
		return &Error{Reason: ReasonMalformed, Index: -1,
			Msg: "unexpected data after the JSON value (" + s.near(p, i) + ")"}
	}
	return nil
}

// near describes the input at p[i] for an error message.
func (s *state) near(p []byte, i int) string {
	if i >= len(p) {
		return "at end of input"
	}
	end := min(i+20, len(p))
	return "at byte " + strconv.Itoa(i) + ": " + quote(p[i:end])
}

// object reads the object starting at p[i] == '{' into the current
// reading and returns the index after its '}'.
func (s *state) object(p []byte, i int) (int, error) {
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(p) || p[i] != '"' {
			return i, s.fail(ReasonMalformed, "expected a string key (%s)", s.near(p, i))
		}
		key, j, err := s.str(p, i, &s.keyBuf)
		if err != nil {
			return j, err
		}
		i = skipSpace(p, j)
		if i >= len(p) || p[i] != ':' {
			return i, s.fail(ReasonMalformed, "expected ':' after key %s (%s)", quote(key), s.near(p, i))
		}
		i = skipSpace(p, i+1)
		if err := s.countField(); err != nil {
			return i, err
		}
		var kind valKind
		var val []byte
		if i >= len(p) {
			return i, s.fail(ReasonMalformed, "missing value of %s (at end of input)", quote(key))
		}
		switch c := p[i]; {
		case c == '"':
			kind = valString
			if val, i, err = s.str(p, i, &s.valBuf); err != nil {
				return i, err
			}
		case c == '-' || isDigit(c):
			kind = valNumber
			if val, i, err = s.number(p, i); err != nil {
				return i, err
			}
		case c == 't' && bytes.HasPrefix(p[i:], []byte("true")):
			kind, i = valTrue, i+4
		case c == 'f' && bytes.HasPrefix(p[i:], []byte("false")):
			kind, i = valFalse, i+5
		case c == 'n' && bytes.HasPrefix(p[i:], []byte("null")):
			kind, i = valNull, i+4
		case c == '{' || c == '[':
			return i, s.fail(ReasonMalformed, "%s holds a nested object or array; values must be numbers, strings, booleans or null", quote(key))
		default:
			return i, s.fail(ReasonMalformed, "invalid value of %s (%s)", quote(key), s.near(p, i))
		}
		if string(key) == "ts" {
			err = s.setTime(kind, val)
		} else {
			err = s.addField(key, kind, val)
		}
		if err != nil {
			return i, err
		}
		i = skipSpace(p, i)
		if i < len(p) && p[i] == ',' {
			i = skipSpace(p, i+1)
			continue
		}
		if i < len(p) && p[i] == '}' {
			return i + 1, nil
		}
		return i, s.fail(ReasonMalformed, "expected ',' or '}' after %s (%s)", quote(key), s.near(p, i))
	}
}

// str reads the string starting at p[i] == '"' and returns its unescaped
// bytes (in p when it holds no escape, else in *buf) and the index after
// the closing quote.
func (s *state) str(p []byte, i int, buf *[]byte) ([]byte, int, error) {
	j := i + 1
	for j < len(p) {
		c := p[j]
		if c == '"' {
			return p[i+1 : j], j + 1, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		j++
	}
	b := append((*buf)[:0], p[i+1:j]...)
	for j < len(p) {
		c := p[j]
		switch {
		case c == '"':
			*buf = b
			return b, j + 1, nil
		case c < 0x20:
			return nil, j, s.fail(ReasonMalformed, "control character in a string at byte %d", j)
		case c < utf8.RuneSelf && c != '\\':
			b = append(b, c)
			j++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(p[j:])
			if r == utf8.RuneError && n == 1 {
				return nil, j, s.fail(ReasonMalformed, "invalid UTF-8 in a string at byte %d", j)
			}
			b = append(b, p[j:j+n]...)
			j += n
		default: // backslash
			if j+1 >= len(p) {
				return nil, j, s.fail(ReasonMalformed, "unterminated string")
			}
			e := p[j+1]
			j += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := hex4(p, j)
				if !ok {
					return nil, j, s.fail(ReasonMalformed, "invalid \\u escape at byte %d", j-2)
				}
				j += 4
				if utf16.IsSurrogate(r) {
					r2, ok2 := rune(0), false
					if j+6 <= len(p) && p[j] == '\\' && p[j+1] == 'u' {
						r2, ok2 = hex4(p, j+2)
					}
					if d := utf16.DecodeRune(r, r2); ok2 && d != utf8.RuneError {
						r = d
						j += 6
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				return nil, j, s.fail(ReasonMalformed, "invalid escape \\%c in a string", e)
			}
		}
	}
	return nil, j, s.fail(ReasonMalformed, "unterminated string")
}

func hex4(p []byte, i int) (rune, bool) {
	if i+4 > len(p) {
		return 0, false
	}
	var r rune
	for _, c := range p[i : i+4] {
		switch {
		case isDigit(c):
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads a JSON number token at p[i]:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (s *state) number(p []byte, i int) ([]byte, int, error) {
	j := i
	if p[j] == '-' {
		j++
	}
	switch {
	case j < len(p) && p[j] == '0':
		j++
	case j < len(p) && p[j] >= '1' && p[j] <= '9':
		for j < len(p) && isDigit(p[j]) {
			j++
		}
	default:
		return nil, j, s.fail(ReasonMalformed, "invalid number (%s)", s.near(p, i))
	}
	if j < len(p) && p[j] == '.' {
		j++
		k := j
		for j < len(p) && isDigit(p[j]) {
			j++
		}
		if j == k {
			return nil, j, s.fail(ReasonMalformed, "invalid number (%s)", s.near(p, i))
		}
	}
	if j < len(p) && (p[j] == 'e' || p[j] == 'E') {
		j++
		if j < len(p) && (p[j] == '+' || p[j] == '-') {
			j++
		}
		k := j
		for j < len(p) && isDigit(p[j]) {
			j++
		}
		if j == k {
			return nil, j, s.fail(ReasonMalformed, "invalid number (%s)", s.near(p, i))
		}
	}
	return p[i:j], j, nil
}
