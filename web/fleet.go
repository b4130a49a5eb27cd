package web

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/upswatch/upswatch/api"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// States of a unit on the fleet page, most urgent first. The scripts
// (web/ui/src/state.js) classify live updates with the same rules.
const (
	StateLost       = "lost"
	StateLowBattery = "low_battery"
	StateOnBattery  = "on_battery"
	StateAlarm      = "alarm"
	StateOnline     = "online"
	StateNoData     = "nodata"
)

// States lists them in the order of the filter and the counts.
var States = []string{StateOnBattery, StateLowBattery, StateLost, StateAlarm, StateOnline, StateNoData}

// alarmFlags are ups.status flags that need a person's attention.
var alarmFlags = []string{"ALARM", "OVER", "FSD", "BYPASS", "OFF", "RB"}

// classify says a unit's state from its latest reading (nil: none) and
// the rules of its alerts firing now.
func classify(latest *ups.Reading, firing []string) string {
	has := func(rule string) bool { return slices.Contains(firing, rule) }
	if has("comm_lost") || (latest != nil && latest.Presence == ups.PresenceOffline) {
		return StateLost
	}
	if latest == nil {
		if len(firing) > 0 {
			return StateAlarm
		}
		return StateNoData
	}
	flags := strings.Fields(latest.Status.Raw)
	if slices.Contains(flags, "LB") || has("low_battery") {
		return StateLowBattery
	}
	if slices.Contains(flags, "OB") || has("on_battery") {
		return StateOnBattery
	}
	for _, f := range alarmFlags {
		if slices.Contains(flags, f) {
			return StateAlarm
		}
	}
	if len(firing) > 0 {
		return StateAlarm
	}
	return StateOnline
}

// row is one unit on the fleet page.
type row struct {
	Serial   ups.Serial
	Name     string
	Site     string
	State    string
	Status   string
	Firing   []string
	LastSeen time.Time
	Charge   *float64
	Runtime  *float64
	Load     *float64
	Input    *float64
}

type siteGroup struct {
	Site   string
	Rows   []row
	Counts map[string]int
}

type fleetPage struct {
	Sites     []siteGroup
	AllSites  []string
	Site      string
	State     string
	States    []string
	Total     int
	Counts    map[string]int
	Truncated bool
}

func num(r *ups.Reading, v ups.Var) *float64 {
	if x, ok := r.Num(v); ok {
		return &x
	}
	return nil
}

// visibleUnits lists the units p may see, by site then serial.
func (c *Console) visibleUnits(p api.Principal) []registry.Unit {
	var out []registry.Unit
	for _, u := range c.cfg.Units.List() {
		if p.CanSee(u) {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b registry.Unit) int {
		return cmp.Or(cmp.Compare(a.Site, b.Site), cmp.Compare(a.Serial, b.Serial))
	})
	return out
}

// firingBySerial maps each unit to the rules firing for it.
func (c *Console) firingBySerial(ctx context.Context) (map[ups.Serial][]string, []rules.Event, error) {
	active, err := c.cfg.Alerts.Active(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	m := map[ups.Serial][]string{}
	for _, ev := range active {
		// An area alert is the site's: it says nothing of the unit it
		// is anchored on.
		if ev.Area == "" {
			m[ev.Serial] = append(m[ev.Serial], ev.Rule)
		}
	}
	return m, active, nil
}

// rowOf builds a unit's row.
func (c *Console) rowOf(ctx context.Context, u registry.Unit, firing []string) (row, error) {
	rw := row{Serial: u.Serial, Name: u.Name, Site: u.Site, Firing: firing}
	latest, err := c.cfg.History.Latest(ctx, u.Serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		rw.State = classify(nil, firing)
		return rw, nil
	case err != nil:
		return rw, err
	}
	rw.State = classify(&latest, firing)
	rw.Status = latest.Status.Raw
	rw.LastSeen = latest.Time
	rw.Charge = num(&latest, ups.BatteryCharge)
	rw.Runtime = num(&latest, ups.BatteryRuntime)
	rw.Load = num(&latest, ups.UPSLoad)
	rw.Input = num(&latest, ups.InputVoltage)
	return rw, nil
}

func (c *Console) fleet(w http.ResponseWriter, r *http.Request, v *view) {
	ctx := r.Context()
	firing, _, err := c.firingBySerial(ctx)
	if err != nil {
		// The page is still useful without alerts: readings say most.
		c.log.Warn("fleet: active alerts unavailable", "err", err)
	}
	q := r.URL.Query()
	pg := fleetPage{Site: q.Get("site"), State: q.Get("state"), States: States, Counts: map[string]int{}}
	bySite := map[string]*siteGroup{}
	var order []string
	for _, u := range c.visibleUnits(v.Principal) {
		if !slices.Contains(pg.AllSites, u.Site) {
			pg.AllSites = append(pg.AllSites, u.Site)
		}
		if pg.Site != "" && u.Site != pg.Site {
			continue
		}
		rw, err := c.rowOf(ctx, u, firing[u.Serial])
		if err != nil {
			c.internal(w, v, "fleet: latest reading", err)
			return
		}
		pg.Counts[rw.State]++
		pg.Total++
		g := bySite[u.Site]
		if g == nil {
			g = &siteGroup{Site: u.Site, Counts: map[string]int{}}
			bySite[u.Site] = g
			order = append(order, u.Site)
		}
		g.Counts[rw.State]++
		if pg.State != "" && rw.State != pg.State {
			continue
		}
		g.Rows = append(g.Rows, rw)
	}
	for _, s := range order {
		pg.Sites = append(pg.Sites, *bySite[s])
	}
	v.Page = pg
	v.fragment = r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Target") == "fleet"
	c.render(w, http.StatusOK, "fleet", v)
}

// StateText is the localized name of a state.
func (v *view) StateText(s string) string { return v.T("state." + s) }
