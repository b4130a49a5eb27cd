package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/upswatch/upswatch/ups"
)

// Span is a stretch of time from Start to End; a zero End means it lasts
// past the range asked.
type Span struct {
	Start time.Time
	End   time.Time
}

// PowerHistory is implemented by backends that can tell from the stored
// ups.status when a unit ran on battery (store/sqlite and store/influx
// do, both through OnBatterySpans of their StatusChanges).
type PowerHistory interface {
	// OnBattery returns the spans of [from, to) in which the unit's
	// readings said OB (not while calibrating or testing), oldest first:
	// each from its first such reading to the next reading that did not.
	OnBattery(ctx context.Context, serial ups.Serial, from, to time.Time) ([]Span, error)
}

// StatusChange is a reading at which a unit's ups.status flags, or one of
// the text variables asked for, took a new value. It carries the state
// after that reading.
type StatusChange struct {
	Time  time.Time
	Flags ups.Flag
	// Texts are the values of the text variables asked for, in the
	// order asked ("" for one not reported yet).
	Texts []string
}

// StatusHistory is implemented by backends that keep each reading's
// ups.status and text variables (store/sqlite and store/influx do): the
// report reads from it the time spent boosting or trimming, self-tests
// and their results, and why units went on battery.
type StatusHistory interface {
	// StatusChanges returns, oldest first, the first reading of
	// [from, to) that has ups.status or one of texts, then each reading
	// at which the status flags or one of texts changed. A reading
	// without ups.status, or without a text, leaves it as it was:
	// devices send a status change alone, and some texts only in their
	// full readings.
	StatusChanges(ctx context.Context, serial ups.Serial, from, to time.Time, texts ...string) ([]StatusChange, error)
}

// Changes turns readings, fed in time order, into StatusChanges: the one
// definition of a change for every backend.
type Changes struct {
	names   []string
	cur     StatusChange
	started bool
	out     []StatusChange
}

// NewChanges follows the text variables names.
func NewChanges(names []string) *Changes {
	return &Changes{names: names, cur: StatusChange{Texts: make([]string, len(names))}}
}

// Add records a reading at t: its status flags when hasStatus, and the
// value text(i) of names[i] when it has one.
func (c *Changes) Add(t time.Time, flags ups.Flag, hasStatus bool, text func(i int) (string, bool)) {
	seen, changed := hasStatus, false
	if hasStatus && flags != c.cur.Flags {
		c.cur.Flags, changed = flags, true
	}
	for i := range c.names {
		if v, ok := text(i); ok {
			seen = true
			if v != c.cur.Texts[i] {
				c.cur.Texts[i], changed = v, true
			}
		}
	}
	if !seen || (c.started && !changed) {
		return
	}
	c.started = true
	c.out = append(c.out, StatusChange{Time: t.UTC(), Flags: c.cur.Flags, Texts: slices.Clone(c.cur.Texts)})
}

// Result is the changes recorded.
func (c *Changes) Result() []StatusChange { return c.out }

// OnBatterySpans turns a unit's status changes (StatusChanges without
// texts) into PowerHistory's spans: each from the first reading that said
// OB (not while calibrating or testing) to the next that did not; the
// last one open (zero End) when the changes end on battery. It is the one
// definition of "on battery" behind every backend's OnBattery.
func OnBatterySpans(changes []StatusChange) []Span {
	return Spans(changes, func(f ups.Flag) bool { return f&ups.OB != 0 && f&(ups.CAL|ups.TEST) == 0 })
}

// OnBatteryOf is PowerHistory.OnBattery for a backend with StatusChanges:
// its status changes over the range, as OnBatterySpans.
func OnBatteryOf(ctx context.Context, h StatusHistory, serial ups.Serial, from, to time.Time) ([]Span, error) {
	changes, err := h.StatusChanges(ctx, serial, from, to)
	if err != nil {
		return nil, fmt.Errorf("on battery: %w", err)
	}
	return OnBatterySpans(changes), nil
}

// Spans returns the stretches of changes in which on holds: each from the
// first change where it does to the next where it does not; the last one
// open (zero End) when the changes end with it holding.
func Spans(changes []StatusChange, on func(ups.Flag) bool) []Span {
	var out []Span
	var cur *Span
	for _, c := range changes {
		now := on(c.Flags)
		switch {
		case now && cur == nil:
			cur = &Span{Start: c.Time}
		case !now && cur != nil:
			cur.End = c.Time
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}
