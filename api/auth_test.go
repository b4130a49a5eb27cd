package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/keyring/keyringtest"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/products"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/ups"
)

const testCatalog = `
products:
  - {model: Old 500, digits: 12, prefix: "0500", eligible: false}
  - {model: Home 1000, digits: 12, prefix: "1100", eligible: true, regions: ["*"]}
  - {model: Saigon 800, digits: 12, prefix: "1080", eligible: true, regions: ["VN"]}
`

type authFixture struct {
	srv                         *httptest.Server
	admin, ownerA, ownerB, mgrA string
}

func newAuthFixture(t *testing.T) authFixture {
	t.Helper()
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	accounts, err := recipients.Open(ctx, js, recipients.Options{Sealer: keyringtest.Records(t)})
	if err != nil {
		t.Fatal(err)
	}
	units, err := registry.Open(ctx, js, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := products.Parse([]byte(testCatalog))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{AdminToken: "admin-token-0123456789", Units: units, History: noHistory{}, Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleNotify(accounts, notifier{erased: map[string]int{}})
	mk := func(r recipients.Recipient) string {
		if _, err := accounts.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		tok, _, err := accounts.CreateToken(ctx, r.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	f := authFixture{admin: "admin-token-0123456789",
		ownerA: mk(recipients.Recipient{Account: recipients.Account{ID: "owner-a", Region: "VN", Language: "vi"}}),
		ownerB: mk(recipients.Recipient{Account: recipients.Account{ID: "owner-b", Region: "US", Language: "en"}}),
		mgrA:   mk(recipients.Recipient{Account: recipients.Account{ID: "mgr-a", Role: recipients.RoleManager, Sites: []string{"site-a"}}}),
	}
	for _, u := range []struct{ serial, site string }{{"110000000001", "site-a"}, {"110000000002", "site-b"}} {
		if _, _, err := units.Add(ctx, ups.Serial(u.serial), "", u.site); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := accounts.SetUnit(ctx, "owner-a", "110000000001", true); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.SetUnit(ctx, "owner-b", "110000000002", true); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(s)
	t.Cleanup(f.srv.Close)
	return f
}

func (f authFixture) do(t *testing.T, token, method, path, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAuthorizationAcrossRoles(t *testing.T) {
	f := newAuthFixture(t)
	cases := []struct {
		name, token, method, path string
		want                      int
	}{
		{"no token", "", "GET", "/v1/units/110000000001", 401},
		{"bad token", "uwt_nope", "GET", "/v1/units/110000000001", 401},
		{"owner reads own unit", f.ownerA, "GET", "/v1/units/110000000001", 200},
		{"owner reads other owner's unit", f.ownerA, "GET", "/v1/units/110000000002", 404},
		{"owner reads other owner's history", f.ownerA, "GET", "/v1/units/110000000002/latest", 404},
		{"owner removes other owner's unit", f.ownerB, "DELETE", "/v1/units/110000000001", 404},
		{"owner reads own account", f.ownerA, "GET", "/v1/accounts/owner-a", 200},
		{"owner reads other account", f.ownerA, "GET", "/v1/accounts/owner-b", 404},
		{"owner changes other's contacts", f.ownerA, "PUT", "/v1/accounts/owner-b/contacts", 404},
		{"owner exports other account", f.ownerA, "GET", "/v1/accounts/owner-b/export", 404},
		{"owner deletes other account", f.ownerA, "DELETE", "/v1/accounts/owner-b", 404},
		{"owner makes token for other", f.ownerA, "POST", "/v1/accounts/owner-b/tokens", 404},
		{"owner claims a unit", f.ownerA, "PUT", "/v1/accounts/owner-a/units/110000000002", 403},
		{"owner grants self a site", f.ownerA, "PUT", "/v1/accounts/owner-a/sites/site-b", 403},
		{"owner lists accounts", f.ownerA, "GET", "/v1/accounts", 403},
		{"owner rotates keys", f.ownerA, "POST", "/v1/admin/keys/rotate", 403},
		{"manager reads unit of site A", f.mgrA, "GET", "/v1/units/110000000001", 200},
		{"manager reads unit of site B", f.mgrA, "GET", "/v1/units/110000000002", 404},
		{"manager reads history of site B", f.mgrA, "GET", "/v1/units/110000000002/history", 404},
		{"manager removes unit of site A", f.mgrA, "DELETE", "/v1/units/110000000001", 403},
		{"manager registers", f.mgrA, "POST", "/v1/units", 403},
		{"admin reads any unit", f.admin, "GET", "/v1/units/110000000002", 200},
		{"admin reads any account", f.admin, "GET", "/v1/accounts/owner-b", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := ""
			if c.method == "PUT" && strings.HasSuffix(c.path, "contacts") {
				body = `{"phones":["+84900000000"]}`
			}
			if c.method == "POST" && c.path == "/v1/units" {
				body = `{"serial":"110000000009"}`
			}
			if code, out := f.do(t, c.token, c.method, c.path, body); code != c.want {
				t.Fatalf("%s %s: %d, want %d: %s", c.method, c.path, code, c.want, out)
			}
		})
	}
	// Lists show only what the caller may see.
	for _, c := range []struct {
		token string
		want  []string
	}{{f.ownerA, []string{"110000000001"}}, {f.mgrA, []string{"110000000001"}}, {f.admin, []string{"110000000001", "110000000002"}}} {
		_, out := f.do(t, c.token, "GET", "/v1/units", "")
		var got struct {
			Units []struct{ Serial string } `json:"units"`
		}
		_ = json.Unmarshal([]byte(out), &got)
		var serials []string
		for _, u := range got.Units {
			serials = append(serials, u.Serial)
		}
		if strings.Join(serials, ",") != strings.Join(c.want, ",") {
			t.Errorf("list: got %v, want %v", serials, c.want)
		}
	}
}

func TestRegistrationErrors(t *testing.T) {
	f := newAuthFixture(t)
	cases := []struct {
		name, token, serial, lang string
		status                    int
		code, message             string
	}{
		{"malformed en", f.ownerB, "12345", "", 400, "invalid_serial", products.Message("invalid_serial", "en")},
		{"malformed vi", f.ownerA, "12345", "", 400, "invalid_serial", products.Message("invalid_serial", "vi")},
		{"ineligible en", f.ownerB, "050000000001", "", 422, "ineligible_serial", products.Message("ineligible_serial", "en")},
		{"ineligible vi", f.ownerA, "050000000001", "", 422, "ineligible_serial", products.Message("ineligible_serial", "vi")},
		{"unknown product vi", f.ownerA, "999900000001", "", 422, "ineligible_serial", products.Message("ineligible_serial", "vi")},
		{"region en", f.ownerB, "108000000001", "", 422, "region_not_sold", products.Message("region_not_sold", "en")},
		{"already registered en", f.ownerB, "110000000001", "", 409, "already_registered", products.Message("already_registered", "en")},
		{"already registered vi", f.ownerA, "110000000002", "", 409, "already_registered", products.Message("already_registered", "vi")},
		{"admin, Accept-Language vi", f.admin, "12345", "vi-VN", 400, "invalid_serial", products.Message("invalid_serial", "vi")},
		{"admin, Accept-Language en", f.admin, "110000000001", "en", 409, "already_registered", products.Message("already_registered", "en")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := f.do(t, c.token, "POST", "/v1/units", `{"serial":"`+c.serial+`"}`, "Accept-Language", c.lang)
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			_ = json.Unmarshal([]byte(out), &e)
			if code != c.status || e.Error.Code != c.code || e.Error.Message != c.message {
				t.Fatalf("got %d %s, want %d %s %q", code, out, c.status, c.code, c.message)
			}
		})
	}
	if products.Message("region_not_sold", "vi") == products.Message("region_not_sold", "en") {
		t.Fatal("no Vietnamese message")
	}
	// The account's language wins over Accept-Language; a registration on
	// behalf of an owner records the owner.
	code, out := f.do(t, f.ownerB, "POST", "/v1/units", `{"serial":"108000000002"}`, "Accept-Language", "vi")
	if code != 422 || !strings.Contains(out, products.Message("region_not_sold", "en")) {
		t.Fatalf("region: %d %s", code, out)
	}
	code, out = f.do(t, f.admin, "POST", "/v1/units", `{"serial":"108000000002","owner":"owner-a"}`)
	if code != 201 || !strings.Contains(out, `"owner": "owner-a"`) || !strings.Contains(out, "Saigon 800") {
		t.Fatalf("admin on behalf: %d %s", code, out)
	}
	code, out = f.do(t, f.ownerA, "GET", "/v1/units/108000000002", "")
	if code != 200 {
		t.Fatalf("owner does not see the unit registered for it: %d %s", code, out)
	}
}
