package nut

import (
	"errors"
	"fmt"
	"strings"
)

// The NUT network protocol (docs/net-protocol.txt of NUT) is line based:
// a command is words separated by spaces, a word with spaces or quotes is
// sent between double quotes with \" and \\ escaped; answers use the same
// quoting. A single-line answer is OK..., ERR CODE [detail] or the value
// line (VAR ups name "value"); a list is BEGIN LIST ... lines ... END LIST.

// maxLine bounds one answer line: upsd's own limit is 512 bytes
// (SMALLBUF * 2 in practice); a longer line means a broken peer.
const maxLine = 4096

// quote renders one word of a command.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"\\") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	// Bytes, not runes: a value is passed through as upsd has it, valid
	// UTF-8 or not.
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// command renders a command line (without the newline).
func command(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = quote(w)
	}
	return strings.Join(q, " ")
}

// errSyntax is wrapped by every malformed answer.
var errSyntax = errors.New("nut: malformed answer")

// splitWords parses one answer line into its words, undoing the quoting.
// It never panics, whatever the input (fuzzed).
func splitWords(line string) ([]string, error) {
	var words []string
	i := 0
	for i < len(line) {
		switch line[i] {
		case ' ', '\t':
			i++
			continue
		case '"':
			var b strings.Builder
			i++
			closed := false
			for i < len(line) {
				c := line[i]
				if c == '\\' {
					if i+1 >= len(line) {
						return nil, fmt.Errorf("%w: escape at end of line", errSyntax)
					}
					b.WriteByte(line[i+1])
					i += 2
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("%w: unterminated quote", errSyntax)
			}
			if i < len(line) && line[i] != ' ' && line[i] != '\t' {
				return nil, fmt.Errorf("%w: text right after a closing quote", errSyntax)
			}
			words = append(words, b.String())
		default:
			j := i
			for j < len(line) && line[j] != ' ' && line[j] != '\t' {
				if line[j] == '"' {
					return nil, fmt.Errorf("%w: quote inside a word", errSyntax)
				}
				j++
			}
			words = append(words, line[i:j])
			i = j
		}
	}
	return words, nil
}

// Var is one variable of a UPS as upsd reports it.
type Var struct {
	Name  string
	Value string
}

// parseVarLine parses `VAR <ups> <name> "<value>"` for the given ups.
func parseVarLine(ups, line string) (Var, error) {
	w, err := splitWords(line)
	if err != nil {
		return Var{}, err
	}
	if len(w) != 4 || w[0] != "VAR" {
		return Var{}, fmt.Errorf("%w: want VAR %s NAME \"VALUE\", got %q", errSyntax, ups, truncate(line))
	}
	if w[1] != ups {
		return Var{}, fmt.Errorf("%w: answer for UPS %q, asked for %q", errSyntax, w[1], ups)
	}
	return Var{Name: w[2], Value: w[3]}, nil
}

// parseErr turns `ERR CODE [detail]` into an *Error; ok is false for any
// other line.
func parseErr(cmd, line string) (*Error, bool) {
	if line != "ERR" && !strings.HasPrefix(line, "ERR ") {
		return nil, false
	}
	w, err := splitWords(line)
	if err != nil || len(w) < 2 {
		return &Error{Cmd: cmd, Code: "UNKNOWN", Detail: truncate(line)}, true
	}
	e := &Error{Cmd: cmd, Code: w[1]}
	if len(w) > 2 {
		e.Detail = strings.Join(w[2:], " ")
	}
	return e, true
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// Error is an ERR answer of upsd.
type Error struct {
	Cmd    string // the command's first words, never a password
	Code   string // e.g. DATA-STALE, UNKNOWN-UPS, ACCESS-DENIED
	Detail string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("nut: %s: ERR %s %s", e.Cmd, e.Code, e.Detail)
	}
	return fmt.Sprintf("nut: %s: ERR %s", e.Cmd, e.Code)
}

// Is makes errors.Is(err, ErrDataStale) and friends work.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Cmd == "" && t.Code == e.Code
}

// Sentinels for the ERR codes a client acts on.
var (
	ErrDataStale            = &Error{Code: "DATA-STALE"}
	ErrDriverNotConnected   = &Error{Code: "DRIVER-NOT-CONNECTED"}
	ErrUnknownUPS           = &Error{Code: "UNKNOWN-UPS"}
	ErrVarNotSupported      = &Error{Code: "VAR-NOT-SUPPORTED"}
	ErrAccessDenied         = &Error{Code: "ACCESS-DENIED"}
	ErrFeatureNotConfigured = &Error{Code: "FEATURE-NOT-CONFIGURED"}
	ErrFeatureNotSupported  = &Error{Code: "FEATURE-NOT-SUPPORTED"}
)
