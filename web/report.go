package web

import (
	"cmp"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/api"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/ups"
)

// reportRanges are the report page's presets, the first the default.
var reportRanges = []string{"7d", "lastweek", "30d"}

// maxReportSpan is the API's bound on a report's range (92 days): the
// page offers no range the CSV link would refuse.
const maxReportSpan = 92 * 24 * time.Hour

// reportChoice is one scope the person may pick: "site:hq" and its label.
type reportChoice struct {
	Of, Label string
}

type reportUnitRow struct {
	Serial ups.Serial
	Name   string
	report.Report
}

type reportPage struct {
	Of      string
	Scope   string
	ID      string
	Title   string
	Choices []reportChoice
	Ranges  []string
	Range   string
	// RangeError says why the custom range asked for was not shown.
	RangeError string
	From       time.Time
	To         time.Time
	// CSV is the API's CSV of the same scope and range; a query string
	// made by url.Values.Encode, safe in an href as it is.
	CSV    template.URL
	Report report.Report
	// Units are the per-unit lines (more than one unit only).
	Units  []reportUnitRow
	Alerts []ruleCount
}

type ruleCount struct {
	Rule  string
	Count int
}

// reportPage shows the power report (package report) of a unit, a site
// or the person's fleet over a range. Who may see which report is the
// API's rule (api.ReportUnits), so a scope outside the person's answers
// 404 here as there.
func (c *Console) reportPage(w http.ResponseWriter, r *http.Request, v *view) {
	q := r.URL.Query()
	pg := reportPage{Ranges: reportRanges, Choices: c.reportChoices(v)}
	pg.Of = q.Get("of")
	if pg.Of == "" && len(pg.Choices) > 0 {
		pg.Of = pg.Choices[0].Of
	}
	var ok bool
	if pg.Scope, pg.ID, ok = strings.Cut(pg.Of, ":"); !ok {
		c.notFound(w, r, v)
		return
	}
	serials, err := api.ReportUnits(v.Principal, c.cfg.Units, c.cfg.Accounts.Lookup, pg.Scope, pg.ID)
	if err != nil {
		// A malformed scope is as absent as a forbidden one: the page
		// only links to scopes it listed.
		c.notFound(w, r, v)
		return
	}
	pg.Title = c.scopeLabel(v, pg.Scope, pg.ID)
	var problem string
	pg.Range, pg.From, pg.To, problem = reportRange(q, v.Now, v.Loc)
	if problem != rangeAccepted {
		pg.RangeError = v.T(problem, int(maxReportSpan/(24*time.Hour)))
	}
	pg.CSV = template.URL(url.Values{"scope": {pg.Scope}, "id": {pg.ID}, "format": {"csv"},
		"from": {pg.From.UTC().Format(time.RFC3339)}, "to": {pg.To.UTC().Format(time.RFC3339)}}.Encode())

	each, err := c.reports.Each(r.Context(), serials, pg.From, pg.To)
	if err != nil {
		c.internal(w, v, "report page", err)
		return
	}
	pg.Report = report.Sum(pg.From, pg.To, each)
	if len(each) > 1 {
		for _, u := range each {
			row := reportUnitRow{Serial: u.Units[0], Report: u}
			if reg, ok := c.cfg.Units.Lookup(row.Serial); ok {
				row.Name = reg.Name
			}
			pg.Units = append(pg.Units, row)
		}
	}
	for rule, n := range pg.Report.Alerts {
		pg.Alerts = append(pg.Alerts, ruleCount{rule, n})
	}
	slices.SortFunc(pg.Alerts, func(a, b ruleCount) int { return cmp.Or(b.Count-a.Count, cmp.Compare(a.Rule, b.Rule)) })
	v.Page = pg
	c.render(w, http.StatusOK, "report", v)
}

// Why a custom range was not taken (the page says so, in the person's
// language, and shows the last 7 days instead).
const (
	rangeInvalid  = "report.range_invalid"
	rangeTooLong  = "report.range_too_long"
	rangeAccepted = ""
)

// reportRange reads the page's range: a preset, or the custom form's
// datetime-local values in the person's zone (at most 92 days); the last
// 7 days otherwise. problem is the text key of why a custom range given
// was refused, "" when none was or it was taken.
func reportRange(q url.Values, now time.Time, loc *time.Location) (rng string, from, to time.Time, problem string) {
	// Whole seconds, not minutes: an outage of the last minute is in
	// "the last 7 days".
	now = now.Truncate(time.Second)
	problem = rangeAccepted
	if q.Get("from") != "" || q.Get("to") != "" {
		from, to, ok := parseRange(q.Get("from"), q.Get("to"), loc)
		switch {
		case !ok:
			problem = rangeInvalid
		case to.Sub(from) > maxReportSpan:
			problem = rangeTooLong
		default:
			return "custom", from, to, rangeAccepted
		}
	}
	switch q.Get("range") {
	case "lastweek":
		// Monday 00:00 to Monday 00:00 in the person's zone: the week a
		// manager calls "last week".
		local := now.In(loc)
		sinceMonday := (int(local.Weekday()) + 6) % 7
		monday := time.Date(local.Year(), local.Month(), local.Day()-sinceMonday, 0, 0, 0, 0, loc)
		return "lastweek", monday.AddDate(0, 0, -7), monday, problem
	case "30d":
		return "30d", now.AddDate(0, 0, -30), now, problem
	}
	return "7d", now.AddDate(0, 0, -7), now, problem
}

// reportChoices lists the scopes the person may pick: their fleet (an
// account), their sites, then their units.
func (c *Console) reportChoices(v *view) []reportChoice {
	var out []reportChoice
	p := v.Principal
	if p.Account.ID != "" {
		out = append(out, reportChoice{"account:" + p.Account.ID, v.T("report.my_fleet")})
	}
	units := c.visibleUnits(p)
	var sites []string
	for _, u := range units {
		if u.Site != "" && !slices.Contains(sites, u.Site) {
			sites = append(sites, u.Site)
		}
	}
	if p.Account.Role == recipients.RoleManager {
		for _, s := range p.Account.Sites {
			if !slices.Contains(sites, s) {
				sites = append(sites, s)
			}
		}
	}
	slices.Sort(sites)
	for _, s := range sites {
		// An owner sees units at a site without seeing the site's report.
		if _, err := api.ReportUnits(p, c.cfg.Units, nil, "site", s); err == nil {
			out = append(out, reportChoice{"site:" + s, v.T("report.site", s)})
		}
	}
	for _, u := range units {
		out = append(out, reportChoice{"unit:" + string(u.Serial), v.T("report.unit", u.Name, u.Serial)})
	}
	return out
}

// scopeLabel names a scope for the heading.
func (c *Console) scopeLabel(v *view, scope, id string) string {
	switch scope {
	case "account":
		if id == v.Principal.Account.ID {
			return v.T("report.my_fleet")
		}
		if a, ok := c.cfg.Accounts.Lookup(id); ok && a.Name != "" {
			return v.T("report.account", a.Name)
		}
		return v.T("report.account", id)
	case "site":
		return v.T("report.site", id)
	}
	if u, ok := c.cfg.Units.Lookup(ups.Serial(id)); ok {
		return v.T("report.unit", u.Name, u.Serial)
	}
	return id
}

// Secs formats a duration in seconds, as Duration does.
func (v *view) Secs(s float64) string { return v.Duration(time.Duration(s * float64(time.Second))) }

// ExcursionSecs is the total duration of excursions, in seconds.
func (v *view) ExcursionSecs(es []report.Excursion) float64 {
	var d float64
	for _, e := range es {
		d += e.DurationS
	}
	return d
}

// Share formats an optional fraction as a percentage with one decimal
// ("–" without data): 95 % is EN 50160's line, so 94.6 and 95.4 differ.
func (v *view) Share(x *float64) string {
	if x == nil {
		return "–"
	}
	p := *x * 100
	return v.localNum(float64(int64(p*10+0.5))/10) + " %"
}

// Raw is an optional value for a machine-readable attribute ("" when
// absent).
func (v *view) Raw(x *float64) string {
	if x == nil {
		return ""
	}
	return strconv.FormatFloat(*x, 'f', -1, 64)
}

// Stamp formats t as a date and time in the person's zone.
func (v *view) Stamp(t time.Time) string { return t.In(v.Loc).Format("2006-01-02 15:04") }

// AlertCount is the number of alerts of all rules.
func (v *view) AlertCount(byRule map[string]int) int {
	n := 0
	for _, c := range byRule {
		n += c
	}
	return n
}

// SiteReport reports whether the person may see the report of site (a
// manager of it, or the admin): the fleet page links to it then.
func (v *view) SiteReport(site string) bool {
	if site == "" {
		return false
	}
	_, err := api.ReportUnits(v.Principal, v.c.cfg.Units, nil, "site", site)
	return err == nil
}

// F is x for a machine-readable attribute, every digit kept (templates
// print large floats in exponent form).
func (v *view) F(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
