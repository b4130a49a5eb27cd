package payload

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// decodeUpsc reads upsc output: one "name: value" per line. Blank lines
// and lines starting with '#' are skipped, and an inline comment (white
// space, then '#' to the end of the line) is stripped: real dumps carry
// such notes ("ups.status: OL OB\t#BAD: ..."). "name:" alone is the empty
// value upsc prints for an unset variable. There is no ts: the reading is
// timed at receipt, and a "ts" line is an ordinary variable.
func (s *state) decodeUpsc(p []byte) error {
	if !utf8.Valid(p) {
		return &Error{Reason: ReasonMalformed, Index: -1, Msg: "upsc text is not valid UTF-8"}
	}
	if err := s.beginReading(-1); err != nil {
		return err
	}
	for lineNo := 1; len(p) > 0; lineNo++ {
		var line []byte
		if nl := bytes.IndexByte(p, '\n'); nl >= 0 {
			line, p = p[:nl], p[nl+1:]
		} else {
			line, p = p, nil
		}
		line = trimLine(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		line = stripComment(line)
		if i := indexControl(line); i >= 0 {
			return s.fail(ReasonMalformed, "line %d: control character %q", lineNo, line[i])
		}
		var name, val []byte
		if k := bytes.Index(line, []byte(": ")); k >= 0 {
			name, val = line[:k], trimSpace(line[k+2:])
		} else if line[len(line)-1] == ':' {
			name = line[:len(line)-1]
		} else {
			return s.fail(ReasonMalformed, "line %d: %s is not a \"name: value\" pair", lineNo, quote(line))
		}
		err := s.countField()
		if err == nil {
			err = s.addField(name, valString, val)
		}
		if err != nil {
			if e := (*Error)(nil); errors.As(err, &e) {
				e.Msg = fmt.Sprintf("line %d: %s", lineNo, e.Msg)
			}
			return err
		}
	}
	return s.endReading()
}

func trimLine(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// stripComment cuts line at the first '#' that follows white space. A
// '#' inside a word ("Rack#3") is kept.
func stripComment(line []byte) []byte {
	for off := 0; ; {
		k := bytes.IndexByte(line[off:], '#')
		if k < 0 {
			return line
		}
		i := off + k
		if i > 0 && (line[i-1] == ' ' || line[i-1] == '\t') {
			return trimLine(line[:i])
		}
		off = i + 1
	}
}

// indexControl returns the index of the first ASCII control character
// other than tab in b, or -1.
func indexControl(b []byte) int {
	for i, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return i
		}
	}
	return -1
}
