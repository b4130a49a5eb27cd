package ups

import "strings"

// Flag is one token of NUT's ups.status variable.
type Flag uint32

// The ups.status tokens NUT defines. Unknown tokens are kept in
// Status.Raw but have no flag.
const (
	OL      Flag = 1 << iota // on line (mains present)
	OB                       // on battery
	LB                       // low battery
	HB                       // high battery
	RB                       // replace battery
	CHRG                     // charging
	DISCHRG                  // discharging
	BYPASS                   // on bypass
	CAL                      // runtime calibration
	OFF                      // output off
	OVER                     // overloaded
	TRIM                     // trimming high input voltage
	BOOST                    // boosting low input voltage
	FSD                      // forced shutdown
	ALARM                    // alarm (see ups.alarm)
	TEST                     // self-test running
)

var flagNames = [...]string{"OL", "OB", "LB", "HB", "RB", "CHRG", "DISCHRG",
	"BYPASS", "CAL", "OFF", "OVER", "TRIM", "BOOST", "FSD", "ALARM", "TEST"}

func (f Flag) String() string {
	var b strings.Builder
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// Status is a parsed ups.status: the known flags plus the raw text, which
// keeps tokens upswatch does not know.
type Status struct {
	Flags Flag
	Raw   string
}

// Has reports whether all of f are set.
func (s Status) Has(f Flag) bool { return s.Flags&f == f }

// Any reports whether any of f is set.
func (s Status) Any(f Flag) bool { return s.Flags&f != 0 }

// ParseStatus parses the space separated tokens of ups.status. Tokens are
// matched case-sensitively, as NUT emits them; unknown tokens are ignored
// (they remain in Raw).
func ParseStatus(raw string) Status {
	s := Status{Raw: raw}
	for tok := range strings.FieldsSeq(raw) {
		s.Flags |= flagOf(tok)
	}
	return s
}

func flagOf(tok string) Flag {
	for i, n := range flagNames {
		if n == tok {
			return 1 << i
		}
	}
	return 0
}
