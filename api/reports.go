package api

import (
	"encoding/csv"
	"errors"
	"net/http"
	"slices"
	"strconv"
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
	if id == "" {
		writeError(w, http.StatusBadRequest, "invalid_query", "id is required")
		return
	}
	p := principalOf(r)
	var serials []ups.Serial
	switch scope {
	case "unit":
		u, found := s.cfg.Units.Lookup(ups.Serial(id))
		if !ups.ValidSerial(id) || !found || !p.CanSee(u) {
			writeError(w, http.StatusNotFound, "not_found", "no unit with this serial number is registered")
			return
		}
		serials = []ups.Serial{u.Serial}
	case "site":
		manages := p.Account.Role == recipients.RoleManager && slices.Contains(p.Account.Sites, id)
		if p.Admin || manages {
			serials = s.siteUnits(func(u registry.Unit) bool { return u.Site == id })
		}
		if len(serials) == 0 && !manages {
			writeError(w, http.StatusNotFound, "not_found", "no site with this name")
			return
		}
	case "account":
		acct, found := p.Account, p.Account.ID == id
		if !found && p.Admin && s.owners != nil {
			acct, found = s.owners.Lookup(id)
		}
		if !found {
			writeError(w, http.StatusNotFound, "not_found", "no account with this id")
			return
		}
		serials = s.siteUnits(func(u registry.Unit) bool { return acct.InFleet(u.Serial, u.Site) })
	default:
		writeError(w, http.StatusBadRequest, "invalid_query", "scope: unit, site or account")
		return
	}
	each := make([]report.Report, 0, len(serials))
	for _, serial := range serials {
		u, err := rep.Unit(r.Context(), serial, from, to)
		if err != nil {
			if errors.Is(err, report.ErrTimeline) {
				s.alertsUnavailable(w, "report", err)
				return
			}
			s.storeError(w, "report", err)
			return
		}
		each = append(each, u)
	}
	total := report.Sum(from, to, each)
	if asCSV {
		writeReportCSV(w, scope, id, each, total)
		return
	}
	writeJSON(w, http.StatusOK, reportJSON{Scope: scope, ID: id, Report: total})
}

// siteUnits lists the registered units keep says yes to, by serial.
func (s *Server) siteUnits(keep func(registry.Unit) bool) []ups.Serial {
	var out []ups.Serial
	for _, u := range s.cfg.Units.List() {
		if keep(u) {
			out = append(out, u.Serial)
		}
	}
	slices.Sort(out)
	return out
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
		"frequency_excursions", "alerts", "out_of_contact_s"})
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
		o, m := rp.Outages, rp.Mains
		_ = cw.Write([]string{scope, id, unit, rp.From.Format(time.RFC3339), rp.To.Format(time.RFC3339),
			strconv.Itoa(o.Count), num(o.TotalS), num(o.LongestS),
			strconv.Itoa(o.Under1m), strconv.Itoa(o.From1To5m), strconv.Itoa(o.Over5m), opt(o.LowestCharge), opt(o.LowestRuntime),
			opt(m.VoltageInBandShare), strconv.Itoa(len(m.Sags)), secs(m.Sags), strconv.Itoa(len(m.Swells)), secs(m.Swells),
			opt(m.FrequencyInBandShare), strconv.Itoa(len(m.FrequencyExcursions)), strconv.Itoa(alerts), num(rp.OutOfContactS)})
	}
	for _, rp := range each {
		row(string(rp.Units[0]), rp)
	}
	row("", total)
	cw.Flush()
}
