package rules

import (
	"fmt"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// Severity ranks an alert. The zero value is Info.
type Severity uint8

// Severities, in increasing order of urgency.
const (
	Info Severity = iota
	Warning
	Critical
)

var severityNames = [...]string{"info", "warning", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// ParseSeverity parses "info", "warning" or "critical".
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if n == s {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (want info, warning or critical)", s)
}

// MarshalText encodes the severity as its name, in JSON and YAML alike.
func (s Severity) MarshalText() ([]byte, error) {
	if int(s) >= len(severityNames) {
		return nil, fmt.Errorf("invalid severity %d", uint8(s))
	}
	return []byte(severityNames[s]), nil
}

// UnmarshalText is the inverse of MarshalText.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// EventKind says what happened to an alert.
type EventKind uint8

// Event kinds.
const (
	// Firing: the alert started (after its pending period).
	Firing EventKind = iota
	// Updated: the severity of a firing alert changed.
	Updated
	// Resolved: the alert ended. For on_battery this is the
	// "power restored" notice and carries the outage length.
	Resolved
	// Reminder: the alert is still firing (repeat_every elapsed).
	Reminder
)

var kindNames = [...]string{"firing", "updated", "resolved", "reminder"}

func (k EventKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText encodes the kind as its name.
func (k EventKind) MarshalText() ([]byte, error) {
	if int(k) >= len(kindNames) {
		return nil, fmt.Errorf("invalid event kind %d", uint8(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText is the inverse of MarshalText.
func (k *EventKind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n == string(b) {
			*k = EventKind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown event kind %q", b)
}

// Event is one change of one alert instance. Its JSON form is what the
// alerts stream carries; field names are part of that contract:
//
//	{"kind":"resolved","rule":"on_battery","severity":"warning",
//	 "serial":"123456789012","at":"2025-11-24T16:10:00Z",
//	 "started_at":"2025-11-24T16:00:00Z","ended_at":"2025-11-24T16:10:00Z",
//	 "duration_ns":600000000000,"values":[{"name":"input.voltage","value":231}],
//	 "status":"OL CHRG","fingerprint":"123456789012/on_battery/1764000000000",
//	 "message":"power restored after 10m0s"}
//
// Times are event time (the readings' timestamps), not the time the
// engine ran.
type Event struct {
	Kind     EventKind  `json:"kind"`
	Rule     string     `json:"rule"`
	Severity Severity   `json:"severity"`
	Serial   ups.Serial `json:"serial"`
	// At is when this change happened.
	At time.Time `json:"at"`
	// StartedAt is when the alert's condition began (the start of its
	// pending period), the same for every event of one alert instance.
	StartedAt time.Time `json:"started_at"`
	// EndedAt is when the condition cleared; set on Resolved only. It may
	// precede At when keep_firing_for held the alert.
	EndedAt time.Time `json:"ended_at,omitzero"`
	// Duration is EndedAt-StartedAt on Resolved (for on_battery: the
	// outage length the "power restored" notice shows), in JSON as
	// nanoseconds like any Go time.Duration.
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Values are the readings that triggered (or ended) the alert.
	Values []Value `json:"values,omitempty"`
	// Status is the unit's raw ups.status at the time.
	Status string `json:"status,omitempty"`
	// Fingerprint identifies the alert instance: serial/rule/started-at
	// in unix milliseconds. Together with Kind (and At for reminders) it
	// is the dedup id of the event on the alerts stream.
	Fingerprint string `json:"fingerprint"`
	// Historical marks an alert whose whole life ended long before the
	// engine saw it (a replayed backlog): record it, do not notify.
	Historical bool `json:"historical,omitempty"`
	// Silent marks an event to record but not to notify because the
	// user turned its notice off (power_restored disabled).
	Silent bool `json:"silent,omitempty"`
	// Message is a short English summary for logs; localised text is the
	// notifier's job.
	Message string `json:"message"`
	// Area is set on the alerts of an area (site_outage,
	// site_unreachable, package area): the area's id, a site or
	// "site/area". Serial is then the area's anchor unit (the first unit
	// of the event), so the alert lists, routes and silences like any.
	Area string `json:"area,omitempty"`
	// Units are the units an area alert covers (on Resolved: the units
	// still affected).
	Units []ups.Serial `json:"units,omitempty"`
}

// Value is a named number attached to an event. It has the shape of
// ups.Metric with JSON tags.
type Value struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// DedupID is the id to publish the event under so a redelivered or
// re-evaluated event is dropped by the stream's deduplication.
func (ev *Event) DedupID() string {
	if ev.Kind == Reminder || ev.Kind == Updated {
		return fmt.Sprintf("%s/%s/%d", ev.Fingerprint, ev.Kind, ev.At.UnixMilli())
	}
	return ev.Fingerprint + "/" + ev.Kind.String()
}
