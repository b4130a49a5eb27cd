package web

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// preset is a time range button of the unit page, with the bucket width
// that gives a chart about a thousand to ten thousand points.
type preset struct {
	Key   string
	Span  time.Duration
	Every time.Duration
}

var presets = []preset{
	{"1h", time.Hour, 10 * time.Second},
	{"24h", 24 * time.Hour, time.Minute},
	{"7d", 7 * 24 * time.Hour, time.Minute},
	{"30d", 30 * 24 * time.Hour, 5 * time.Minute},
	{"1y", 365 * 24 * time.Hour, time.Hour},
}

// everyFor picks a bucket for a custom range: about 2,000 buckets, at
// least 10 s, rounded to a whole number of seconds, minutes or hours.
func everyFor(span time.Duration) time.Duration {
	e := max(span/2000, 10*time.Second)
	switch {
	case e >= time.Hour:
		return e.Round(time.Hour)
	case e >= time.Minute:
		return e.Round(time.Minute)
	}
	return e.Round(time.Second)
}

type variable struct {
	Name, Value string
}

type unitPage struct {
	Row       row
	Vars      []variable
	Presets   []string
	Range     string
	From, To  time.Time
	Every     time.Duration
	Timeline  []rules.Event
	HistoryQS template.URL
	// Battery is the unit's battery card (nil: no battery store, or it
	// did not answer).
	Battery *battery.Report
}

func (c *Console) unitPage(w http.ResponseWriter, r *http.Request, v *view) {
	serial := r.PathValue("serial")
	u, ok := c.cfg.Units.Lookup(ups.Serial(serial))
	if !ups.ValidSerial(serial) || !ok || !v.Principal.CanSee(u) {
		c.notFound(w, r, v)
		return
	}
	ctx := r.Context()
	firing, _, err := c.firingBySerial(ctx)
	if err != nil {
		c.log.Warn("unit page: active alerts unavailable", "err", err)
	}
	rw, err := c.rowOf(ctx, u, firing[u.Serial])
	if err != nil {
		c.internal(w, v, "unit page: latest reading", err)
		return
	}
	pg := unitPage{Row: rw, Range: "24h"}
	for _, p := range presets {
		pg.Presets = append(pg.Presets, p.Key)
	}
	if latest, err := c.cfg.History.Latest(ctx, u.Serial); err == nil {
		for _, m := range latest.Metrics {
			pg.Vars = append(pg.Vars, variable{m.Name, formatNum(m.Value)})
		}
		for _, t := range latest.Texts {
			pg.Vars = append(pg.Vars, variable{t.Name, t.Value})
		}
		slices.SortFunc(pg.Vars, func(a, b variable) int {
			if a.Name < b.Name {
				return -1
			}
			return 1
		})
	} else if !errors.Is(err, store.ErrNotFound) {
		c.internal(w, v, "unit page: latest reading", err)
		return
	}

	q := r.URL.Query()
	now := v.Now.Truncate(time.Second)
	pg.To, pg.From, pg.Every = now, now.Add(-24*time.Hour), time.Minute
	if from, to, ok := parseRange(q.Get("from"), q.Get("to"), v.Loc); ok {
		pg.Range, pg.From, pg.To, pg.Every = "custom", from, to, everyFor(to.Sub(from))
	} else if i := slices.IndexFunc(presets, func(p preset) bool { return p.Key == q.Get("range") }); i >= 0 {
		p := presets[i]
		pg.Range, pg.From, pg.Every = p.Key, now.Add(-p.Span), p.Every
	}
	// A query string made by url.Values.Encode: safe in an href as it is.
	pg.HistoryQS = template.URL(url.Values{
		"from": {pg.From.UTC().Format(time.RFC3339)}, "to": {pg.To.UTC().Format(time.RFC3339)},
		"every": {pg.Every.String()},
	}.Encode())
	if pg.Timeline, err = c.cfg.Alerts.Timeline(ctx, u.Serial, pg.From, pg.To, 200); err != nil {
		c.log.Warn("unit page: alert timeline unavailable", "serial", u.Serial, "err", err)
	}
	// An area alert anchored on this unit is the site's, not its owner's.
	pg.Timeline = slices.DeleteFunc(pg.Timeline, func(ev rules.Event) bool { return !v.Principal.CanSeeAlert(ev.Rule, u) })
	slices.Reverse(pg.Timeline) // newest first
	if c.cfg.Batteries != nil {
		if rep, err := c.cfg.Batteries.Report(ctx, u.Serial); err == nil {
			pg.Battery = &rep
		} else {
			c.log.Warn("unit page: battery report unavailable", "serial", u.Serial, "err", err)
		}
	}
	v.Page = pg
	c.render(w, http.StatusOK, "unit", v)
}

// parseRange reads the custom range form (datetime-local values in the
// person's zone).
func parseRange(from, to string, loc *time.Location) (time.Time, time.Time, bool) {
	if from == "" || to == "" {
		return time.Time{}, time.Time{}, false
	}
	f, err1 := time.ParseInLocation("2006-01-02T15:04", from, loc)
	t, err2 := time.ParseInLocation("2006-01-02T15:04", to, loc)
	if err1 != nil || err2 != nil || !t.After(f) || t.Sub(f) > 2*366*24*time.Hour {
		return time.Time{}, time.Time{}, false
	}
	return f, t, true
}

// Local formats t for a datetime-local input in the person's zone.
func (v *view) Local(t time.Time) string { return t.In(v.Loc).Format("2006-01-02T15:04") }

// EventText describes an alert event: "fired", "resolved"...
func (v *view) EventText(ev rules.Event) string { return v.T("kind." + ev.Kind.String()) }

// Severity is a severity's localized name.
func (v *view) Severity(s rules.Severity) string { return v.T("sev." + s.String()) }

// Rule is a rule's localized name (its id when the texts lack it).
func (v *view) Rule(rule string) string {
	if s := v.T("rule." + rule); s != "rule."+rule {
		return s
	}
	return rule
}

// BatterySource names where an install date comes from.
func (v *view) BatterySource(s battery.Source) string {
	return v.T("battery.src." + strings.ReplaceAll(s.String(), ".", "_"))
}

// Years formats days as years with one decimal.
func (v *view) Years(days float64) string { return v.T("battery.years", days/365) }

// LastTest is the newest self-test result, if any.
func (v *view) LastTest(t battery.TestsReport) *battery.TestReport {
	if len(t.History) == 0 {
		return nil
	}
	return &t.History[len(t.History)-1]
}

// Percent formats a fraction as a whole percentage.
func (v *view) Percent(x float64) string { return fmt.Sprintf("%.0f %%", x*100) }
