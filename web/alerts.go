package web

import (
	"cmp"

	"github.com/upswatch/upswatch/actions"
	"net/http"
	"slices"
	"time"

	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
)

// alertItem is an alert with its unit and, when firing, who
// acknowledged or silenced it.
type alertItem struct {
	rules.Event
	Unit      registry.Unit
	ID        string
	Ack       *actions.Ack
	AckBy     string
	Silence   *actions.Silence
	SilenceBy string
	// Error is the problem with the last form sent for this alert.
	Error string
}

type alertsPage struct {
	Firing     []alertItem
	Recent     []alertItem
	Site       string
	Sites      []string
	SilenceFor []string
	// CanAct: acknowledgements and silences are available.
	CanAct bool
}

// recentWindow is how far back the alerts page's history reaches.
const recentWindow = 7 * 24 * time.Hour

func (c *Console) alertsPage(w http.ResponseWriter, r *http.Request, v *view) {
	c.renderAlerts(w, r, v, "", "")
}

// renderAlerts renders the alerts page; errFor/errText put a form's
// problem on that alert's card.
func (c *Console) renderAlerts(w http.ResponseWriter, r *http.Request, v *view, errFor, errText string) {
	ctx := r.Context()
	site := r.URL.Query().Get("site")
	pg := alertsPage{Site: site, SilenceFor: silenceFor, CanAct: c.cfg.Actions != nil}
	visible := func(ev rules.Event) (registry.Unit, bool) {
		u, ok := c.cfg.Units.Lookup(ev.Serial)
		if !ok || !v.Principal.CanSeeAlert(ev.Rule, u) || (site != "" && u.Site != site) {
			return u, false
		}
		return u, true
	}
	for _, u := range c.visibleUnits(v.Principal) {
		if !slices.Contains(pg.Sites, u.Site) {
			pg.Sites = append(pg.Sites, u.Site)
		}
	}
	active, err := c.cfg.Alerts.Active(ctx, "")
	if err != nil {
		c.internal(w, v, "alerts page: active alerts", err)
		return
	}
	var acks map[string]actions.Ack
	var silences map[string]actions.Silence
	if c.cfg.Actions != nil {
		if acks, silences, err = c.cfg.Actions.Live(ctx); err != nil {
			c.internal(w, v, "alerts page: acknowledgements", err)
			return
		}
	}
	for _, ev := range active {
		u, ok := visible(ev)
		if !ok {
			continue
		}
		it := alertItem{Event: ev, Unit: u, ID: DomID(ev)}
		if a, ok := acks[ev.Fingerprint]; ok {
			it.Ack, it.AckBy = &a, c.actorName(a.By)
		}
		if sl, ok := silences[string(ev.Serial)+"/"+ev.Rule]; ok {
			it.Silence, it.SilenceBy = &sl, c.actorName(sl.By)
		}
		if ev.Fingerprint == errFor || DomID(ev) == errFor {
			it.Error = errText
		}
		pg.Firing = append(pg.Firing, it)
	}
	// Most urgent first, then the oldest.
	slices.SortStableFunc(pg.Firing, func(a, b alertItem) int {
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), a.StartedAt.Compare(b.StartedAt))
	})
	// Reminders repeat what the list above says; the history keeps the
	// changes.
	recent, err := c.cfg.Alerts.Recent(ctx, v.Now.Add(-recentWindow), 200, func(ev rules.Event) bool {
		_, ok := visible(ev)
		return ok && ev.Kind != rules.Reminder
	})
	if err != nil {
		c.internal(w, v, "alerts page: recent alerts", err)
		return
	}
	for _, ev := range recent {
		u, _ := c.cfg.Units.Lookup(ev.Serial)
		pg.Recent = append(pg.Recent, alertItem{Event: ev, Unit: u, ID: DomID(ev)})
	}
	v.Page = pg
	code := http.StatusOK
	if errText != "" {
		code = http.StatusBadRequest
	}
	v.fragment = r.Header.Get("HX-Request") == "true"
	c.render(w, code, "alerts", v)
}
