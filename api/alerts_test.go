package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// alertUnits is a registry fake: Lookup only.
type alertUnits struct {
	Units
	sites map[ups.Serial]string
}

func (u alertUnits) Lookup(s ups.Serial) (registry.Unit, bool) {
	site, ok := u.sites[s]
	return registry.Unit{Serial: s, Site: site}, ok
}

// fakeAlerts answers from a fixed list of events, like the engine's
// Alerts: Timeline filters on serial and [from, to) and keeps the latest
// limit; Active filters on site.
type fakeAlerts struct {
	units  alertUnits
	events []rules.Event
	active []rules.Event
	err    error
}

func (f *fakeAlerts) Timeline(_ context.Context, s ups.Serial, from, to time.Time, limit int) ([]rules.Event, error) {
	var out []rules.Event
	for _, ev := range f.events {
		if ev.Serial == s && !ev.At.Before(from) && ev.At.Before(to) {
			out = append(out, ev)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, f.err
}

func (f *fakeAlerts) Active(_ context.Context, site string) ([]rules.Event, error) {
	var out []rules.Event
	for _, ev := range f.active {
		if u, _ := f.units.Lookup(ev.Serial); site == "" || u.Site == site {
			out = append(out, ev)
		}
	}
	return out, f.err
}

func TestAlertEndpoints(t *testing.T) {
	const a, b = ups.Serial("111111111111"), ups.Serial("222222222222")
	t0 := time.Date(2025, 11, 24, 16, 0, 0, 0, time.UTC)
	units := alertUnits{sites: map[ups.Serial]string{a: "paris", b: "lyon"}}
	fire := func(s ups.Serial, at time.Duration) rules.Event {
		return rules.Event{Kind: rules.Firing, Rule: "on_battery", Serial: s, At: t0.Add(at), StartedAt: t0.Add(at)}
	}
	resolved := rules.Event{Kind: rules.Resolved, Rule: "on_battery", Serial: a, At: t0.Add(10 * time.Minute), Duration: 10 * time.Minute}
	q := &fakeAlerts{units: units,
		events: []rules.Event{fire(a, 0), resolved, fire(b, time.Minute), fire(a, time.Hour)},
		active: []rules.Event{fire(a, time.Hour), fire(b, time.Minute)}}
	s, err := New(Config{AdminToken: "tok", Units: units, History: struct{ store.History }{}})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleAlerts(q)

	type resp struct {
		Events []rules.Event `json:"events"`
		Alerts []rules.Event `json:"alerts"`
		Error  struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	for _, tc := range []struct {
		name, url, token string
		fail             error
		code             int
		errCode          string
		want             []rules.Event
	}{
		{name: "timeline", url: "/v1/units/111111111111/alerts?from=2025-11-24T15:00:00Z&to=2025-11-24T16:30:00Z",
			code: 200, want: []rules.Event{fire(a, 0), resolved}},
		{name: "timeline unix ms and limit", url: "/v1/units/111111111111/alerts?from=1763996400000&to=1764010800000&limit=1",
			code: 200, want: []rules.Event{fire(a, time.Hour)}},
		{name: "timeline empty", url: "/v1/units/222222222222/alerts?from=2025-11-24T17:00:00Z&to=2025-11-24T18:00:00Z",
			code: 200, want: []rules.Event{}},
		{name: "firing all", url: "/v1/alerts", code: 200, want: []rules.Event{fire(a, time.Hour), fire(b, time.Minute)}},
		{name: "firing of a site", url: "/v1/alerts?state=firing&site=lyon", code: 200, want: []rules.Event{fire(b, time.Minute)}},
		{name: "firing of a quiet site", url: "/v1/alerts?site=nice", code: 200, want: []rules.Event{}},
		{name: "unknown state", url: "/v1/alerts?state=resolved", code: 400, errCode: "invalid_query"},
		{name: "bad limit", url: "/v1/units/111111111111/alerts?limit=0", code: 400, errCode: "invalid_query"},
		{name: "bad time", url: "/v1/units/111111111111/alerts?from=yesterday", code: 400, errCode: "invalid_query"},
		{name: "to before from", url: "/v1/units/111111111111/alerts?from=1764010800000&to=1763996400000", code: 400, errCode: "invalid_query"},
		{name: "unknown unit", url: "/v1/units/333333333333/alerts", code: 404, errCode: "not_found"},
		{name: "bad serial", url: "/v1/units/12/alerts", code: 400, errCode: "invalid_serial"},
		{name: "no token", url: "/v1/alerts", token: "-", code: 401, errCode: "unauthorized"},
		{name: "store down", url: "/v1/alerts", fail: errors.New("nats: timeout"), code: 503, errCode: "alerts_unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q.err = tc.fail
			req := httptest.NewRequest(http.MethodGet, tc.url, nil)
			if tc.token != "-" {
				req.Header.Set("Authorization", "Bearer tok")
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			var got resp
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			if tc.errCode != "" {
				if got.Error.Code != tc.errCode {
					t.Fatalf("error code %q, want %q", got.Error.Code, tc.errCode)
				}
				return
			}
			list := got.Events
			if got.Alerts != nil {
				list = got.Alerts
			}
			if list == nil {
				t.Fatalf("no list in %s", w.Body)
			}
			if len(list) != len(tc.want) {
				t.Fatalf("got %d events, want %d: %s", len(list), len(tc.want), w.Body)
			}
			for i := range list {
				if list[i].Serial != tc.want[i].Serial || list[i].Kind != tc.want[i].Kind || !list[i].At.Equal(tc.want[i].At) {
					t.Fatalf("event %d = %+v, want %+v", i, list[i], tc.want[i])
				}
			}
		})
	}
}
