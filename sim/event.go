package sim

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// EventKind is a scripted power event.
type EventKind uint8

const (
	// Outage: mains fails. The unit runs on battery (OB DISCHRG),
	// input.voltage and input.frequency read 0, the charge drains with the
	// load, and LB appears once it falls to battery.charge.low (or the
	// runtime to battery.runtime.low). On restore it reports OL CHRG and
	// recharges.
	Outage EventKind = iota + 1
	// LowBattery: an outage on a battery that is nearly flat. The charge
	// drops to battery.charge.low at once, so LB shows from the first
	// reading of the event instead of after a full drain.
	LowBattery
	// Overload: the load rises above 100 % and the status carries OVER.
	Overload
	// Flicker: a 2-second outage, the blip a UPS rides through.
	Flicker
	// CommLoss: the unit's network link dies. Its TCP connection is dropped
	// without an MQTT DISCONNECT, so the broker publishes its last will
	// (offline) and the unit sends nothing until the event ends; then it
	// reconnects and says online again.
	CommLoss
)

// FlickerDuration is how long a Flicker event keeps the unit on battery.
const FlickerDuration = 2 * time.Second

var kindNames = map[EventKind]string{
	Outage:     "outage",
	LowBattery: "lowbattery",
	Overload:   "overload",
	Flicker:    "flicker",
	CommLoss:   "commloss",
}

// kindAliases are the spellings ParseEvent accepts besides the canonical
// names above.
var kindAliases = map[string]EventKind{
	"outage":      Outage,
	"blackout":    Outage, // an outage of a whole site: blackout@30s+5m:site=hq
	"lowbattery":  LowBattery,
	"low-battery": LowBattery,
	"lb":          LowBattery,
	"overload":    Overload,
	"flicker":     Flicker,
	"commloss":    CommLoss,
	"comm-loss":   CommLoss,
}

func (k EventKind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is a scripted power event applied to some or all units.
type Event struct {
	Kind EventKind
	// At is the offset from the start of publishing (after all units have
	// connected).
	At time.Duration
	// For is how long the event lasts; 0 means until the run ends. A
	// Flicker always lasts FlickerDuration.
	For time.Duration
	// Units the event applies to; empty means all (of Site, when set).
	Units []ups.Serial
	// Site, when set, limits the event to the units of that site (an
	// area blackout).
	Site string
}

// ErrBadEvent is returned (wrapped) by ParseEvent and New for an event that
// cannot be used.
var ErrBadEvent = errors.New("invalid event")

// ParseEvent parses the command-line syntax of an event:
//
//	kind@at[+for][:serial[,serial...]]
//	kind@at[+for]:site=NAME
//
// kind is outage, lowbattery (or low-battery, lb), overload, flicker or
// commloss (or comm-loss); at and for are Go durations (30s, 1m30s, 2h).
// Without +for the event lasts until the run ends, except flicker, which
// always lasts 2s and takes no +for. Without serials it applies to every
// unit; site=NAME applies it to the units of a site (blackout is outage by
// another name, for that use). Examples:
//
//	outage@30s+10m
//	blackout@30s+5m:site=hq
//	overload@0s+2m:123456789012
//	commloss@1m+30s:123456789012,1234567890123456
//	flicker@45s
func ParseEvent(s string) (Event, error) {
	var ev Event
	kind, rest, ok := strings.Cut(s, "@")
	if !ok {
		return ev, fmt.Errorf("%w %q: want kind@at[+for][:serials]", ErrBadEvent, s)
	}
	k, ok := kindAliases[strings.ToLower(strings.TrimSpace(kind))]
	if !ok {
		return ev, fmt.Errorf("%w %q: unknown kind %q (want outage, lowbattery, overload, flicker or commloss)", ErrBadEvent, s, kind)
	}
	ev.Kind = k
	timing, serials, hasSerials := strings.Cut(rest, ":")
	at, dur, hasFor := strings.Cut(timing, "+")
	var err error
	if ev.At, err = time.ParseDuration(at); err != nil {
		return Event{}, fmt.Errorf("%w %q: start offset: %w", ErrBadEvent, s, err)
	}
	if hasFor {
		if k == Flicker {
			return Event{}, fmt.Errorf("%w %q: a flicker lasts %v and takes no +duration", ErrBadEvent, s, FlickerDuration)
		}
		if ev.For, err = time.ParseDuration(dur); err != nil {
			return Event{}, fmt.Errorf("%w %q: duration: %w", ErrBadEvent, s, err)
		}
		if ev.For <= 0 {
			return Event{}, fmt.Errorf("%w %q: duration must be positive", ErrBadEvent, s)
		}
	}
	if k == Flicker {
		ev.For = FlickerDuration
	}
	if site, ok := strings.CutPrefix(serials, "site="); hasSerials && ok {
		if ev.Site = strings.TrimSpace(site); ev.Site == "" {
			return Event{}, fmt.Errorf("%w %q: site= needs a site name", ErrBadEvent, s)
		}
	} else if hasSerials {
		for f := range strings.SplitSeq(serials, ",") {
			sn, err := ups.ParseSerial(strings.TrimSpace(f))
			if err != nil {
				return Event{}, fmt.Errorf("%w %q: %w", ErrBadEvent, s, err)
			}
			ev.Units = append(ev.Units, sn)
		}
	}
	if err := ev.validate(); err != nil {
		return Event{}, fmt.Errorf("%w %q: %s", ErrBadEvent, s, err.Error())
	}
	return ev, nil
}

// validate checks what ParseEvent cannot express wrongly but a Config
// built in code can.
func (e Event) validate() error {
	if _, ok := kindNames[e.Kind]; !ok {
		return fmt.Errorf("unknown kind %d", e.Kind)
	}
	if e.At < 0 {
		return errors.New("start offset must not be negative")
	}
	if e.For < 0 {
		return errors.New("duration must not be negative")
	}
	return nil
}

// String formats e in the syntax ParseEvent reads.
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	b.WriteByte('@')
	b.WriteString(e.At.String())
	if e.For > 0 && e.Kind != Flicker {
		b.WriteByte('+')
		b.WriteString(e.For.String())
	}
	if e.Site != "" {
		b.WriteString(":site=")
		b.WriteString(e.Site)
	}
	for i, u := range e.Units {
		if i == 0 {
			b.WriteByte(':')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(string(u))
	}
	return b.String()
}

// activeAt reports whether the event is in force at offset t.
func (e *Event) activeAt(t time.Duration) bool {
	return t >= e.At && (e.For == 0 || t < e.At+e.For)
}

// appliesTo reports whether the event concerns the unit.
func (e *Event) appliesTo(u Unit) bool {
	if e.Site != "" && u.Site != e.Site {
		return false
	}
	s := u.Serial
	if len(e.Units) == 0 {
		return true
	}
	for _, u := range e.Units {
		if u == s {
			return true
		}
	}
	return false
}
