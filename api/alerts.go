package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// AlertQuerier is what the alert endpoints need: the alert timeline of a
// unit and the alerts firing now (rules/engine.Alerts implements it).
type AlertQuerier interface {
	Timeline(ctx context.Context, serial ups.Serial, from, to time.Time, limit int) ([]rules.Event, error)
	Active(ctx context.Context, site string) ([]rules.Event, error)
}

// maxAlertLimit caps the limit of a timeline query.
const maxAlertLimit = 10000

// HandleAlerts adds, behind the admin token:
//
//	GET /v1/units/{serial}/alerts?from=&to=&limit=   a unit's alert events
//	GET /v1/alerts?state=firing&site=                 the alerts firing now
//
// Call it before serving.
func (s *Server) HandleAlerts(q AlertQuerier) {
	s.handle("GET /v1/units/{serial}/alerts", s.auth(func(w http.ResponseWriter, r *http.Request) { s.unitAlerts(w, r, q) }))
	s.handle("GET /v1/alerts", s.auth(func(w http.ResponseWriter, r *http.Request) { s.activeAlerts(w, r, q) }))
}

// unitAlerts answers GET /v1/units/{serial}/alerts?from=&to=&limit=:
// the unit's alert events (firing, updated, resolved, reminder) whose
// time is in [from, to), oldest first. from and to are RFC 3339 or unix
// milliseconds (default: the last 30 days); limit (default 1000, at most
// 10000) keeps the latest events.
func (s *Server) unitAlerts(w http.ResponseWriter, r *http.Request, q AlertQuerier) {
	u, ok := s.unit(w, r)
	if !ok {
		return
	}
	qs := r.URL.Query()
	to, err := parseTime(qs.Get("to"), time.Now().UTC())
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", "to: "+err.Error())
		return
	}
	from, err := parseTime(qs.Get("from"), to.Add(-30*24*time.Hour))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", "from: "+err.Error())
		return
	}
	if !to.After(from) {
		writeError(w, http.StatusBadRequest, "invalid_query", "to must be after from")
		return
	}
	limit := 1000
	if v := qs.Get("limit"); v != "" {
		limit, err = strconv.Atoi(v)
		if err != nil || limit <= 0 || limit > maxAlertLimit {
			writeError(w, http.StatusBadRequest, "invalid_query", "limit: must be an integer from 1 to 10000")
			return
		}
	}
	events, err := q.Timeline(r.Context(), u.Serial, from, to, limit)
	if err != nil {
		s.alertsUnavailable(w, "alert timeline", err)
		return
	}
	p := principalOf(r)
	events = slices.DeleteFunc(events, func(ev rules.Event) bool { return !p.CanSeeAlert(ev.Rule, u) })
	writeJSON(w, http.StatusOK, map[string]any{"serial": u.Serial, "events": nonNil(events)})
}

// activeAlerts answers GET /v1/alerts?state=firing&site=: the alerts
// firing now (each as its latest firing or updated event, with its live
// acknowledgement and silence), of one site or all. state defaults to
// firing, the only state kept.
func (s *Server) activeAlerts(w http.ResponseWriter, r *http.Request, q AlertQuerier) {
	qs := r.URL.Query()
	if st := qs.Get("state"); st != "" && st != "firing" {
		writeError(w, http.StatusBadRequest, "invalid_query", "state: only firing is supported; use /v1/units/{serial}/alerts for the history")
		return
	}
	events, err := q.Active(r.Context(), qs.Get("site"))
	if err != nil {
		s.alertsUnavailable(w, "active alerts", err)
		return
	}
	if p := principalOf(r); !p.Admin {
		// An account sees the alerts of the units it may see only.
		events = slices.DeleteFunc(events, func(ev rules.Event) bool {
			u, ok := s.cfg.Units.Lookup(ev.Serial)
			return !ok || !p.CanSeeAlert(ev.Rule, u)
		})
	}
	alerts, err := s.withActions(r.Context(), events)
	if err != nil {
		s.alertsUnavailable(w, "alert actions", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": alerts})
}

func (s *Server) alertsUnavailable(w http.ResponseWriter, what string, err error) {
	s.log.Warn("alert query failed", "op", what, "err", err)
	writeError(w, http.StatusServiceUnavailable, "alerts_unavailable", "the alert store is unavailable; try again shortly")
}

func nonNil(evs []rules.Event) []rules.Event {
	if evs == nil {
		return []rules.Event{}
	}
	return evs
}
