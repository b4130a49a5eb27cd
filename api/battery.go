package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/ups"
)

// Batteries is the battery lifecycle store (battery.Store implements it).
type Batteries interface {
	Report(ctx context.Context, serial ups.Serial) (battery.Report, error)
	SetInstallDate(ctx context.Context, serial ups.Serial, d time.Time) (battery.Report, error)
	Due(ctx context.Context, within time.Duration, keep func(ups.Serial) bool) ([]battery.Due, error)
}

// HandleBattery adds GET /v1/units/{serial}/battery (age, effective age,
// state of health with its inputs, forecast, swaps, self-tests), PUT
// /v1/units/{serial}/battery/install-date (the owner's date, which beats
// what the unit reports) and GET /v1/batteries/due (the fleet's
// batteries to replace soon, by site).
func (s *Server) HandleBattery(b Batteries) {
	s.handle("GET /v1/units/{serial}/battery", s.auth(func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.unit(w, r)
		if !ok {
			return
		}
		rep, err := b.Report(r.Context(), u.Serial)
		if err != nil {
			s.batteryUnavailable(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	}))
	s.handle("PUT /v1/units/{serial}/battery/install-date", s.auth(func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.unit(w, r)
		if !ok {
			return
		}
		if !principalOf(r).CanChange(u) {
			forbidden(w)
			return
		}
		var body struct {
			Date *string `json:"date"`
		}
		if !decodeStrict(w, r, &body, `{"date": "YYYY-MM-DD" or null}`) {
			return
		}
		var d time.Time
		if body.Date != nil {
			var err error
			d, err = time.Parse(time.DateOnly, *body.Date)
			if err != nil || d.Year() < 1985 || d.After(time.Now().Add(24*time.Hour)) {
				writeError(w, http.StatusBadRequest, "invalid_date", "date must be a day (YYYY-MM-DD) from 1985 to today")
				return
			}
		}
		rep, err := b.SetInstallDate(r.Context(), u.Serial, d)
		if err != nil {
			s.batteryUnavailable(w, err)
			return
		}
		s.log.Info("battery install date set", "serial", u.Serial, "date", rep.Install.Owner)
		writeJSON(w, http.StatusOK, rep)
	}))
	s.handle("GET /v1/batteries/due", s.auth(func(w http.ResponseWriter, r *http.Request) {
		s.batteriesDue(w, r, b)
	}))
}

// batteriesDue answers GET /v1/batteries/due?days=&site=: the batteries
// of the units the caller may see whose replacement forecast falls in
// the next days (default 90, or already passed), by site, soonest first.
func (s *Server) batteriesDue(w http.ResponseWriter, r *http.Request, b Batteries) {
	days := 90
	if v := r.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3650 {
			writeError(w, http.StatusBadRequest, "invalid_days", "days must be a whole number from 1 to 3650")
			return
		}
		days = n
	}
	site := r.URL.Query().Get("site")
	p := principalOf(r)
	units := map[ups.Serial]registry.Unit{}
	for _, u := range s.cfg.Units.List() {
		if (site == "" || u.Site == site) && p.CanSee(u) {
			units[u.Serial] = u
		}
	}
	due, err := b.Due(r.Context(), time.Duration(days)*24*time.Hour, func(serial ups.Serial) bool {
		_, ok := units[serial]
		return ok
	})
	if err != nil {
		s.batteryUnavailable(w, err)
		return
	}
	type dueJSON struct {
		battery.Due
		Name string `json:"name"`
	}
	type siteJSON struct {
		Site      string    `json:"site"`
		Batteries []dueJSON `json:"batteries"`
	}
	out := []siteJSON{}
	index := map[string]int{}
	for _, d := range due {
		u := units[d.Serial]
		i, ok := index[u.Site]
		if !ok {
			i = len(out)
			index[u.Site] = i
			out = append(out, siteJSON{Site: u.Site})
		}
		out[i].Batteries = append(out[i].Batteries, dueJSON{d, u.Name})
	}
	writeJSON(w, http.StatusOK, map[string]any{"days": days, "sites": out})
}

func (s *Server) batteryUnavailable(w http.ResponseWriter, err error) {
	s.log.Warn("battery query failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, "battery_unavailable", "the battery store is unavailable; try again shortly")
}
