package api

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// DeliveryLister lists the recorded notification attempts of an alert
// (notify/pipeline.Pipeline implements it).
type DeliveryLister interface {
	Deliveries(ctx context.Context, alertID string) ([]pipeline.Delivery, error)
}

// outageRule is the rule whose alerts are the outages.
const outageRule = "on_battery"

// maxOutages caps one answer.
const maxOutages = 1000

// HandleOutages adds GET /v1/units/{serial}/outages?from=&to=.
//
// An outage is an on_battery alert of the unit, from the start of its
// condition (the first reading on battery, before the pending period) to
// the end of it (power back), taken from the alert timeline; an outage
// replayed from a device's backlog is listed, marked historical (it never
// paged). With a history store that keeps ups.status per reading
// (store.PowerHistory: SQLite and InfluxDB), a stretch of OB readings no alert covers
// is an outage too, without alert_id: a blip shorter than the rule's
// pending period did cut the power, though it alerted no one.
// deliveries may be nil (paged is then false).
func (s *Server) HandleOutages(q AlertQuerier, deliveries DeliveryLister) {
	s.handle("GET /v1/units/{serial}/outages", s.auth(func(w http.ResponseWriter, r *http.Request) {
		s.outages(w, r, q, deliveries)
	}))
}

type outageJSON struct {
	AlertID       string     `json:"alert_id,omitempty"`
	Start         time.Time  `json:"start"`
	End           *time.Time `json:"end"`
	DurationS     float64    `json:"duration_s"`
	LowestCharge  *float64   `json:"lowest_charge"`
	LowestRuntime *float64   `json:"lowest_runtime"`
	Paged         bool       `json:"paged"`
	Historical    bool       `json:"historical,omitempty"`
}

// outages answers GET /v1/units/{serial}/outages?from=&to=: the outages
// overlapping [from, to) (default: the last 30 days), oldest first, at
// most 1000 (the latest).
func (s *Server) outages(w http.ResponseWriter, r *http.Request, q AlertQuerier, deliveries DeliveryLister) {
	u, ok := s.unit(w, r)
	if !ok {
		return
	}
	from, to, ok := timeRange(w, r, 30*24*time.Hour)
	if !ok {
		return
	}
	now := time.Now().UTC()
	// The whole timeline: an outage that began before from, or ended
	// after to, must be seen whole.
	events, err := q.Timeline(r.Context(), u.Serial, time.Time{}, now.Add(time.Hour), 0)
	if err != nil {
		s.alertsUnavailable(w, "alert timeline", err)
		return
	}
	all := outagesOf(events)
	if ph, ok := s.cfg.History.(store.PowerHistory); ok {
		// A blip began at most a pending period before from: look a
		// little further back so it is seen whole.
		spans, err := ph.OnBattery(r.Context(), u.Serial, from.Add(-10*time.Minute), to)
		if err != nil {
			s.storeError(w, "outage spans", err)
			return
		}
		all = withBlips(all, spans, now)
	}
	out := []outageJSON{}
	for _, o := range all {
		end := now
		if o.End != nil {
			end = *o.End
		}
		if !o.Start.Before(to) || !end.After(from) {
			continue
		}
		o.DurationS = end.Sub(o.Start).Seconds()
		out = append(out, o)
	}
	if len(out) > maxOutages {
		out = out[len(out)-maxOutages:]
	}
	for i := range out {
		o := &out[i]
		end := now
		if o.End != nil {
			end = *o.End
		}
		if o.LowestCharge, o.LowestRuntime, err = s.lowest(r.Context(), u.Serial, o.Start, end); err != nil {
			s.storeError(w, "outage readings", err)
			return
		}
		if deliveries != nil && !o.Historical && o.AlertID != "" {
			ds, err := deliveries.Deliveries(r.Context(), o.AlertID)
			if err != nil {
				s.alertsUnavailable(w, "outage deliveries", err)
				return
			}
			o.Paged = slices.ContainsFunc(ds, func(d pipeline.Delivery) bool { return d.Outcome == "delivered" })
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"serial": u.Serial, "from": from, "to": to, "outages": out})
}

// outagesOf groups the on_battery events by alert instance, by start.
func outagesOf(events []rules.Event) []outageJSON {
	byID := map[string]*outageJSON{}
	var order []string
	for _, ev := range events {
		if ev.Rule != outageRule {
			continue
		}
		o := byID[ev.Fingerprint]
		if o == nil {
			o = &outageJSON{AlertID: ev.Fingerprint, Start: ev.StartedAt.UTC()}
			byID[ev.Fingerprint] = o
			order = append(order, ev.Fingerprint)
		}
		o.Historical = o.Historical || ev.Historical
		if ev.Kind == rules.Resolved {
			end := ev.EndedAt
			if end.IsZero() {
				end = ev.At
			}
			end = end.UTC()
			o.End = &end
		}
	}
	out := make([]outageJSON, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	slices.SortStableFunc(out, func(a, b outageJSON) int { return a.Start.Compare(b.Start) })
	return out
}

// withBlips adds to the alerts' outages the on-battery spans none of them
// overlaps, by start.
func withBlips(outages []outageJSON, spans []store.Span, now time.Time) []outageJSON {
	endOf := func(o outageJSON) time.Time {
		if o.End != nil {
			return *o.End
		}
		return now
	}
	n := len(outages)
	for _, sp := range spans {
		end := sp.End
		if end.IsZero() {
			end = now
		}
		covered := slices.ContainsFunc(outages[:n], func(o outageJSON) bool {
			return o.Start.Before(end) && endOf(o).After(sp.Start) || o.Start.Equal(sp.Start)
		})
		if covered {
			continue
		}
		o := outageJSON{Start: sp.Start.UTC()}
		if !sp.End.IsZero() {
			e := sp.End.UTC()
			o.End = &e
		}
		outages = append(outages, o)
	}
	slices.SortStableFunc(outages, func(a, b outageJSON) int { return a.Start.Compare(b.Start) })
	return outages
}

// lowest returns the lowest battery.charge and battery.runtime the unit
// reported in [from, to) (nil when it reported none).
func (s *Server) lowest(ctx context.Context, serial ups.Serial, from, to time.Time) (*float64, *float64, error) {
	if !to.After(from) {
		to = from.Add(time.Millisecond)
	}
	// One bucket (two or three, as buckets align on the epoch), whole
	// milliseconds as the stores want.
	every := (max(to.Sub(from), time.Second) + time.Millisecond - 1).Truncate(time.Millisecond)
	series, err := s.cfg.History.Query(ctx, store.Query{Serial: serial, From: from, To: to, Every: every,
		Fields: []string{"battery.charge", "battery.runtime"}})
	if err != nil {
		return nil, nil, err
	}
	var charge, runtime *float64
	for _, f := range series.Fields {
		var m *float64
		for _, p := range f.Points {
			if p.Count > 0 && (m == nil || p.Min < *m) {
				v := p.Min
				m = &v
			}
		}
		switch f.Field {
		case "battery.charge":
			charge = m
		case "battery.runtime":
			runtime = m
		}
	}
	return charge, runtime, nil
}
