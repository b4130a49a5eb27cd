package battery

import (
	"strings"
	"time"
)

// DateVerdict says what a date variable (battery.date, battery.mfr.date,
// battery.date.maintenance) held.
type DateVerdict uint8

// Date verdicts. Only DateOK carries a usable date.
const (
	DateOK DateVerdict = iota
	// DateEmpty: no value, or only blanks.
	DateEmpty
	// DatePlaceholder: a word where a date belongs ("not set", "CPS",
	// a maker's name, "?").
	DatePlaceholder
	// DateFactoryDefault: a date the firmware ships with rather than the
	// day a battery went in (APC's 2001/09/25).
	DateFactoryDefault
	// DateImpossible: date-shaped but no calendar day (month 0, day 36).
	DateImpossible
	// DateFuture: a valid day after now (plus a day of clock slack).
	DateFuture
	// DateTooOld: before 1985, older than any VRLA battery still in
	// service and older than the UPS protocols that report it.
	DateTooOld
	// DateUnrecognised: neither YYYY/MM/DD nor MM/DD/YY(YY).
	DateUnrecognised
	numVerdicts
)

var verdictNames = [numVerdicts]string{"ok", "empty", "placeholder", "factory_default",
	"impossible", "future", "too_old", "unrecognised"}

func (v DateVerdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "invalid"
}

// factoryDefaults are dates firmware reports when nobody set one. APC's
// network cards and Smart-UPS ship with 2001/09/25 (their firmware's
// build date), reported by units whose batteries are years younger.
var factoryDefaults = []civil{{2001, 9, 25}}

// minYear bounds plausible battery dates from below.
const minYear = 1985

type civil struct{ y, m, d int }

// ParseDate normalises a NUT battery date. Accepted shapes are
// YYYY/MM/DD (also with '-' or '.', the ISO form NUT prefers "when
// possible") and the US MM/DD/YY or MM/DD/YYYY that APC's and older
// drivers print; a two-digit year below 70 is 20YY, else 19YY. The result
// is midnight UTC of that day. Anything else, and any date after now,
// is rejected with the reason.
func ParseDate(s string, now time.Time) (time.Time, DateVerdict) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, DateEmpty
	}
	parts, ok := splitDate(s)
	if !ok {
		if hasDigit(s) {
			return time.Time{}, DateUnrecognised
		}
		return time.Time{}, DatePlaceholder
	}
	var c civil
	switch {
	case len(parts[0]) == 4 && len(parts[1]) <= 3 && len(parts[2]) <= 3:
		c = civil{atoi(parts[0]), atoi(parts[1]), atoi(parts[2])}
	case len(parts[0]) <= 2 && len(parts[1]) <= 2 && (len(parts[2]) == 2 || len(parts[2]) == 4):
		y := atoi(parts[2])
		if len(parts[2]) == 2 {
			if y < 70 {
				y += 2000
			} else {
				y += 1900
			}
		}
		c = civil{y, atoi(parts[0]), atoi(parts[1])}
	default:
		return time.Time{}, DateUnrecognised
	}
	if c.m < 1 || c.m > 12 || c.d < 1 || c.d > daysIn(c.y, c.m) {
		return time.Time{}, DateImpossible
	}
	for _, f := range factoryDefaults {
		if c == f {
			return time.Time{}, DateFactoryDefault
		}
	}
	t := time.Date(c.y, time.Month(c.m), c.d, 0, 0, 0, 0, time.UTC)
	if t.After(now.Add(24 * time.Hour)) {
		return time.Time{}, DateFuture
	}
	if c.y < minYear {
		return time.Time{}, DateTooOld
	}
	return t, DateOK
}

// splitDate splits "a/b/c" (or with '-' or '.') into three all-digit
// fields of at most 4 digits each.
func splitDate(s string) ([3]string, bool) {
	var out [3]string
	sep := byte(0)
	n, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			c := s[i]
			if c >= '0' && c <= '9' {
				continue
			}
			if c != '/' && c != '-' && c != '.' {
				return out, false
			}
			if sep == 0 {
				sep = c
			} else if c != sep {
				return out, false
			}
		}
		if n == 3 || i == start || i-start > 4 {
			return out, false
		}
		out[n] = s[start:i]
		n++
		start = i + 1
	}
	return out, n == 3
}

func hasDigit(s string) bool {
	return strings.ContainsAny(s, "0123456789")
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
