package nut

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
		bad  bool
	}{
		{line: `VAR ups1 ups.status "OL CHRG"`, want: []string{"VAR", "ups1", "ups.status", "OL CHRG"}},
		{line: `VAR ups1 ups.mfr "A \"B\" \\ C"`, want: []string{"VAR", "ups1", "ups.mfr", `A "B" \ C`}},
		{line: `VAR ups1 x ""`, want: []string{"VAR", "ups1", "x", ""}},
		{line: "OK", want: []string{"OK"}},
		{line: "  a\t b  ", want: []string{"a", "b"}},
		{line: `VAR u x "open`, bad: true},
		{line: `VAR u x "a"b`, bad: true},
		{line: `VAR u x a"b`, bad: true},
		{line: `VAR u x "a\`, bad: true},
	} {
		got, err := splitWords(tc.line)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted as %q", tc.line, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q = %q, %v; want %q", tc.line, got, err, tc.want)
		}
	}
}

func TestParseErr(t *testing.T) {
	for _, tc := range []struct {
		line string
		want error
		ok   bool
	}{
		{"ERR DATA-STALE", ErrDataStale, true},
		{"ERR UNKNOWN-UPS", ErrUnknownUPS, true},
		{"ERR ACCESS-DENIED extra words", ErrAccessDenied, true},
		{"ERRATIC", nil, false},
		{"OK", nil, false},
	} {
		e, ok := parseErr("LIST VAR u", tc.line)
		if ok != tc.ok {
			t.Errorf("%q: ok = %v", tc.line, ok)
			continue
		}
		if ok && !errors.Is(e, tc.want) {
			t.Errorf("%q = %v, want %v", tc.line, e, tc.want)
		}
	}
	if errors.Is(&Error{Code: "DATA-STALE"}, ErrUnknownUPS) {
		t.Error("different codes match")
	}
}

// Quoting a word and parsing it back gives the word.
func FuzzSplitWords(f *testing.F) {
	for _, s := range []string{`VAR ups1 ups.status "OL CHRG"`, `"a\"b"`, `x "" y`, "\"\\", "BEGIN LIST VAR u", "ERR DATA-STALE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		words, err := splitWords(line)
		if err != nil {
			return
		}
		// Round trip: rendering the words and parsing again is stable.
		back, err := splitWords(command(words...))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", command(words...), err)
		}
		if !slices.Equal(back, words) && !(len(words) == 0 && len(back) == 0) {
			t.Fatalf("round trip %q -> %q -> %q", line, words, back)
		}
		_, _ = parseVarLine("ups1", line)
		_, _ = parseErr("X", line)
		for _, w := range words {
			if strings.ContainsRune(line, '"') {
				continue
			}
			if strings.ContainsAny(w, " \t") {
				t.Fatalf("unquoted word %q has a space", w)
			}
		}
	})
}
