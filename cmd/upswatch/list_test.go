package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// pagedAPI serves /v1/units and /v1/accounts as the API pages them: at most
// 100 items after ?cursor= (the last key of the previous page), with
// next_cursor set while more remain. It records the queries it got.
type pagedAPI struct {
	units, accounts []string
	mu              sync.Mutex
	queries         []string
}

func (p *pagedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.queries = append(p.queries, r.URL.Path+"?"+r.URL.RawQuery)
	p.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer admin-token" {
		http.Error(w, `{"error":{"code":"unauthorized","message":"no"}}`, http.StatusUnauthorized)
		return
	}
	q := r.URL.Query()
	var keys []string
	var item func(k string) any
	key := ""
	switch r.URL.Path {
	case "/v1/units":
		key, keys = "units", p.units
		site := q.Get("site")
		item = func(k string) any { return map[string]string{"serial": k, "name": "unit " + k, "site": site} }
	case "/v1/accounts":
		key, keys = "accounts", p.accounts
		item = func(k string) any {
			return map[string]string{"id": k, "role": "owner", "language": "en", "region": "VN"}
		}
	default:
		http.NotFound(w, r)
		return
	}
	cursor := q.Get("cursor")
	start, _ := slices.BinarySearch(keys, cursor)
	if cursor != "" && start < len(keys) && keys[start] == cursor {
		start++
	}
	end := min(start+100, len(keys))
	items := []any{}
	for _, k := range keys[start:end] {
		items = append(items, item(k))
	}
	next := ""
	if end < len(keys) {
		next = keys[end-1]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{key: items, "next_cursor": next})
}

// unit list and account list follow next_cursor to the last page, and the
// site filter reaches the server as one escaped query value.
func TestListsFollowCursor(t *testing.T) {
	api := &pagedAPI{}
	for i := range 250 {
		api.units = append(api.units, fmt.Sprintf("1000000%05d", i))
	}
	for i := range 120 {
		api.accounts = append(api.accounts, "acct-"+strconv.Itoa(1000+i))
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(append(args, "--server", srv.URL, "--token", "admin-token"), &out, &errOut); code != 0 {
			t.Fatalf("upswatch %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		return out.String()
	}

	const site = "hq & co/2?x=1#a"
	out := cli("unit", "list", "--site", site, "--json")
	var units []unitInfo
	if err := json.Unmarshal([]byte(out), &units); err != nil {
		t.Fatalf("unit list --json: %v\n%s", err, out)
	}
	if len(units) != len(api.units) || units[0].Serial != api.units[0] || units[len(units)-1].Serial != api.units[len(api.units)-1] {
		t.Fatalf("unit list gave %d units, want all %d", len(units), len(api.units))
	}
	for _, u := range units {
		if u.Site != site {
			t.Fatalf("the server read site %q, want %q", u.Site, site)
		}
	}
	if out := cli("unit", "list"); strings.Count(out, "\n") != 1+len(api.units) {
		t.Fatalf("unit list printed %d lines, want a header and %d units", strings.Count(out, "\n"), len(api.units))
	}

	out = cli("account", "list")
	for _, id := range api.accounts {
		if !strings.Contains(out, id+" ") {
			t.Fatalf("account list lacks %s:\n%s", id, out)
		}
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	want := []string{
		"/v1/units?site=hq+%26+co%2F2%3Fx%3D1%23a",
		"/v1/units?cursor=100000000099&site=hq+%26+co%2F2%3Fx%3D1%23a",
		"/v1/units?cursor=100000000199&site=hq+%26+co%2F2%3Fx%3D1%23a",
		"/v1/units?", "/v1/units?cursor=100000000099", "/v1/units?cursor=100000000199",
		"/v1/accounts?", "/v1/accounts?cursor=acct-1099",
	}
	if !slices.Equal(api.queries, want) {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(api.queries, "\n"), strings.Join(want, "\n"))
	}
}
