package sim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Dump is what `upsc` printed for one UPS: its variables in order.
type Dump struct {
	// Name identifies the dump in logs and errors (its file name).
	Name string
	Vars []DumpVar
}

// DumpVar is one `name: value` line of a dump.
type DumpVar struct {
	Name, Value string
}

// ErrBadDump is returned (wrapped) for a dump that holds no variables.
var ErrBadDump = errors.New("invalid upsc dump")

// maxDumpSize bounds what ReadDump accepts: real dumps are a few
// kilobytes, so anything larger is the wrong file.
const maxDumpSize = 1 << 20

// ReadDump reads a dump file: `upsc` output, or a NUT device dump library
// (.dev) file, which is upsc output with comments.
func ReadDump(path string) (Dump, error) {
	f, err := os.Open(path)
	if err != nil {
		return Dump{}, fmt.Errorf("read dump: %w", err)
	}
	defer f.Close()
	d, err := ParseDump(io.LimitReader(f, maxDumpSize+1))
	if err != nil {
		return Dump{}, fmt.Errorf("read dump %s: %w", path, err)
	}
	d.Name = path
	return d, nil
}

// ParseDump parses `name: value` lines. Blank lines and lines starting
// with '#' are skipped; so is a trailing annotation (whitespace then '#',
// as the NUT device dump library marks bogus values), since upsc itself
// never prints one. Lines without ": " are skipped too (NUT prints an
// "Init SSL without certificate database" banner on stderr that a careless
// redirect mixes in). A repeated name keeps its first value.
func ParseDump(r io.Reader) (Dump, error) {
	var d Dump
	seen := make(map[string]bool)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxDumpSize)
	size := 0
	for sc.Scan() {
		line := sc.Bytes()
		size += len(line) + 1
		if size > maxDumpSize {
			return Dump{}, fmt.Errorf("%w: larger than %d bytes", ErrBadDump, maxDumpSize)
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok || strings.ContainsAny(name, " \t") || name == "" {
			continue
		}
		if i := annotation(value); i >= 0 {
			value = value[:i]
		}
		value = strings.TrimSpace(value)
		if seen[name] {
			continue
		}
		seen[name] = true
		d.Vars = append(d.Vars, DumpVar{name, value})
	}
	if err := sc.Err(); err != nil {
		return Dump{}, fmt.Errorf("%w: %w", ErrBadDump, err)
	}
	if len(d.Vars) == 0 {
		return Dump{}, fmt.Errorf("%w: no name: value lines", ErrBadDump)
	}
	return d, nil
}

// annotation returns the index of a whitespace-then-'#' comment in a
// value, or -1.
func annotation(v string) int {
	for i := 1; i < len(v); i++ {
		if v[i] == '#' && (v[i-1] == ' ' || v[i-1] == '\t') {
			return i - 1
		}
	}
	return -1
}

// Get returns the value of a variable.
func (d *Dump) Get(name string) (string, bool) {
	for _, v := range d.Vars {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}
