package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store/sqlite"
	"github.com/upswatch/upswatch/ups"
)

// listUnits is a registry of fixed units.
type listUnits struct {
	Units
	units []registry.Unit
}

func (l listUnits) Lookup(s ups.Serial) (registry.Unit, bool) {
	i := slices.IndexFunc(l.units, func(u registry.Unit) bool { return u.Serial == s })
	if i < 0 {
		return registry.Unit{}, false
	}
	return l.units[i], true
}
func (l listUnits) List() []registry.Unit { return l.units }

// tokenAccounts resolves the token "tok-<id>" to account id.
type tokenAccounts struct {
	Accounts
	accts []recipients.Recipient
}

func (a tokenAccounts) Lookup(id string) (recipients.Recipient, bool) {
	i := slices.IndexFunc(a.accts, func(r recipients.Recipient) bool { return r.ID == id })
	if i < 0 {
		return recipients.Recipient{}, false
	}
	return a.accts[i], true
}

func (a tokenAccounts) Authenticate(tok string) (recipients.Recipient, bool) {
	id, ok := strings.CutPrefix(tok, "tok-")
	if !ok {
		return recipients.Recipient{}, false
	}
	return a.Lookup(id)
}

type noEvents struct{}

func (noEvents) Timeline(context.Context, ups.Serial, time.Time, time.Time, int) ([]rules.Event, error) {
	return nil, nil
}

// Three units: A and B at site hq, C at branch; "own" owns A and C,
// "mgr" manages hq. Each had one outage in the hour: A 60 s, B 120 s,
// C 300 s.
func TestReportScopeAndAccess(t *testing.T) {
	const (
		unitA ups.Serial = "100000000001"
		unitB ups.Serial = "100000000002"
		unitC ups.Serial = "100000000003"
	)
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	outage := map[ups.Serial]time.Duration{unitA: time.Minute, unitB: 2 * time.Minute, unitC: 5 * time.Minute}
	hist, err := sqlite.Open(filepath.Join(t.TempDir(), "history.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hist.Close() })
	var rs []ups.Reading
	for serial, d := range outage {
		for ts := t0; ts.Before(t0.Add(time.Hour)); ts = ts.Add(30 * time.Second) {
			status, volts := "OL", 230.0
			if !ts.Before(t0.Add(10*time.Minute)) && ts.Before(t0.Add(10*time.Minute+d)) {
				status, volts = "OB DISCHRG", 0
			}
			r := ups.Reading{Serial: serial, Time: ts, Status: ups.ParseStatus(status), HasStatus: true}
			if status != "OL" {
				r.SetText("input.transfer.reason", "blackout")
			}
			r.SetNum("input.voltage", volts)
			r.SetNum("input.voltage.nominal", 230)
			rs = append(rs, r)
		}
	}
	if err := hist.WriteReadings(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	units := listUnits{units: []registry.Unit{{Serial: unitA, Site: "hq"}, {Serial: unitB, Site: "hq"}, {Serial: unitC, Site: "branch"}}}
	accounts := tokenAccounts{accts: []recipients.Recipient{
		{Account: recipients.Account{ID: "own", Role: recipients.RoleOwner, Units: []ups.Serial{unitA, unitC}}},
		{Account: recipients.Account{ID: "mgr", Role: recipients.RoleManager, Sites: []string{"hq"}}},
	}}
	s, err := New(Config{AdminToken: "admin-token", Units: units, History: hist})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleNotify(accounts, nil)
	rep, err := report.New(hist, noEvents{})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleReports(rep)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)

	rng := "&from=" + t0.Format(time.RFC3339) + "&to=" + t0.Add(time.Hour).Format(time.RFC3339)
	tests := []struct {
		name, token, query string
		code               int
		units              []ups.Serial
		totalS             float64
	}{
		{"owner, own unit", "tok-own", "scope=unit&id=100000000001", 200, []ups.Serial{unitA}, 60},
		{"owner, another's unit", "tok-own", "scope=unit&id=100000000002", 404, nil, 0},
		{"owner, a site", "tok-own", "scope=site&id=hq", 404, nil, 0},
		{"owner, own fleet", "tok-own", "scope=account&id=own", 200, []ups.Serial{unitA, unitC}, 360},
		{"owner, another account", "tok-own", "scope=account&id=mgr", 404, nil, 0},
		{"manager, its site", "tok-mgr", "scope=site&id=hq", 200, []ups.Serial{unitA, unitB}, 180},
		{"manager, another site", "tok-mgr", "scope=site&id=branch", 404, nil, 0},
		{"manager, unit of its site", "tok-mgr", "scope=unit&id=100000000002", 200, []ups.Serial{unitB}, 120},
		{"manager, unit elsewhere", "tok-mgr", "scope=unit&id=100000000003", 404, nil, 0},
		{"manager, own fleet", "tok-mgr", "scope=account&id=mgr", 200, []ups.Serial{unitA, unitB}, 180},
		{"admin, any site", "admin-token", "scope=site&id=branch", 200, []ups.Serial{unitC}, 300},
		{"admin, any account", "admin-token", "scope=account&id=own", 200, []ups.Serial{unitA, unitC}, 360},
		{"admin, unknown site", "admin-token", "scope=site&id=nowhere", 404, nil, 0},
		{"admin, unknown account", "admin-token", "scope=account&id=nobody", 404, nil, 0},
		{"admin, bad serial", "admin-token", "scope=unit&id=12", 404, nil, 0},
		{"no token", "", "scope=site&id=hq", 401, nil, 0},
		{"unknown token", "tok-nobody", "scope=site&id=hq", 401, nil, 0},
		{"bad scope", "admin-token", "scope=planet&id=hq", 400, nil, 0},
		{"no id", "admin-token", "scope=site", 400, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/v1/reports?"+tc.query+rng, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if tc.code != 200 {
				return
			}
			var got reportJSON
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Units, tc.units) || got.Outages.Count != len(tc.units) || got.Outages.TotalS != tc.totalS {
				t.Errorf("units %v, %d outages, %gs on battery; want %v, %d, %gs", got.Units, got.Outages.Count, got.Outages.TotalS, tc.units, len(tc.units), tc.totalS)
			}
		})
	}

	t.Run("too long a range", func(t *testing.T) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/reports?scope=site&id=hq&from="+t0.Add(-93*24*time.Hour).Format(time.RFC3339)+"&to="+t0.Format(time.RFC3339), nil)
		req.Header.Set("Authorization", "Bearer admin-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
	})

	for _, how := range []string{"format", "accept"} {
		t.Run("csv by "+how, func(t *testing.T) {
			url := srv.URL + "/v1/reports?scope=site&id=hq" + rng
			if how == "format" {
				url += "&format=csv"
			}
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer tok-mgr")
			if how == "accept" {
				req.Header.Set("Accept", "text/csv")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
				t.Fatalf("status %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			rows, err := csv.NewReader(resp.Body).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			// Header, A, B, total.
			if len(rows) != 4 {
				t.Fatalf("%d rows: %v", len(rows), rows)
			}
			col := slices.Index(rows[0], "on_battery_s")
			unit := slices.Index(rows[0], "unit")
			reason := slices.Index(rows[0], "transfers_by_reason")
			want := [][3]string{{"100000000001", "60", "blackout=1"}, {"100000000002", "120", "blackout=1"}, {"", "180", "blackout=2"}}
			for i, w := range want {
				if rows[i+1][unit] != w[0] || rows[i+1][col] != w[1] || rows[i+1][reason] != w[2] {
					t.Errorf("row %d: unit %q on battery %q transfers %q, want %q %q %q", i+1, rows[i+1][unit], rows[i+1][col], rows[i+1][reason], w[0], w[1], w[2])
				}
			}
		})
	}
}
