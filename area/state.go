package area

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// The area alerts, and the unit alerts they are made of.
const (
	SiteOutage      = "site_outage"
	SiteUnreachable = "site_unreachable"

	onBattery  = "on_battery"
	commLost   = "comm_lost"
	lowBattery = "low_battery"
)

// IsAreaRule reports whether rule is an area alert's: one that covers the
// units of a whole area, for the admin and the site's managers to see.
func IsAreaRule(rule string) bool { return rule == SiteOutage || rule == SiteUnreachable }

// Decision is what becomes of a unit alert's notifications.
type Decision string

// Decisions.
const (
	// Send: notify as usual.
	Send Decision = "send"
	// Hold: another unit of the area went the same way within the window;
	// wait (until Verdict.Until at most) to see whether the area alert
	// fires.
	Hold Decision = "hold"
	// Fold: the area alert tells it; the unit's own notice is not sent.
	Fold Decision = "fold"
)

// Verdict is the evaluator's word on one unit alert (on_battery or
// comm_lost): what to do with its Firing and, once seen, its Resolved. The
// notify pipeline reads it (Folds) before notifying the unit alert.
type Verdict struct {
	Serial      ups.Serial `json:"serial"`
	Rule        string     `json:"rule"`
	Fingerprint string     `json:"fingerprint"`
	Firing      Decision   `json:"firing"`
	// Until bounds a Hold: by then the evaluator releases it (Send), or
	// the pipeline does if the evaluator is not running.
	Until time.Time `json:"until,omitzero"`
	// Resolved is "" until the evaluator saw the unit alert resolve.
	Resolved Decision `json:"resolved,omitempty"`
	// Alert is the area alert the unit belongs to, if any.
	Alert string `json:"alert,omitempty"`
}

// member is a unit in its cluster's condition (on battery, or silent).
type member struct {
	Fingerprint string     `json:"fingerprint"`
	Since       time.Time  `json:"since"`
	Runtime     float64    `json:"runtime"` // seconds; < 0 unknown
	Low         bool       `json:"low,omitempty"`
	Decision    Decision   `json:"decision"`
	Until       time.Time  `json:"until,omitzero"`
	Alert       string     `json:"alert,omitempty"` // the area alert it joined
	Serial      ups.Serial `json:"-"`
}

// alert is an area alert firing.
type alert struct {
	Fingerprint string         `json:"fingerprint"`
	Anchor      ups.Serial     `json:"anchor"`
	StartedAt   time.Time      `json:"started_at"`
	Severity    rules.Severity `json:"severity"`
	// Units are every unit that joined, in order of joining.
	Units []ups.Serial `json:"units"`
	// Reported is how many units the last notice listed, at LastNotice.
	Reported   int       `json:"reported"`
	LastNotice time.Time `json:"last_notice"`
	// BackSince: since when ResolveShare of Units are back; zero: not.
	BackSince time.Time `json:"back_since,omitzero"`
}

// cluster is one kind of area alert and the units in its condition.
type cluster struct {
	Rule   string                 `json:"rule"`
	Member string                 `json:"member"`
	Units  map[ups.Serial]*member `json:"units"`
	Alert  *alert                 `json:"alert,omitempty"`
}

// State is one area's: its units on battery, its silent units, and the
// area alerts firing. The evaluator keeps it in the areas bucket.
type State struct {
	Area        string              `json:"area"`
	Outage      cluster             `json:"outage"`
	Unreachable cluster             `json:"unreachable"`
	Silent      map[ups.Serial]bool `json:"silent,omitempty"`
}

// NewState is an area's state with nothing going on.
func NewState(area string) *State {
	return &State{Area: area,
		Outage:      cluster{Rule: SiteOutage, Member: onBattery, Units: map[ups.Serial]*member{}},
		Unreachable: cluster{Rule: SiteUnreachable, Member: commLost, Units: map[ups.Serial]*member{}},
		Silent:      map[ups.Serial]bool{}}
}

// fix restores the maps and back references after decoding.
func (s *State) fix() {
	for _, c := range []*cluster{&s.Outage, &s.Unreachable} {
		if c.Units == nil {
			c.Units = map[ups.Serial]*member{}
		}
		for serial, m := range c.Units {
			m.Serial = serial
		}
	}
	if s.Silent == nil {
		s.Silent = map[ups.Serial]bool{}
	}
}

// Idle reports whether the state holds nothing worth keeping.
func (s *State) Idle() bool {
	return len(s.Outage.Units) == 0 && len(s.Unreachable.Units) == 0 && s.Outage.Alert == nil &&
		s.Unreachable.Alert == nil && len(s.Silent) == 0
}

// Apply takes one unit alert event of a unit of the area, which has units
// registered, at wall time now. It returns the area alert events to
// publish and the verdicts to store.
func (s *State) Apply(cfg *Config, ev *rules.Event, units int, now time.Time) ([]rules.Event, []Verdict) {
	if ev.Historical {
		return nil, nil
	}
	switch ev.Rule {
	case onBattery:
		switch ev.Kind {
		case rules.Firing:
			if selfTest(ev.Status) {
				return nil, []Verdict{{Serial: ev.Serial, Rule: ev.Rule, Fingerprint: ev.Fingerprint, Firing: Send}}
			}
			return s.join(cfg, &s.Outage, ev, cfg.threshold(units-len(s.Silent)), now)
		case rules.Resolved:
			return s.leave(cfg, &s.Outage, ev)
		}
	case commLost:
		switch ev.Kind {
		case rules.Firing:
			s.Silent[ev.Serial] = true
			if _, onBattery := s.Outage.Units[ev.Serial]; onBattery {
				// Silent after going on battery: power, not network.
				return nil, []Verdict{{Serial: ev.Serial, Rule: ev.Rule, Fingerprint: ev.Fingerprint, Firing: Send}}
			}
			return s.join(cfg, &s.Unreachable, ev, cfg.threshold(units), now)
		case rules.Resolved:
			delete(s.Silent, ev.Serial)
			return s.leave(cfg, &s.Unreachable, ev)
		}
	case lowBattery:
		if ev.Kind != rules.Firing && ev.Kind != rules.Updated {
			return nil, nil
		}
		m := s.Outage.Units[ev.Serial]
		if m == nil {
			return nil, nil
		}
		m.Low = true
		if rt, ok := value(ev, "battery.runtime"); ok && (m.Runtime < 0 || rt < m.Runtime) {
			m.Runtime = rt
		}
		if a := s.Outage.Alert; a != nil && m.Alert == a.Fingerprint && a.Severity < rules.Critical {
			// Critical at once: not held back by update_every.
			a.Severity = rules.Critical
			a.Reported, a.LastNotice = len(a.Units), now
			return []rules.Event{s.event(&s.Outage, rules.Updated, ev.At)}, nil
		}
	}
	return nil, nil
}

// join puts a unit into a cluster's condition.
func (s *State) join(cfg *Config, c *cluster, ev *rules.Event, threshold int, now time.Time) ([]rules.Event, []Verdict) {
	since := ev.StartedAt
	if since.IsZero() {
		since = ev.At
	}
	m := &member{Serial: ev.Serial, Fingerprint: ev.Fingerprint, Since: since, Runtime: -1}
	if rt, ok := value(ev, "battery.runtime"); ok {
		m.Runtime = rt
	}
	if a := c.Alert; a != nil {
		// The area alert is up: the unit joins it; the next update (at
		// most every update_every) lists it.
		m.Decision, m.Alert = Fold, a.Fingerprint
		c.Units[ev.Serial] = m
		if !slices.Contains(a.Units, ev.Serial) {
			a.Units = append(a.Units, ev.Serial)
		}
		// Only a return in progress can be undone (and backEnough walks
		// every unit of the alert: not once per joining unit of a storm).
		if !a.BackSince.IsZero() && !c.backEnough(cfg) {
			a.BackSince = time.Time{}
		}
		return nil, []Verdict{m.verdict(c.Member)}
	}
	var recent []*member
	for _, o := range c.Units {
		if o.Alert == "" && o.Serial != ev.Serial && !o.Since.Before(since.Add(-cfg.Window)) {
			recent = append(recent, o)
		}
	}
	if len(recent) == 0 {
		m.Decision = Send // the first: never delayed
	} else {
		m.Decision, m.Until = Hold, since.Add(cfg.Window)
	}
	c.Units[ev.Serial] = m
	if len(recent)+1 < threshold {
		return nil, []Verdict{m.verdict(c.Member)}
	}
	// Enough units within the window: the area alert fires, and folds
	// every held notice.
	recent = append(recent, m)
	// The anchor is the first unit: the earliest, and of units that went
	// at the same time the one whose own notice was sent.
	sent := func(m *member) int {
		if m.Decision == Send {
			return 0
		}
		return 1
	}
	slices.SortFunc(recent, func(x, y *member) int {
		return cmp.Or(x.Since.Compare(y.Since), cmp.Compare(sent(x), sent(y)), strings.Compare(string(x.Serial), string(y.Serial)))
	})
	first := recent[0]
	a := &alert{Anchor: first.Serial, StartedAt: first.Since, Severity: rules.Warning, LastNotice: now}
	a.Fingerprint = fmt.Sprintf("%s/%s/%d", a.Anchor, c.Rule, a.StartedAt.UnixMilli())
	verdicts := make([]Verdict, 0, len(recent))
	for _, r := range recent {
		a.Units = append(a.Units, r.Serial)
		r.Alert = a.Fingerprint
		if r.Decision == Hold {
			r.Decision, r.Until = Fold, time.Time{}
		}
		if r.Low {
			a.Severity = rules.Critical
		}
		verdicts = append(verdicts, r.verdict(c.Member))
	}
	a.Reported = len(a.Units)
	c.Alert = a
	return []rules.Event{s.event(c, rules.Firing, ev.At)}, verdicts
}

// leave takes a unit out of a cluster's condition.
func (s *State) leave(cfg *Config, c *cluster, ev *rules.Event) ([]rules.Event, []Verdict) {
	m := c.Units[ev.Serial]
	if m == nil || m.Fingerprint != ev.Fingerprint {
		return nil, []Verdict{{Serial: ev.Serial, Rule: ev.Rule, Fingerprint: ev.Fingerprint, Firing: Send, Resolved: Send}}
	}
	delete(c.Units, ev.Serial)
	v := m.verdict(c.Member)
	switch {
	case m.Alert != "":
		v.Resolved = Fold // the area alert's resolution tells it
	case m.Decision == Hold:
		// Back before the hold ended and no area alert: a blip that
		// neither its start nor its end is worth a notice.
		v.Firing, v.Until, v.Resolved = Fold, time.Time{}, Fold
	default:
		v.Resolved = Send
	}
	if a := c.Alert; a != nil && m.Alert == a.Fingerprint && a.BackSince.IsZero() && c.backEnough(cfg) {
		a.BackSince = ev.At
	}
	return nil, []Verdict{v}
}

// backEnough reports whether ResolveShare of the alert's units are out of
// the condition.
func (c *cluster) backEnough(cfg *Config) bool {
	a := c.Alert
	back := 0
	for _, u := range a.Units {
		if m, in := c.Units[u]; !in || m.Alert != a.Fingerprint {
			back++
		}
	}
	return float64(back) >= cfg.ResolveShare*float64(len(a.Units))-1e-9
}

// Tick releases holds whose time is up, sends the update of units that
// joined (at most every update_every) and resolves area alerts whose units
// have been back for resolve_after.
func (s *State) Tick(cfg *Config, now time.Time) ([]rules.Event, []Verdict) {
	var out []rules.Event
	var verdicts []Verdict
	for _, c := range []*cluster{&s.Outage, &s.Unreachable} {
		for _, m := range sortedMembers(c) {
			if m.Decision == Hold && !now.Before(m.Until) {
				m.Decision, m.Until = Send, time.Time{}
				verdicts = append(verdicts, m.verdict(c.Member))
			}
		}
		a := c.Alert
		if a == nil {
			continue
		}
		switch {
		case !a.BackSince.IsZero() && now.Sub(a.BackSince) >= cfg.ResolveAfter && c.backEnough(cfg):
			out = append(out, s.event(c, rules.Resolved, now))
			c.Alert = nil
		case len(a.Units) > a.Reported && now.Sub(a.LastNotice) >= cfg.UpdateEvery:
			a.Reported, a.LastNotice = len(a.Units), now
			out = append(out, s.event(c, rules.Updated, now))
		}
	}
	return out, verdicts
}

// event is an area alert event.
func (s *State) event(c *cluster, kind rules.EventKind, at time.Time) rules.Event {
	a := c.Alert
	ev := rules.Event{Kind: kind, Rule: c.Rule, Severity: a.Severity, Serial: a.Anchor, At: at.UTC(),
		StartedAt: a.StartedAt.UTC(), Fingerprint: a.Fingerprint, Area: s.Area}
	var still []ups.Serial
	lowest := math.Inf(1)
	for _, u := range a.Units {
		m, in := c.Units[u]
		if !in || m.Alert != a.Fingerprint {
			continue
		}
		still = append(still, u)
		if m.Runtime >= 0 {
			lowest = min(lowest, m.Runtime)
		}
	}
	ev.Units = slices.Clone(a.Units)
	ev.Values = []rules.Value{{Name: "area.units", Value: float64(len(a.Units))},
		{Name: "area.units_affected", Value: float64(len(still))}}
	if !math.IsInf(lowest, 1) && c.Rule == SiteOutage {
		ev.Values = append(ev.Values, rules.Value{Name: "battery.runtime", Value: lowest})
	}
	what := "on battery"
	if c.Rule == SiteUnreachable {
		what = "not reporting"
	}
	ev.Message = fmt.Sprintf("%d units of area %s %s since %s", len(a.Units), s.Area, what, a.StartedAt.UTC().Format(time.RFC3339))
	if kind == rules.Resolved {
		ev.EndedAt = a.BackSince.UTC()
		ev.Duration = a.BackSince.Sub(a.StartedAt)
		ev.Units = still
		ev.Message = fmt.Sprintf("area %s back after %s; %d of %d units still %s", s.Area, ev.Duration, len(still), len(a.Units), what)
	}
	return ev
}

func (m *member) verdict(rule string) Verdict {
	return Verdict{Serial: m.Serial, Rule: rule, Fingerprint: m.Fingerprint, Firing: m.Decision, Until: m.Until, Alert: m.Alert}
}

func sortedMembers(c *cluster) []*member {
	ms := make([]*member, 0, len(c.Units))
	for _, m := range c.Units {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(x, y *member) int { return strings.Compare(string(x.Serial), string(y.Serial)) })
	return ms
}

// selfTest reports whether a ups.status shows a self-test or calibration.
func selfTest(status string) bool {
	for _, t := range strings.Fields(status) {
		if t == "TEST" || t == "CAL" {
			return true
		}
	}
	return false
}

func value(ev *rules.Event, name string) (float64, bool) {
	for _, v := range ev.Values {
		if v.Name == name {
			return v.Value, true
		}
	}
	return 0, false
}
