package web_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/keyring/keyringtest"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/store/sqlite"
	"github.com/upswatch/upswatch/web"
)

// person is a plain HTTP client with its own cookies that does not follow
// redirects, so a test sees each answer.
type person struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newPerson(t *testing.T, base string) *person {
	jar, _ := cookiejar.New(nil)
	return &person{t: t, base: base, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (p *person) req(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	p.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, p.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := p.c.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (p *person) get(path string) (*http.Response, string) { return p.req("GET", path, nil, nil) }
func (p *person) post(path string, form url.Values) (*http.Response, string) {
	return p.req("POST", path, form, nil)
}

func TestSignIn(t *testing.T) {
	s := startServer(t)
	s.must("POST", "/v1/accounts", map[string]any{"id": "an", "name": "An Le", "email": "an@example.com",
		"language": "en", "time_zone": "UTC"}, nil, http.StatusCreated)
	anon := newPerson(t, s.base)

	t.Run("the login page and its headers", func(t *testing.T) {
		resp, body := anon.get("/login")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /login: %d", resp.StatusCode)
		}
		for _, want := range []string{`<label for="email">Email</label>`, `<label for="password">Password</label>`,
			`<button type="submit">Sign in</button>`} {
			if !strings.Contains(body, want) {
				t.Errorf("login page lacks %s", want)
			}
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			!strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("CSP %q", csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Error("no nosniff")
		}
	})

	t.Run("pages send strangers to the login page", func(t *testing.T) {
		resp, _ := anon.get("/units/123456789012?range=7d")
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther ||
			loc != "/login?next="+url.QueryEscape("/units/123456789012?range=7d") {
			t.Fatalf("%d to %q", resp.StatusCode, loc)
		}
		if resp, _ := anon.get("/v1/units"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("API without a session: %d", resp.StatusCode)
		}
	})

	link := s.invite("an")
	token := link[strings.LastIndex(link, "/")+1:]
	an := newPerson(t, s.base)

	t.Run("an invitation sets the password once", func(t *testing.T) {
		if resp, body := an.post("/invite/"+token, url.Values{"password": {"short"}, "confirm": {"short"}}); resp.StatusCode != http.StatusBadRequest ||
			!strings.Contains(body, "10 to 256 characters") {
			t.Fatalf("weak password: %d", resp.StatusCode)
		}
		if resp, body := an.post("/invite/"+token, url.Values{"password": {"one long secret"}, "confirm": {"another one"}}); resp.StatusCode != http.StatusBadRequest ||
			!strings.Contains(body, "differ") {
			t.Fatalf("mismatch: %d", resp.StatusCode)
		}
		resp, _ := an.post("/invite/"+token, url.Values{"password": {"one long secret"}, "confirm": {"one long secret"}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Fatalf("accept: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		var sess *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "upswatch_session" {
				sess = c
			}
		}
		if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode {
			t.Fatalf("session cookie %+v", sess)
		}
		if resp, _ := an.get("/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("fleet after sign-in: %d", resp.StatusCode)
		}
		again := newPerson(t, s.base)
		if resp, body := again.post("/invite/"+token, url.Values{"password": {"stolen link pw"}, "confirm": {"stolen link pw"}}); resp.StatusCode != http.StatusNotFound ||
			!strings.Contains(body, "invalid, used or expired") {
			t.Fatalf("second use: %d", resp.StatusCode)
		}
	})

	t.Run("the API takes the session cookie", func(t *testing.T) {
		if resp, body := an.get("/v1/accounts/an"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "an@example.com") {
			t.Fatalf("GET own account with the session: %d", resp.StatusCode)
		}
		if resp, _ := an.get("/v1/accounts"); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("admin-only list with an owner's session: %d", resp.StatusCode)
		}
	})

	t.Run("cross-site requests are refused", func(t *testing.T) {
		resp, _ := an.req("POST", "/account/profile", url.Values{"name": {"Mallory"}, "language": {"en"}, "time_zone": {"UTC"}},
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site form post: %d", resp.StatusCode)
		}
		resp, _ = an.req("PUT", "/v1/accounts/an/preferences", url.Values{}, map[string]string{"Origin": "https://evil.example"})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site API call: %d", resp.StatusCode)
		}
		resp, body := an.req("POST", "/account/profile", url.Values{"name": {"An Le"}, "language": {"vi"}, "time_zone": {"Asia/Ho_Chi_Minh"}},
			map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": s.base})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Đã lưu") {
			t.Fatalf("same-site profile save: %d", resp.StatusCode)
		}
	})

	t.Run("the admin token signs in as admin", func(t *testing.T) {
		op := newPerson(t, s.base)
		if resp, body := op.post("/login/admin", url.Values{"token": {"not it"}}); resp.StatusCode != http.StatusUnauthorized ||
			!strings.Contains(body, "not the admin token") {
			t.Fatalf("wrong token: %d", resp.StatusCode)
		}
		if resp, _ := op.post("/login/admin", url.Values{"token": {s.app.AdminToken()}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("admin token: %d", resp.StatusCode)
		}
		if resp, _ := op.get("/v1/accounts"); resp.StatusCode != http.StatusOK {
			t.Fatalf("admin list with the admin session: %d", resp.StatusCode)
		}
		// The account page makes invitation links for admins only.
		resp, body := op.post("/account/invite/an", url.Values{})
		i := strings.Index(body, s.base+"/invite/")
		if resp.StatusCode != http.StatusOK || i < 0 {
			t.Fatalf("console invitation: %d", resp.StatusCode)
		}
		link := body[i : i+strings.IndexByte(body[i:], '<')]
		if resp, _ := newPerson(t, s.base).get(link[len(s.base):]); resp.StatusCode != http.StatusOK {
			t.Fatalf("the console's invitation link: %d", resp.StatusCode)
		}
		if resp, _ := an.post("/account/invite/an", url.Values{}); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("an owner making invitations: %d", resp.StatusCode)
		}
	})

	t.Run("account settings are saved through the API's rules", func(t *testing.T) {
		same := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": s.base}
		if resp, body := an.req("POST", "/account/contacts", url.Values{"phones": {"+84901234567\n"}, "fcm": {"fcm-token-1\nfcm-token-2"}}, same); resp.StatusCode != http.StatusOK ||
			!strings.Contains(body, "Đã lưu") {
			t.Fatalf("contacts: %d", resp.StatusCode)
		}
		if resp, body := an.req("POST", "/account/contacts", url.Values{"phones": {"0901234567"}}, same); resp.StatusCode != http.StatusBadRequest ||
			!strings.Contains(body, `role="alert"`) {
			t.Fatalf("a phone number not in E.164: %d", resp.StatusCode)
		}
		form := url.Values{"ch_critical": {"sms", "fcm"}, "ch_warning": {"fcm"}, "quiet_from": {"22:00"}, "quiet_to": {"06:30"}}
		if resp, _ := an.req("POST", "/account/preferences", form, same); resp.StatusCode != http.StatusOK {
			t.Fatalf("preferences: %d", resp.StatusCode)
		}
		var acct struct {
			Contacts struct {
				Phones    []string `json:"phones"`
				FCMTokens []string `json:"fcm_tokens"`
			} `json:"contacts"`
			Preferences struct {
				Channels        map[string][]string         `json:"channels"`
				QuietHours      struct{ Start, End string } `json:"quiet_hours"`
				WeeklyReportOff bool                        `json:"weekly_report_off"`
			} `json:"preferences"`
		}
		s.must("GET", "/v1/accounts/an", nil, &acct, http.StatusOK)
		if strings.Join(acct.Contacts.Phones, ",") != "+84901234567" || len(acct.Contacts.FCMTokens) != 2 ||
			strings.Join(acct.Preferences.Channels["critical"], ",") != "sms,fcm" || strings.Join(acct.Preferences.Channels["warning"], ",") != "fcm" ||
			len(acct.Preferences.Channels["info"]) != 0 || acct.Preferences.QuietHours.Start != "22:00" || acct.Preferences.QuietHours.End != "06:30" ||
			!acct.Preferences.WeeklyReportOff {
			t.Fatalf("stored account (the weekly summary box unticked): %+v", acct)
		}
		form.Set("weekly_report", "on")
		if resp, body := an.req("POST", "/account/preferences", form, same); resp.StatusCode != http.StatusOK ||
			!strings.Contains(body, `name="weekly_report" value="on" checked`) {
			t.Fatalf("preferences with the weekly summary: %d", resp.StatusCode)
		}
		acct.Preferences.WeeklyReportOff = false
		s.must("GET", "/v1/accounts/an", nil, &acct, http.StatusOK)
		if acct.Preferences.WeeklyReportOff {
			t.Fatal("the weekly summary box ticked left the account opted out")
		}
		resp, body := an.req("POST", "/account/test", url.Values{}, same)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<td>sms</td>") || !strings.Contains(body, "<td>fcm</td>") {
			t.Fatalf("test notification: %d", resp.StatusCode)
		}
	})

	t.Run("signing out ends the session everywhere", func(t *testing.T) {
		u, _ := url.Parse(s.base)
		old := an.c.Jar.Cookies(u)
		if resp, _ := an.req("POST", "/logout", url.Values{}, nil); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: %d", resp.StatusCode)
		}
		thief := newPerson(t, s.base)
		thief.c.Jar.SetCookies(u, old)
		if resp, _ := thief.get("/"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("the old cookie still works: %d", resp.StatusCode)
		}
	})

	t.Run("deleting the account ends its sessions and erases its password", func(t *testing.T) {
		p := newPerson(t, s.base)
		link := s.invite("an")
		tok := link[strings.LastIndex(link, "/")+1:]
		if resp, _ := p.post("/invite/"+tok, url.Values{"password": {"a new long secret"}, "confirm": {"a new long secret"}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("accept: %d", resp.StatusCode)
		}
		s.must("DELETE", "/v1/accounts/an", nil, nil, http.StatusNoContent)
		if resp, _ := p.get("/"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("deleted account's session: %d", resp.StatusCode)
		}
		s.must("POST", "/v1/accounts", map[string]any{"id": "an", "name": "An Le", "email": "an@example.com",
			"language": "en", "time_zone": "UTC"}, nil, http.StatusCreated)
		other := newPerson(t, s.base)
		if resp, body := other.post("/login", url.Values{"email": {"an@example.com"}, "password": {"a new long secret"}}); resp.StatusCode != http.StatusUnauthorized ||
			!strings.Contains(body, "no password yet") {
			t.Fatalf("the old password survived the deletion: %d", resp.StatusCode)
		}
	})
	t.Run("failed sign-ins are limited per account", func(t *testing.T) {
		s.must("POST", "/v1/accounts", map[string]any{"id": "bo", "name": "Bo", "email": "bo@example.com",
			"language": "en", "time_zone": "UTC"}, nil, http.StatusCreated)
		link := s.invite("bo")
		if resp, _ := newPerson(t, s.base).post(link[len(s.base):], url.Values{"password": {"one long secret"}, "confirm": {"one long secret"}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("accept: %d", resp.StatusCode)
		}
		bo := newPerson(t, s.base)
		resp, _ := bo.post("/login", url.Values{"email": {" Bo@Example.com "}, "password": {"one long secret"}, "next": {"/alerts"}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/alerts" {
			t.Fatalf("right password: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp, _ := bo.get("/alerts"); resp.StatusCode != http.StatusOK {
			t.Fatalf("alerts page after sign-in: %d", resp.StatusCode)
		}
		guesser := newPerson(t, s.base)
		for i := range 5 {
			resp, body := guesser.post("/login", url.Values{"email": {"bo@example.com"}, "password": {"guess number " + string(rune('a'+i))}})
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not right") {
				t.Fatalf("guess %d: %d", i, resp.StatusCode)
			}
		}
		resp, body := guesser.post("/login", url.Values{"email": {"bo@example.com"}, "password": {"one long secret"}})
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Try again in 3 minutes") {
			t.Fatalf("sixth try, even right: %d", resp.StatusCode)
		}
		// An unknown account answers like a wrong password.
		if resp, body := guesser.post("/login", url.Values{"email": {"nobody@example.com"}, "password": {"whatever it is"}}); resp.StatusCode != http.StatusUnauthorized ||
			!strings.Contains(body, "not right") {
			t.Fatalf("unknown email: %d", resp.StatusCode)
		}
	})

}

// Two consoles on one NATS stand for two serve instances behind a load
// balancer: a guesser alternating between them spends one budget when
// they share the limiter, and twice the budget with the in-memory
// default (the control, which shows the test tells them apart).
func TestSignInLimitAcrossInstances(t *testing.T) {
	for _, tc := range []struct {
		name      string
		shared    bool
		sixthCode int
	}{
		{"shared limiter: one budget", true, http.StatusTooManyRequests},
		{"in-memory limiter: a budget per instance", false, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			ns, _, js := bustest.Server(t)
			units, err := registry.Open(ctx, js, registry.Options{})
			if err != nil {
				t.Fatal(err)
			}
			hist, err := sqlite.Open(filepath.Join(t.TempDir(), "history.db"), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = hist.Close() })
			accounts, err := recipients.Open(ctx, js, recipients.Options{Sealer: keyringtest.Records(t)})
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = accounts.Run(ctx) }()
			<-accounts.Ready()
			logins, err := access.Open(ctx, js, access.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var bases []string
			for range 2 {
				cfg := web.Config{AdminToken: "t", Units: units, History: hist, Alerts: engine.NewAlerts(js, units),
					Accounts: accounts, Access: logins}
				if tc.shared {
					_, js := bustest.Connect(t, ns) // each instance its own connection
					l, err := access.OpenSharedFailureLimiter(ctx, js, access.SharedLimiterOptions{
						AccountBurst: 5, AddrBurst: 20, Every: 3 * time.Minute})
					if err != nil {
						t.Fatal(err)
					}
					cfg.Limiter = l
				}
				c, err := web.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				srv := httptest.NewServer(c)
				t.Cleanup(srv.Close)
				bases = append(bases, srv.URL)
			}
			// An unknown email fails like a wrong password, and is
			// counted the same.
			for i := range 6 {
				want := http.StatusUnauthorized
				if i == 5 {
					want = tc.sixthCode
				}
				resp, body := newPerson(t, bases[i%2]).post("/login", url.Values{"email": {"bo@example.com"}, "password": {"guess " + strconv.Itoa(i)}})
				if resp.StatusCode != want {
					t.Fatalf("guess %d on instance %d: %d, want %d", i+1, i%2, resp.StatusCode, want)
				}
				if want == http.StatusTooManyRequests && !strings.Contains(body, "Try again in 3 minutes") {
					t.Fatalf("guess %d: the refusal does not say how long to wait", i+1)
				}
			}
		})
	}
}
