package web

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
)

// alertItem is an alert with its unit.
type alertItem struct {
	rules.Event
	Unit registry.Unit
}

type alertsPage struct {
	Firing []alertItem
	Recent []alertItem
	Site   string
	Sites  []string
}

// recentWindow is how far back the alerts page's history reaches.
const recentWindow = 7 * 24 * time.Hour

func (c *Console) alertsPage(w http.ResponseWriter, r *http.Request, v *view) {
	ctx := r.Context()
	site := r.URL.Query().Get("site")
	pg := alertsPage{Site: site}
	visible := func(ev rules.Event) (registry.Unit, bool) {
		u, ok := c.cfg.Units.Lookup(ev.Serial)
		if !ok || !v.Principal.CanSee(u) || (site != "" && u.Site != site) {
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
	for _, ev := range active {
		if u, ok := visible(ev); ok {
			pg.Firing = append(pg.Firing, alertItem{ev, u})
		}
	}
	// Most urgent first, then the oldest.
	slices.SortStableFunc(pg.Firing, func(a, b alertItem) int {
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), a.StartedAt.Compare(b.StartedAt))
	})
	recent, err := c.cfg.Alerts.Recent(ctx, v.Now.Add(-recentWindow), 200, func(ev rules.Event) bool {
		_, ok := visible(ev)
		return ok
	})
	if err != nil {
		c.internal(w, v, "alerts page: recent alerts", err)
		return
	}
	for _, ev := range recent {
		u, _ := c.cfg.Units.Lookup(ev.Serial)
		pg.Recent = append(pg.Recent, alertItem{ev, u})
	}
	v.Page = pg
	c.render(w, http.StatusOK, "alerts", v)
}
