package api

import (
	"context"
	"net/http"
	"time"

	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/ups"
)

// Batteries is the battery lifecycle store (battery.Store implements it).
type Batteries interface {
	Report(ctx context.Context, serial ups.Serial) (battery.Report, error)
	SetInstallDate(ctx context.Context, serial ups.Serial, d time.Time) (battery.Report, error)
}

// HandleBattery adds GET /v1/units/{serial}/battery (age, effective age,
// state of health with its inputs, forecast, swaps, self-tests) and PUT
// /v1/units/{serial}/battery/install-date (the owner's date, which beats
// what the unit reports).
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
}

func (s *Server) batteryUnavailable(w http.ResponseWriter, err error) {
	s.log.Warn("battery query failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, "battery_unavailable", "the battery store is unavailable; try again shortly")
}
