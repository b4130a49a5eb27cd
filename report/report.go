// Package report computes what a facility manager wants to know about a
// period of power: outages, mains quality by EN 50160, alerts raised and
// time out of contact, for one unit and summed over many.
//
// Everything is computed from the history store's query interface
// (store.History.Query, plus store.PowerHistory when the backend has it)
// and the alert timeline, so a report works on every history store.
package report

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// Rules whose alerts the report reads.
const (
	ruleOnBattery = "on_battery"
	ruleCommLost  = "comm_lost"
)

// EN 50160 bands and the resolutions they are measured at.
const (
	// VoltageWindow is the width of the mean the voltage band applies to.
	VoltageWindow = 10 * time.Minute
	// EventWindow is the resolution of sags, swells and frequency
	// excursions: a sag lasts a whole number of these.
	EventWindow = time.Minute
	voltageBand = 0.10 // ±10 % of nominal
	freqBand    = 0.01 // ±1 % of nominal
	// Below 5 % of nominal the supply is interrupted (EN 50160): an
	// outage, not a sag; windows holding one are left out of the shares.
	interruption = 0.05
)

// ErrTimeline wraps the errors of the alert timeline, so a caller can
// tell them from the history store's.
var ErrTimeline = errors.New("alert timeline")

// Timeline is the alert timeline of a unit (rules/engine.Alerts).
type Timeline interface {
	Timeline(ctx context.Context, serial ups.Serial, from, to time.Time, limit int) ([]rules.Event, error)
}

// Reporter computes reports.
type Reporter struct {
	history store.History
	alerts  Timeline
	now     func() time.Time
}

// New returns a Reporter over a history store and the alert timeline.
func New(history store.History, alerts Timeline) (*Reporter, error) {
	if history == nil || alerts == nil {
		return nil, fmt.Errorf("report: history store and alert timeline are required")
	}
	return &Reporter{history: history, alerts: alerts, now: time.Now}, nil
}

// Report summarises [From, To) for one unit or many.
type Report struct {
	From    time.Time      `json:"from"`
	To      time.Time      `json:"to"`
	Units   []ups.Serial   `json:"units"`
	Outages Outages        `json:"outages"`
	Mains   Mains          `json:"mains"`
	Alerts  map[string]int `json:"alerts_by_rule"`
	// OutOfContactS is the time the units were out of contact (comm_lost
	// alerts), summed over the units, in seconds.
	OutOfContactS float64 `json:"out_of_contact_s"`
	// OutOfContact lists the units that were, with their time.
	OutOfContact []UnitTime `json:"out_of_contact_units"`
	// Transfers counts the outages by the input.transfer.reason their
	// unit reported (the value in effect at the outage's last reading;
	// units that report none are left out). Empty without a store that
	// keeps texts (store.StatusHistory).
	Transfers map[string]int `json:"transfers_by_reason"`
	// BoostS and TrimS are the times the units spent boosting low input
	// voltage and trimming high (the BOOST and TRIM flags of
	// ups.status), summed, in seconds.
	BoostS float64 `json:"boost_s"`
	TrimS  float64 `json:"trim_s"`
	// SelfTests are the units' self-tests, calibrations and test results.
	SelfTests SelfTests `json:"self_tests"`
}

// SelfTests are the battery self-tests and runtime calibrations seen, and
// the results the units reported. They are never outages (see Outages).
type SelfTests struct {
	// Tests counts the stretches of readings with TEST in ups.status,
	// TestS their time in seconds; Calibrations and CalibrationS the
	// same for CAL.
	Tests        int     `json:"tests"`
	TestS        float64 `json:"test_s"`
	Calibrations int     `json:"calibrations"`
	CalibrationS float64 `json:"calibration_s"`
	// Results counts the new ups.test.result values (a new result is a
	// change of the text, as for the battery tracker) by outcome:
	// passed, warning, failed, aborted (battery.ParseTestResult; "in
	// progress" and "no test initiated" are none and not counted). A
	// test too short for any reading to show TEST still has its result.
	Results map[string]int `json:"results"`
}

// UnitTime is a time a unit spent in some state, in seconds.
type UnitTime struct {
	Serial ups.Serial `json:"serial"`
	S      float64    `json:"s"`
}

// Outages are the on-battery periods (self-tests and calibration
// excluded), clipped to the report's range.
type Outages struct {
	Count    int     `json:"count"`
	TotalS   float64 `json:"total_s"`
	LongestS float64 `json:"longest_s"`
	// LongestUnit is the unit of the longest outage.
	LongestUnit ups.Serial `json:"longest_unit,omitempty"`
	Under1m     int        `json:"under_1m"`
	From1To5m   int        `json:"from_1_to_5m"`
	Over5m      int        `json:"over_5m"`
	// Lowest battery charge (%) and runtime (s) reached on battery; nil
	// when no unit reported one.
	LowestCharge  *float64 `json:"lowest_charge"`
	LowestRuntime *float64 `json:"lowest_runtime"`
	List          []Outage `json:"list"`
}

// Outage is one on-battery period.
type Outage struct {
	Serial    ups.Serial `json:"serial"`
	Start     time.Time  `json:"start"`
	End       time.Time  `json:"end"`
	DurationS float64    `json:"duration_s"`
	// Ongoing: the outage had not ended by the end of the range.
	Ongoing bool `json:"ongoing,omitempty"`
}

// Mains is the supply quality by EN 50160.
type Mains struct {
	// VoltageWindows counts the 10-minute windows with input voltage
	// readings and no interruption; VoltageInBand those whose mean was
	// within nominal ±10 %. VoltageInBandShare is their ratio (nil
	// without windows).
	VoltageWindows     int      `json:"voltage_windows"`
	VoltageInBand      int      `json:"voltage_in_band"`
	VoltageInBandShare *float64 `json:"voltage_in_band_share"`
	// Sags (below 90 % of nominal) and swells (above 110 %), at one-minute
	// resolution.
	Sags   []Excursion `json:"sags"`
	Swells []Excursion `json:"swells"`
	// FrequencyWindows counts the one-minute windows with frequency
	// readings; FrequencyInBand those wholly within nominal ±1 %.
	FrequencyWindows     int         `json:"frequency_windows"`
	FrequencyInBand      int         `json:"frequency_in_band"`
	FrequencyInBandShare *float64    `json:"frequency_in_band_share"`
	FrequencyExcursions  []Excursion `json:"frequency_excursions"`
}

// Excursion is a stretch of one-minute windows out of band.
type Excursion struct {
	Serial    ups.Serial `json:"serial"`
	Start     time.Time  `json:"start"`
	DurationS float64    `json:"duration_s"`
	// Extreme is the lowest (sag) or highest (swell) value reached, or
	// the value furthest from nominal (frequency).
	Extreme float64 `json:"extreme"`
	Nominal float64 `json:"nominal"`
}

// Units computes the report of the units over [from, to), summed.
func (r *Reporter) Units(ctx context.Context, serials []ups.Serial, from, to time.Time) (Report, error) {
	if !to.After(from) {
		return Report{}, fmt.Errorf("report: %w: to (%s) must be after from (%s)", store.ErrBadQuery, to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	each, err := r.Each(ctx, serials, from, to)
	if err != nil {
		return Report{}, err
	}
	return Sum(from, to, each), nil
}

// parallel is how many units' reports Each computes at once: a unit's
// report is mostly waiting on the history store (InfluxDB's queries, a
// SQLite read connection of the pool), so a site's goes several times
// faster side by side, while a few keep the store and the two cores free
// for ingest.
const parallel = 4

// Each returns the report of each unit, in the order of serials, computed
// a few at a time; the first error ends it.
func (r *Reporter) Each(ctx context.Context, serials []ups.Serial, from, to time.Time) ([]Report, error) {
	each := make([]Report, len(serials))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, s := range serials {
		g.Go(func() error {
			u, err := r.Unit(gctx, s, from, to)
			each[i] = u
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return each, nil
}

// Sum sums the reports of units over [from, to): counts and durations
// add up, the shares are those of all the windows together.
func Sum(from, to time.Time, reports []Report) Report {
	total := empty(from, to)
	for _, u := range reports {
		total.add(u)
	}
	total.finish()
	return total
}

func empty(from, to time.Time) Report {
	return Report{From: from.UTC(), To: to.UTC(), Units: []ups.Serial{}, Alerts: map[string]int{},
		OutOfContact: []UnitTime{}, Transfers: map[string]int{}, SelfTests: SelfTests{Results: map[string]int{}},
		Outages: Outages{List: []Outage{}},
		Mains:   Mains{Sags: []Excursion{}, Swells: []Excursion{}, FrequencyExcursions: []Excursion{}}}
}

// add sums u into t.
func (t *Report) add(u Report) {
	t.Units = append(t.Units, u.Units...)
	o, uo := &t.Outages, u.Outages
	o.Count += uo.Count
	o.TotalS += uo.TotalS
	if uo.LongestS > o.LongestS {
		o.LongestS, o.LongestUnit = uo.LongestS, uo.LongestUnit
	}
	o.Under1m += uo.Under1m
	o.From1To5m += uo.From1To5m
	o.Over5m += uo.Over5m
	o.LowestCharge = lower(o.LowestCharge, uo.LowestCharge)
	o.LowestRuntime = lower(o.LowestRuntime, uo.LowestRuntime)
	o.List = append(o.List, uo.List...)
	m, um := &t.Mains, u.Mains
	m.VoltageWindows += um.VoltageWindows
	m.VoltageInBand += um.VoltageInBand
	m.Sags = append(m.Sags, um.Sags...)
	m.Swells = append(m.Swells, um.Swells...)
	m.FrequencyWindows += um.FrequencyWindows
	m.FrequencyInBand += um.FrequencyInBand
	m.FrequencyExcursions = append(m.FrequencyExcursions, um.FrequencyExcursions...)
	for rule, n := range u.Alerts {
		t.Alerts[rule] += n
	}
	t.OutOfContactS += u.OutOfContactS
	t.OutOfContact = append(t.OutOfContact, u.OutOfContact...)
	for reason, n := range u.Transfers {
		t.Transfers[reason] += n
	}
	t.BoostS += u.BoostS
	t.TrimS += u.TrimS
	st, ust := &t.SelfTests, u.SelfTests
	st.Tests += ust.Tests
	st.TestS += ust.TestS
	st.Calibrations += ust.Calibrations
	st.CalibrationS += ust.CalibrationS
	for res, n := range ust.Results {
		st.Results[res] += n
	}
}

// finish computes the shares and orders the lists by time.
func (t *Report) finish() {
	t.Mains.VoltageInBandShare = share(t.Mains.VoltageInBand, t.Mains.VoltageWindows)
	t.Mains.FrequencyInBandShare = share(t.Mains.FrequencyInBand, t.Mains.FrequencyWindows)
	slices.SortStableFunc(t.Outages.List, func(a, b Outage) int { return a.Start.Compare(b.Start) })
	for _, l := range [][]Excursion{t.Mains.Sags, t.Mains.Swells, t.Mains.FrequencyExcursions} {
		slices.SortStableFunc(l, func(a, b Excursion) int { return a.Start.Compare(b.Start) })
	}
}

func share(n, of int) *float64 {
	if of == 0 {
		return nil
	}
	v := float64(n) / float64(of)
	return &v
}

func lower(a, b *float64) *float64 {
	if a == nil || (b != nil && *b < *a) {
		return b
	}
	return a
}

// Unit computes the report of one unit over [from, to).
func (r *Reporter) Unit(ctx context.Context, serial ups.Serial, from, to time.Time) (Report, error) {
	if !to.After(from) {
		return Report{}, fmt.Errorf("report: %w: to (%s) must be after from (%s)", store.ErrBadQuery, to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	from, to = from.UTC(), to.UTC()
	rep := empty(from, to)
	rep.Units = append(rep.Units, serial)
	// The whole timeline up to a little past to: an outage that began
	// long before from, or whose Firing came after its pending period,
	// is seen whole.
	events, err := r.alerts.Timeline(ctx, serial, time.Time{}, to.Add(time.Hour), 0)
	if err != nil {
		return Report{}, fmt.Errorf("report: %w of %s: %w", ErrTimeline, serial, err)
	}
	now := r.now().UTC()
	if err := r.outages(ctx, &rep, serial, events, from, to, now); err != nil {
		return Report{}, err
	}
	if err := r.mains(ctx, &rep.Mains, serial, from, to); err != nil {
		return Report{}, err
	}
	if sh, ok := r.history.(store.StatusHistory); ok {
		if err := r.status(ctx, &rep, sh, serial, from, to, now); err != nil {
			return Report{}, err
		}
	}
	for _, ev := range events {
		if ev.Kind == rules.Firing && !ev.At.Before(from) && ev.At.Before(to) {
			rep.Alerts[ev.Rule]++
		}
	}
	var contact time.Duration
	for _, sp := range instances(events, ruleCommLost) {
		contact += clipped(sp, from, to, now)
	}
	if contact > 0 {
		rep.OutOfContactS = contact.Seconds()
		rep.OutOfContact = append(rep.OutOfContact, UnitTime{Serial: serial, S: contact.Seconds()})
	}
	rep.finish()
	return rep, nil
}

// instances are the spans of a rule's alert instances, by start; an
// unresolved one has a zero End.
func instances(events []rules.Event, rule string) []store.Span {
	byID := map[string]int{}
	var out []store.Span
	for _, ev := range events {
		if ev.Rule != rule {
			continue
		}
		i, ok := byID[ev.Fingerprint]
		if !ok {
			i = len(out)
			byID[ev.Fingerprint] = i
			out = append(out, store.Span{Start: ev.StartedAt.UTC()})
		}
		if ev.Kind == rules.Resolved {
			end := ev.EndedAt
			if end.IsZero() {
				end = ev.At
			}
			out[i].End = end.UTC()
		}
	}
	slices.SortStableFunc(out, func(a, b store.Span) int { return a.Start.Compare(b.Start) })
	return out
}

// clipped is the part of sp within [from, to); an open span lasts until
// now.
func clipped(sp store.Span, from, to, now time.Time) time.Duration {
	end := sp.End
	if end.IsZero() {
		end = now
	}
	start := maxTime(sp.Start, from)
	end = minTime(end, to)
	if !end.After(start) {
		return 0
	}
	return end.Sub(start)
}

// Text variables the report reads, and how far before a range it looks
// for their values then: a unit's state at the start of a range (boosting
// since before it, the test result in force, the transfer reason of an
// outage begun before it) is that of its last reading. Units send full
// readings every few seconds to a minute; an hour covers any of them.
const (
	textTestResult     = "ups.test.result"
	textTransferReason = "input.transfer.reason"
	statusLookback     = time.Hour
)

// status fills the report's boost and trim times, self-tests and
// transfers by reason from the unit's status changes (outages must be
// filled: their reasons are looked up).
func (r *Reporter) status(ctx context.Context, rep *Report, sh store.StatusHistory, serial ups.Serial, from, to, now time.Time) error {
	changes, err := sh.StatusChanges(ctx, serial, from.Add(-statusLookback), to, textTestResult, textTransferReason)
	if err != nil {
		return fmt.Errorf("report: status changes of %s: %w", serial, err)
	}
	for _, f := range []struct {
		flag  ups.Flag
		time  *float64
		count *int
	}{
		{ups.BOOST, &rep.BoostS, nil},
		{ups.TRIM, &rep.TrimS, nil},
		{ups.TEST, &rep.SelfTests.TestS, &rep.SelfTests.Tests},
		{ups.CAL, &rep.SelfTests.CalibrationS, &rep.SelfTests.Calibrations},
	} {
		for _, sp := range flagSpans(changes, f.flag) {
			d := clipped(sp, from, to, now)
			if d <= 0 {
				continue
			}
			*f.time += d.Seconds()
			if f.count != nil {
				*f.count++
			}
		}
	}
	// The first change is the state the unit was in, not a new result.
	for i := 1; i < len(changes); i++ {
		res := changes[i].Texts[0]
		if changes[i].Time.Before(from) || res == changes[i-1].Texts[0] {
			continue
		}
		if outcome := battery.ParseTestResult(res); outcome != battery.TestNone {
			rep.SelfTests.Results[outcome.String()]++
		}
	}
	for _, o := range rep.Outages.List {
		// The reason in force at the outage's last reading (NUT sets
		// it on the transfer; a unit may report it a reading late).
		i := sort.Search(len(changes), func(i int) bool { return changes[i].Time.After(o.End) }) - 1
		if i >= 0 && changes[i].Texts[1] != "" {
			rep.Transfers[changes[i].Texts[1]]++
		}
	}
	return nil
}

// flagSpans are the stretches of changes with flag set: each from the
// change that set it to the one that cleared it (a zero End: still set at
// the last change).
func flagSpans(changes []store.StatusChange, flag ups.Flag) []store.Span {
	return store.Spans(changes, func(f ups.Flag) bool { return f&flag != 0 })
}

// outages fills rep.Outages from the on_battery alerts and, where the
// store keeps ups.status, the on-battery spans no alert covers (blips
// shorter than the rule's pending period).
func (r *Reporter) outages(ctx context.Context, rep *Report, serial ups.Serial, events []rules.Event, from, to, now time.Time) error {
	spans := instances(events, ruleOnBattery)
	if ph, ok := r.history.(store.PowerHistory); ok {
		// A blip began at most a pending period before from.
		blips, err := ph.OnBattery(ctx, serial, from.Add(-10*time.Minute), to)
		if err != nil {
			return fmt.Errorf("report: on-battery spans of %s: %w", serial, err)
		}
		n := len(spans)
		for _, b := range blips {
			bEnd := b.End
			if bEnd.IsZero() {
				bEnd = now
			}
			covered := slices.ContainsFunc(spans[:n], func(a store.Span) bool {
				aEnd := a.End
				if aEnd.IsZero() {
					aEnd = now
				}
				return a.Start.Before(bEnd) && aEnd.After(b.Start) || a.Start.Equal(b.Start)
			})
			if !covered {
				spans = append(spans, b)
			}
		}
		slices.SortStableFunc(spans, func(a, b store.Span) int { return a.Start.Compare(b.Start) })
	}
	o := &rep.Outages
	for _, sp := range spans {
		d := clipped(sp, from, to, now)
		if d <= 0 {
			continue
		}
		start := maxTime(sp.Start, from)
		out := Outage{Serial: serial, Start: start, End: start.Add(d), DurationS: d.Seconds(),
			Ongoing: sp.End.IsZero() || sp.End.After(to)}
		o.List = append(o.List, out)
		o.Count++
		o.TotalS += d.Seconds()
		if d.Seconds() > o.LongestS {
			o.LongestS, o.LongestUnit = d.Seconds(), serial
		}
		switch {
		case d < time.Minute:
			o.Under1m++
		case d <= 5*time.Minute:
			o.From1To5m++
		default:
			o.Over5m++
		}
		charge, runtime, err := r.lowest(ctx, serial, out.Start, out.End)
		if err != nil {
			return err
		}
		o.LowestCharge = lower(o.LowestCharge, charge)
		o.LowestRuntime = lower(o.LowestRuntime, runtime)
	}
	return nil
}

// lowest returns the lowest battery.charge and battery.runtime the unit
// reported in [from, to) (nil when none).
func (r *Reporter) lowest(ctx context.Context, serial ups.Serial, from, to time.Time) (*float64, *float64, error) {
	// One bucket (two or three, as buckets align on the epoch), whole
	// milliseconds as the stores want.
	every := (max(to.Sub(from), time.Second) + time.Millisecond - 1).Truncate(time.Millisecond)
	series, err := r.history.Query(ctx, store.Query{Serial: serial, From: from, To: to, Every: every,
		Fields: []string{"battery.charge", "battery.runtime"}})
	if err != nil {
		return nil, nil, fmt.Errorf("report: battery of %s on battery: %w", serial, err)
	}
	var charge, runtime *float64
	for _, f := range series.Fields {
		for _, p := range f.Points {
			v := p.Min
			switch f.Field {
			case "battery.charge":
				charge = lower(charge, &v)
			case "battery.runtime":
				runtime = lower(runtime, &v)
			}
		}
	}
	return charge, runtime, nil
}

// query asks for fields of serial over [from, to) in buckets of every, in
// as many queries as store.MaxBuckets requires, and returns the points by
// field.
func (r *Reporter) query(ctx context.Context, serial ups.Serial, from, to time.Time, every time.Duration, fields ...string) (map[string][]store.Point, error) {
	out := map[string][]store.Point{}
	chunk := time.Duration(store.MaxBuckets-2) * every
	for start := from; start.Before(to); {
		// Chunks end on a bucket boundary so no bucket is split.
		end := start.Add(chunk).Truncate(every)
		if !end.After(start) || end.After(to) {
			end = to
		}
		s, err := r.history.Query(ctx, store.Query{Serial: serial, From: start, To: end, Every: every, Fields: fields})
		if err != nil {
			return nil, fmt.Errorf("report: history of %s: %w", serial, err)
		}
		for _, f := range s.Fields {
			out[f.Field] = append(out[f.Field], f.Points...)
		}
		start = end
	}
	return out, nil
}

// mains fills m from the unit's input voltage and frequency.
func (r *Reporter) mains(ctx context.Context, m *Mains, serial ups.Serial, from, to time.Time) error {
	// The 10-minute windows are summed from the one-minute points, and
	// the nominals read with them, rather than asked for in other
	// queries: one pass over the readings (on InfluxDB 1.8 a pass that
	// aggregates in Flux costs seconds a unit-week).
	fine, err := r.query(ctx, serial, from, to, EventWindow, "input.voltage", "input.frequency", "input.voltage.nominal", "input.frequency.nominal")
	if err != nil {
		return err
	}
	volts := windows(fine["input.voltage"], VoltageWindow)
	nominal := meanOf(fine["input.voltage.nominal"])
	if nominal == 0 {
		nominal = guessNominal(volts, []float64{100, 110, 115, 120, 127, 200, 208, 220, 230, 240})
	}
	if nominal > 0 {
		for _, p := range volts {
			if p.Min < interruption*nominal {
				continue
			}
			m.VoltageWindows++
			if math.Abs(p.Mean-nominal) <= voltageBand*nominal {
				m.VoltageInBand++
			}
		}
		fv := fine["input.voltage"]
		m.Sags = append(m.Sags, runs(serial, fv, nominal, func(p store.Point) (bool, float64) {
			return p.Min >= interruption*nominal && p.Min < (1-voltageBand)*nominal, p.Min
		}, math.Min)...)
		m.Swells = append(m.Swells, runs(serial, fv, nominal, func(p store.Point) (bool, float64) {
			return p.Max > (1+voltageBand)*nominal, p.Max
		}, math.Max)...)
	}
	freqs := fine["input.frequency"]
	fnom := meanOf(fine["input.frequency.nominal"])
	if fnom == 0 {
		fnom = guessNominal(freqs, []float64{50, 60})
	}
	if fnom > 0 {
		var supplied []store.Point
		for _, p := range freqs {
			// No frequency to speak of: the supply was interrupted.
			if p.Min < fnom/2 {
				continue
			}
			supplied = append(supplied, p)
			m.FrequencyWindows++
			if p.Min >= (1-freqBand)*fnom && p.Max <= (1+freqBand)*fnom {
				m.FrequencyInBand++
			}
		}
		m.FrequencyExcursions = append(m.FrequencyExcursions, runs(serial, supplied, fnom, func(p store.Point) (bool, float64) {
			lo, hi := p.Min < (1-freqBand)*fnom, p.Max > (1+freqBand)*fnom
			switch {
			case lo && (!hi || fnom-p.Min >= p.Max-fnom):
				return true, p.Min
			case hi:
				return true, p.Max
			}
			return false, 0
		}, func(a, b float64) float64 {
			if math.Abs(b-fnom) > math.Abs(a-fnom) {
				return b
			}
			return a
		})...)
	}
	return nil
}

// windows sums time-ordered points into buckets of every, a multiple of
// their width, aligned on the epoch as the stores align theirs: the mean
// weighted by count, the lowest min and the highest max.
func windows(points []store.Point, every time.Duration) []store.Point {
	var out []store.Point
	for _, p := range points {
		t := p.Time.UnixNano()
		start := time.Unix(0, t-((t%int64(every))+int64(every))%int64(every)).UTC()
		if n := len(out); n > 0 && out[n-1].Time.Equal(start) {
			w := &out[n-1]
			if c := w.Count + p.Count; c > 0 {
				w.Mean = (w.Mean*float64(w.Count) + p.Mean*float64(p.Count)) / float64(c)
			}
			w.Count += p.Count
			w.Min, w.Max = math.Min(w.Min, p.Min), math.Max(w.Max, p.Max)
			continue
		}
		p.Time = start
		out = append(out, p)
	}
	return out
}

// runs groups consecutive one-minute points for which out says true into
// excursions, keeping the extreme value by pick.
func runs(serial ups.Serial, points []store.Point, nominal float64, out func(store.Point) (bool, float64), pick func(a, b float64) float64) []Excursion {
	var res []Excursion
	var cur *Excursion
	var last time.Time
	for _, p := range points {
		bad, v := out(p)
		switch {
		case bad && cur != nil && p.Time.Equal(last.Add(EventWindow)):
			cur.DurationS += EventWindow.Seconds()
			cur.Extreme = pick(cur.Extreme, v)
		case bad:
			if cur != nil {
				res = append(res, *cur)
			}
			cur = &Excursion{Serial: serial, Start: p.Time.UTC(), DurationS: EventWindow.Seconds(), Extreme: v, Nominal: nominal}
		case cur != nil:
			res = append(res, *cur)
			cur = nil
		}
		last = p.Time
	}
	if cur != nil {
		res = append(res, *cur)
	}
	return res
}

func meanOf(ps []store.Point) float64 {
	var sum float64
	var n int
	for _, p := range ps {
		sum += p.Mean * float64(p.Count)
		n += p.Count
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// guessNominal is the standard nominal nearest the median of the
// windows' highest values, for a unit that does not report its nominal (0
// without points). Not their means: a window holding an interruption
// averages the supply with zeros (a 230 V unit with a few readings, one
// of them an outage, looked like a 100 V one, its normal readings all
// swells), while its highest value is the supply's.
func guessNominal(ps []store.Point, standards []float64) float64 {
	if len(ps) == 0 {
		return 0
	}
	highs := make([]float64, len(ps))
	for i, p := range ps {
		highs[i] = p.Max
	}
	slices.Sort(highs)
	med := highs[len(highs)/2]
	best := standards[0]
	for _, s := range standards {
		if math.Abs(s-med) < math.Abs(best-med) {
			best = s
		}
	}
	return best
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
