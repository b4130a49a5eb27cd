package api

import (
	"encoding/csv"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/ups"
)

// maxReportRange bounds the range of one report: a quarter.
const maxReportRange = 92 * 24 * time.Hour

// HandleReports adds GET /v1/reports?scope=unit|site|account&id=&from=&to=&format=:
// the power report (report.Report) of a unit, of a site's units or of an
// account's fleet (the units it owns and those of the sites it manages)
// over [from, to) (default: the last 7 days, at most 92 days), as JSON or,
// with format=csv or Accept: text/csv, as CSV with one row per unit and a
// total row. Owners see their units, managers their sites, an account its
// own fleet, the admin everything; anything else is 404, as if absent.
func (s *Server) HandleReports(rep *report.Reporter) {
	s.handle("GET /v1/reports", s.auth(func(w http.ResponseWriter, r *http.Request) { s.report(w, r, rep) }))
}

// Errors of ReportUnits: a malformed scope or id, and a scope the caller
// may not see (or that does not exist: the two answer alike).
var (
	ErrReportQuery    = errors.New("bad report scope")
	ErrReportNotFound = errors.New("no such report scope")
)

// scopeError is an error of ReportUnits: its message is for the caller as
// it is, its kind for errors.Is.
type scopeError struct {
	kind error
	msg  string
}

func (e scopeError) Error() string { return e.msg }
func (e scopeError) Unwrap() error { return e.kind }

// ReportUnits resolves a report's scope (unit, site or account) and id to
// the units p may see a report of, by serial. It is the one rule for who
// sees which report, shared by the API and the console's report page:
// owners their units, managers their sites, an account its own fleet (the
// units it owns and those of the sites it manages), the admin everything.
// accounts looks an account up for the admin (nil: the admin sees only
// scopes of units and sites). A site managed but empty is an empty report,
// not a 404: the manager may see it.
func ReportUnits(p Principal, units interface {
	Lookup(ups.Serial) (registry.Unit, bool)
	List() []registry.Unit
}, accounts func(id string) (recipients.Recipient, bool), scope, id string) ([]ups.Serial, error) {
	if id == "" {
		return nil, scopeError{ErrReportQuery, "id is required"}
	}
	match := func(keep func(registry.Unit) bool) []ups.Serial {
		var out []ups.Serial
		for _, u := range units.List() {
			if keep(u) {
				out = append(out, u.Serial)
			}
		}
		slices.Sort(out)
		return out
	}
	switch scope {
	case "unit":
		u, found := units.Lookup(ups.Serial(id))
		if !ups.ValidSerial(id) || !found || !p.CanSee(u) {
			return nil, scopeError{ErrReportNotFound, "no unit with this serial number is registered"}
		}
		return []ups.Serial{u.Serial}, nil
	case "site":
		var serials []ups.Serial
		manages := p.Account.Role == recipients.RoleManager && slices.Contains(p.Account.Sites, id)
		if p.Admin || manages {
			serials = match(func(u registry.Unit) bool { return u.Site == id })
		}
		if len(serials) == 0 && !manages {
			return nil, scopeError{ErrReportNotFound, "no site with this name"}
		}
		return serials, nil
	case "account":
		acct, found := p.Account, p.Account.ID == id
		if !found && p.Admin && accounts != nil {
			acct, found = accounts(id)
		}
		if !found {
			return nil, scopeError{ErrReportNotFound, "no account with this id"}
		}
		return match(func(u registry.Unit) bool { return acct.InFleet(u.Serial, u.Site) }), nil
	}
	return nil, scopeError{ErrReportQuery, "scope: unit, site or account"}
}

type reportJSON struct {
	Scope string `json:"scope"`
	ID    string `json:"id"`
	report.Report
}

func (s *Server) report(w http.ResponseWriter, r *http.Request, rep *report.Reporter) {
	asCSV, ok := wantCSV(w, r)
	if !ok {
		return
	}
	from, to, ok := timeRange(w, r, 7*24*time.Hour)
	if !ok {
		return
	}
	if to.Sub(from) > maxReportRange {
		writeError(w, http.StatusBadRequest, "invalid_query", "the range of a report is at most 92 days")
		return
	}
	scope, id := r.URL.Query().Get("scope"), r.URL.Query().Get("id")
	var accounts func(string) (recipients.Recipient, bool)
	if s.owners != nil {
		accounts = s.owners.Lookup
	}
	serials, err := ReportUnits(principalOf(r), s.cfg.Units, accounts, scope, id)
	switch {
	case errors.Is(err, ErrReportQuery):
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	case errors.Is(err, ErrReportNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	each, err := rep.Each(r.Context(), serials, from, to)
	if err != nil {
		if errors.Is(err, report.ErrTimeline) {
			s.alertsUnavailable(w, "report", err)
			return
		}
		s.storeError(w, "report", err)
		return
	}
	total := report.Sum(from, to, each)
	if asCSV {
		writeReportCSV(w, scope, id, each, total)
		return
	}
	writeJSON(w, http.StatusOK, reportJSON{Scope: scope, ID: id, Report: total})
}

// writeReportCSV writes one row per unit, then the total ("unit" empty).
func writeReportCSV(w http.ResponseWriter, scope, id string, each []report.Report, total report.Report) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="report-`+scope+`.csv"`)
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"scope", "id", "unit", "from", "to", "outages", "on_battery_s", "longest_outage_s",
		"outages_under_1m", "outages_1_to_5m", "outages_over_5m", "lowest_charge", "lowest_runtime",
		"voltage_in_band_share", "sags", "sags_s", "swells", "swells_s", "frequency_in_band_share",
		"frequency_excursions", "alerts", "out_of_contact_s",
		"boost_s", "trim_s", "self_tests", "self_test_s", "calibrations", "calibration_s",
		"test_results_passed", "test_results_warning", "test_results_failed", "test_results_aborted", "transfers_by_reason"})
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	opt := func(v *float64) string {
		if v == nil {
			return ""
		}
		return num(*v)
	}
	secs := func(es []report.Excursion) string {
		var d float64
		for _, e := range es {
			d += e.DurationS
		}
		return num(d)
	}
	row := func(unit string, rp report.Report) {
		alerts := 0
		for _, n := range rp.Alerts {
			alerts += n
		}
		o, m, st := rp.Outages, rp.Mains, rp.SelfTests
		_ = cw.Write([]string{scope, id, unit, rp.From.Format(time.RFC3339), rp.To.Format(time.RFC3339),
			strconv.Itoa(o.Count), num(o.TotalS), num(o.LongestS),
			strconv.Itoa(o.Under1m), strconv.Itoa(o.From1To5m), strconv.Itoa(o.Over5m), opt(o.LowestCharge), opt(o.LowestRuntime),
			opt(m.VoltageInBandShare), strconv.Itoa(len(m.Sags)), secs(m.Sags), strconv.Itoa(len(m.Swells)), secs(m.Swells),
			opt(m.FrequencyInBandShare), strconv.Itoa(len(m.FrequencyExcursions)), strconv.Itoa(alerts), num(rp.OutOfContactS),
			num(rp.BoostS), num(rp.TrimS), strconv.Itoa(st.Tests), num(st.TestS), strconv.Itoa(st.Calibrations), num(st.CalibrationS),
			strconv.Itoa(st.Results["passed"]), strconv.Itoa(st.Results["warning"]), strconv.Itoa(st.Results["failed"]), strconv.Itoa(st.Results["aborted"]),
			reasons(rp.Transfers)})
	}
	for _, rp := range each {
		row(string(rp.Units[0]), rp)
	}
	row("", total)
	cw.Flush()
}

// reasons writes transfers by reason in one cell, "reason=n" by reason
// separated by "; " (a reason is the unit's own text: the CSV quotes it).
func reasons(byReason map[string]int) string {
	keys := slices.Sorted(maps.Keys(byReason))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Itoa(byReason[k])
	}
	return strings.Join(parts, "; ")
}
