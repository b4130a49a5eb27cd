// Package battery follows each unit's battery through its life: how old
// it is (by the best date known, weighted by temperature), how its
// self-tests went, and how its runtime compares with when it was new.
// It raises battery alerts as rules.Event, so they travel the ALERTS
// stream and reach recipients like any other alert.
//
// Unit holds one unit's state and is pure: Observe(reading) updates it
// and returns events, with no clock (time is the readings') and no I/O.
// Tracker (tracker.go) feeds it from the bus and keeps the states in a
// KV bucket; Store (store.go) answers the API from that bucket.
package battery

import (
	"fmt"
	"time"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// Alert rules raised by this package.
const (
	RuleAge         = "battery_age"
	RuleMaintenance = "battery_maintenance"
	RuleTestAborted = "battery_test_aborted"
)

type alertID uint8

const (
	alertAge alertID = iota
	alertMaintenance
	alertTestAborted
	alertHealth
	numAlerts
)

var alertRules = [numAlerts]string{RuleAge, RuleMaintenance, RuleTestAborted, RuleHealth}

// alertState is one battery alert of a unit: Since is its start in unix
// milliseconds (0: not firing).
type alertState struct {
	Since int64
	Sev   uint8
}

// Unit is the battery state of one unit. Times are unix seconds (0:
// unknown) so the state stays small; its binary form (codec.go) is what
// the tracker stores. The zero Unit is a unit never seen.
type Unit struct {
	// Fields every reading touches come first, to share cache lines.
	Serial    ups.Serial
	FirstSeen int64
	LastAt    int64
	Install   int64
	// ExtraAge is the wear beyond the calendar, in seconds, accrued
	// while watched above 25 °C.
	ExtraAge float64
	LastTemp float32 // 0: no plausible temperature
	// rate caches extraRate for rateOf; not stored.
	rateOf float32
	rate   float64
	RB     bool // the replace-battery flag was set

	// H is the state of health.
	H health

	// Install date and the dates it is chosen from.
	InstallSrc Source
	OwnerDate  int64
	BatDate    int64
	MfrDate    int64
	Maint      int64
	// Hashes of the raw date texts last parsed, so an unchanged text
	// costs a hash and not a parse.
	BatDateH uint32
	MfrDateH uint32
	MaintH   uint32

	// T is the self-test history.
	T tests
	// Swap detection.
	Sig      [numSignals]uint32
	SwapDate int64
	SwapN    uint8
	Swaps    [swapHistory]swapRec

	Alerts [numAlerts]alertState
}

// Names of the variables Observe reads besides the known numeric ones.
const (
	varBatteryDate = "battery.date"
	varMfrDate     = "battery.mfr.date"
	varMaintDate   = "battery.date.maintenance"
)

// maxMaintenanceAhead bounds a believable battery.date.maintenance.
const maxMaintenanceAhead = 20 * 365 * 24 * time.Hour

// Observe folds one reading into the state and appends the battery
// events it causes to evs. Readings older than the last one seen are
// ignored (a redelivered batch); presence-only readings are ignored.
func (u *Unit) Observe(r *ups.Reading, evs []rules.Event) []rules.Event {
	if r.Presence != ups.PresenceNone {
		return evs
	}
	at := r.Time.Unix()
	if at < u.LastAt {
		return evs
	}
	if u.FirstSeen == 0 {
		u.FirstSeen = at
		u.Serial = r.Serial
	}
	n0 := len(evs)
	dirty := u.Install == 0
	newHour := at/3600 != u.LastAt/3600
	if newHour {
		// Once an hour: the interval changes rarely and is the only
		// variable read that needs a scan of the unknown numerics.
		evs = u.hourly(r, evs)
	}
	// Texts once a minute: dates and test results last far longer (a
	// test result stays until the next test), and hashing them on every
	// reading was the main cost.
	texts := r.Texts
	if at/60 == u.LastAt/60 && u.LastAt != 0 {
		texts = nil
	}
	for i := range texts {
		t := &texts[i]
		switch t.Name {
		case varBatteryDate:
			dirty = u.dateVar(&u.BatDate, &u.BatDateH, t.Value, r.Time) || dirty
		case varMfrDate:
			dirty = u.dateVar(&u.MfrDate, &u.MfrDateH, t.Value, r.Time) || dirty
		case varTestResult:
			evs = u.observeTest(t.Value, r, evs)
		case varMaintDate:
			if h := hash(t.Value); h != u.MaintH {
				u.MaintH = h
				u.Maint = 0
				if d, v := ParseDate(t.Value, r.Time.Add(maxMaintenanceAhead)); v == DateOK {
					u.Maint = d.Unix()
				}
			}
		}
	}
	if dirty && u.reinstall(at) {
		evs = u.replaced(r, whyBatteryDate, evs)
	}
	evs = u.swapSignals(r, at, evs)
	temp, ok := readingTemp(r)
	u.accrue(at, temp, ok)
	evs = u.observeHealth(r, at, evs)
	u.LastAt = at
	if newHour || dirty || len(evs) > n0 {
		// Age and maintenance move by the hour, or with what changed.
		evs = u.checkAge(r, evs)
	}
	return evs
}

// hourly does the checks that need not run on every reading.
func (u *Unit) hourly(r *ups.Reading, evs []rules.Event) []rules.Event {
	for _, m := range r.Metrics {
		if m.Name == varTestInterval {
			u.T.Interval = 0
			if m.Value >= 3600 && m.Value <= 365*24*3600 {
				u.T.Interval = int32(m.Value)
			}
		}
	}
	if u.Alerts[alertTestAborted].Since != 0 {
		evs = u.checkAborted(r, evs)
	}
	return evs
}

// dateVar updates one parsed date from its raw text; it reports whether
// the date changed.
func (u *Unit) dateVar(dst *int64, h *uint32, raw string, now time.Time) bool {
	nh := hash(raw)
	if nh == *h {
		return false
	}
	*h = nh
	old := *dst
	*dst = 0
	if d, v := ParseDate(raw, now); v == DateOK {
		*dst = d.Unix()
	}
	return *dst != old
}

// SetOwnerDate records the install date the owner entered (zero clears
// it) and returns the events it causes at now.
func (u *Unit) SetOwnerDate(d time.Time, now time.Time) []rules.Event {
	if d.IsZero() {
		u.OwnerDate = 0
	} else {
		u.OwnerDate = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC).Unix()
	}
	r := &ups.Reading{Serial: u.Serial, Time: now}
	var evs []rules.Event
	if u.reinstall(now.Unix()) {
		evs = u.replaced(r, whyOwner, evs)
	}
	return u.checkAge(r, evs)
}

// readingTemp picks the temperature the battery sits at: its own sensor,
// else the UPS's, else the room's; implausible values are skipped.
func readingTemp(r *ups.Reading) (float64, bool) {
	for _, v := range [...]ups.Var{ups.BatteryTemperature, ups.UPSTemperature, ups.AmbientTemperature} {
		if t, ok := r.Num(v); ok && PlausibleTemp(t) {
			return t, true
		}
	}
	return 0, false
}

func (u *Unit) checkAge(r *ups.Reading, evs []rules.Event) []rules.Event {
	now := r.Time
	eff := u.EffectiveAge(now)
	evs = u.set(alertAge, u.Install != 0 && eff >= AgeLimit, rules.Warning, r, evs, func() (string, []rules.Value) {
		return fmt.Sprintf("battery effective age %.1f years (installed %s, by %s)",
				eff.Hours()/24/365, time.Unix(u.Install, 0).UTC().Format(time.DateOnly), u.InstallSrc),
			[]rules.Value{{Name: "battery.age.effective_days", Value: float64(int(eff.Hours() / 24))}}
	})
	if u.Alerts[alertHealth].Since != 0 && u.H.BN == 0 {
		// The baseline restarted: a new battery.
		evs = u.set(alertHealth, false, 0, r, evs, func() (string, []rules.Value) { return "battery replaced", nil })
	}
	due := u.Maint != 0 && !now.Before(time.Unix(u.Maint, 0).Add(-MaintenanceLead))
	evs = u.set(alertMaintenance, due, rules.Warning, r, evs, func() (string, []rules.Value) {
		return "battery maintenance due " + time.Unix(u.Maint, 0).UTC().Format(time.DateOnly), nil
	})
	return evs
}

// set moves one alert to firing (at sev) or not, appending the event of
// the change.
// The message is built only when the alert changes.
func (u *Unit) set(id alertID, firing bool, sev rules.Severity, r *ups.Reading, evs []rules.Event, msg func() (string, []rules.Value)) []rules.Event {
	a := &u.Alerts[id]
	switch {
	case firing && a.Since == 0:
		a.Since, a.Sev = r.Time.UnixMilli(), uint8(sev)
		return append(evs, u.event(id, rules.Firing, r, msg))
	case firing && a.Sev != uint8(sev):
		a.Sev = uint8(sev)
		return append(evs, u.event(id, rules.Updated, r, msg))
	case !firing && a.Since != 0:
		ev := u.event(id, rules.Resolved, r, msg)
		ev.EndedAt = r.Time
		ev.Duration = ev.EndedAt.Sub(ev.StartedAt)
		a.Since, a.Sev = 0, 0
		return append(evs, ev)
	}
	return evs
}

func (u *Unit) event(id alertID, kind rules.EventKind, r *ups.Reading, mk func() (string, []rules.Value)) rules.Event {
	a := u.Alerts[id]
	msg, vals := mk()
	return rules.Event{
		Kind:        kind,
		Rule:        alertRules[id],
		Severity:    rules.Severity(a.Sev),
		Serial:      r.Serial,
		At:          r.Time,
		StartedAt:   time.UnixMilli(a.Since).UTC(),
		Values:      vals,
		Status:      r.Status.Raw,
		Fingerprint: fmt.Sprintf("%s/%s/%d", r.Serial, alertRules[id], a.Since),
		Message:     msg,
	}
}

// hash is FNV-1a, 32 bits, never 0 (0 means "no text seen").
func hash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h | 1
}
