package web_test

// Browser tests: a real upswatch serve (embedded NATS, MQTT broker and
// SQLite), units fed through real MQTT publishes, and Debian's Chromium
// driven by chromedp, as a facility manager and an owner would use it.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/app"
	"github.com/upswatch/upswatch/internal/servetest"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
)

// server is one upswatch serve in-process (servetest).
type server struct {
	*servetest.Server
	t    testing.TB
	app  *app.App
	base string
}

func startServer(t testing.TB) *server {
	t.Helper()
	c := servetest.Config(t.TempDir())
	c.MQTT.ClientID = "upswatch-console-test"
	c.NATS.Partitions = 2
	c.MQTT.DeviceRate = 0 // the 7-day replay comes in a burst
	a, err := app.New(c, servetest.Logger(slog.LevelWarn))
	if err != nil {
		t.Fatal(err)
	}
	a.Out = io.Discard
	srv := servetest.Start(t, a, servetest.Options{Within: 60 * time.Second})
	return &server{Server: srv, t: t, app: a, base: srv.Base}
}

// call makes an admin API request, decoding a JSON answer into out.
func (s *server) call(method, path string, body, out any) (int, []byte) {
	s.t.Helper()
	code, raw := s.Call(method, path, body, out)
	if code == 0 {
		s.t.Fatalf("%s %s: %s", method, path, raw)
	}
	return code, []byte(raw)
}

func (s *server) must(method, path string, body, out any, want int) {
	s.t.Helper()
	if code, raw := s.call(method, path, body, out); code != want {
		s.t.Fatalf("%s %s: %d %s, want %d", method, path, code, raw, want)
	}
}

// unit is a registered unit and its MQTT connection.
type unit struct {
	Serial, Name, Site string
	client             paho.Client
}

func (s *server) register(serial, name, site string) *unit {
	s.t.Helper()
	var r struct {
		MQTT struct{ Username, Password string } `json:"mqtt"`
	}
	s.must("POST", "/v1/units", map[string]string{"serial": serial, "name": name, "site": site}, &r, http.StatusCreated)
	o := paho.NewClientOptions().AddBroker(s.app.MQTTURL()).SetClientID("dev-" + serial).
		SetUsername(r.MQTT.Username).SetPassword(r.MQTT.Password).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		s.t.Fatalf("device %s connect: %v", serial, tok.Error())
	}
	s.t.Cleanup(func() { c.Disconnect(0) })
	return &unit{Serial: serial, Name: name, Site: site, client: c}
}

// publish sends readings (one object, or an array for a replay).
func (u *unit) publish(t testing.TB, payload any) {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok := u.client.Publish("ups/"+u.Serial+"/telemetry", 1, false, b)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", u.Serial, tok.Error())
	}
}

// reading is a plausible reading at t; onBattery cuts the mains.
func reading(t time.Time, i int, onBattery bool) map[string]any {
	r := map[string]any{
		"ts": t.UnixMilli(), "ups.status": "OL", "input.voltage": 229 + float64(i%7), "output.voltage": 230,
		"input.frequency": 50 + float64(i%3)/10, "ups.load": 30 + float64(i%20), "battery.charge": 100,
		"battery.runtime": 2400 - i%60, "battery.temperature": 27 + float64(i%5)/2,
	}
	if onBattery {
		r["ups.status"], r["input.voltage"], r["battery.charge"] = "OB DISCHRG", 0, 90-float64(i%10)
	}
	return r
}

// browser starts headless Chromium (Debian's, installed by
// scripts/deps.sh) and collects every error its pages report.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func chromiumPath(t testing.TB) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (scripts/deps.sh installs it)")
	}
	t.Skip("chromium is not installed: run scripts/deps.sh")
	return ""
}

func newBrowser(t testing.TB) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{ctx: ctx}
}

// person opens a tab in a fresh browser context (its own cookies), as one
// person, and records the errors its pages report: exceptions,
// console.error, and the browser's own log (CSP violations, failed loads).
func (b *browser) person(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	return ctx
}

// pageErrors returns the errors collected since the last call.
func (b *browser) pageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.errors
	b.errors = nil
	return out
}

// forget drops the errors that mention substr (an expected 404).
func (b *browser) forget(substr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.errors[:0]
	for _, e := range b.errors {
		if !strings.Contains(e, substr) {
			kept = append(kept, e)
		}
	}
	b.errors = kept
}

// do runs actions within timeout.
func do(t testing.TB, ctx context.Context, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// get runs one action that answers a value.
func get[T any](t testing.TB, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	return strings.Join(strings.Fields(get(t, ctx, chromedp.Text(chromedp.CSS(sel)))), " ")
}

func attr(t testing.TB, ctx context.Context, sel, name string) string {
	t.Helper()
	return get(t, ctx, chromedp.AttributeValue(chromedp.CSS(sel), name)).Value
}

// texts is the text of every element sel matches, spaces collapsed.
func texts(t testing.TB, ctx context.Context, sel string) []string {
	t.Helper()
	b, _ := json.Marshal(sel)
	return get(t, ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll(`+string(b)+`)].map(e => e.textContent.trim().replace(/\s+/g, " "))`))
}

// invite issues an invitation link for account id.
func (s *server) invite(id string) string {
	s.t.Helper()
	var out struct {
		URL string `json:"url"`
	}
	s.must("POST", "/v1/accounts/"+id+"/invite", nil, &out, http.StatusCreated)
	return out.URL
}

// acceptInvite sets a password through the invitation page and lands on
// the fleet.
func acceptInvite(t testing.TB, ctx context.Context, link, password string) {
	t.Helper()
	do(t, ctx, 20*time.Second,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`#password`)),
		chromedp.SendKeys(chromedp.CSS(`#password`), password),
		chromedp.SendKeys(chromedp.CSS(`#confirm`), password),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`#fleet`)),
	)
}

// cookies returns the tab's cookies, for plain HTTP requests made as the
// same person.
func cookies(t testing.TB, ctx context.Context) []*http.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*http.Cookie
	for _, c := range res.Cookies {
		out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
	}
	return out
}

// needAssets stops a browser test early and clearly when the console's
// scripts were not built (a plain `go test` without `make assets`): the
// pages then have no live updates or charts to test.
func needAssets(t testing.TB, base string) {
	t.Helper()
	resp, err := http.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "/static/dist/app.js") {
		t.Fatal("the console's scripts are not built: run `make assets` (make test does) before these tests")
	}
}

func TestConsole(t *testing.T) {
	s := startServer(t)
	needAssets(t, s.base)
	b := newBrowser(t)
	now := time.Now().UTC().Truncate(time.Minute)

	a1 := s.register("900100000001", "Rack A1", "hq")
	a2 := s.register("900100000002", "Rack A2", "hq")
	b1 := s.register("900200000001", "Branch B1", "branch")
	s.must("POST", "/v1/accounts", map[string]any{"id": "lan", "role": "manager", "name": "Lan Tran",
		"email": "lan@example.com", "language": "en", "time_zone": "Asia/Ho_Chi_Minh", "sites": []string{"hq"}}, nil, http.StatusCreated)
	s.must("POST", "/v1/accounts", map[string]any{"id": "minh", "role": "owner", "name": "Minh Pham",
		"email": "minh@example.com", "language": "vi", "time_zone": "Asia/Ho_Chi_Minh", "units": []string{b1.Serial}}, nil, http.StatusCreated)

	// Seven days of A1 at one reading a minute, replayed as a device
	// would after being offline (oldest first, 1,000 a message), with a
	// 20-minute outage two days ago.
	const week = 7 * 24 * 60
	outageFrom, outageTo := week-2*24*60, week-2*24*60+20
	var batch []map[string]any
	for i := range week {
		ts := now.Add(time.Duration(i-week+1) * time.Minute)
		r := reading(ts, i, i >= outageFrom && i < outageTo)
		// Half an hour boosting a low input, an hour before the outage;
		// the outage's reason, reported from its start on.
		if i >= outageFrom-60 && i < outageFrom-30 {
			r["ups.status"] = "OL BOOST"
		}
		if i >= outageFrom {
			r["input.transfer.reason"] = "input voltage out of range"
		}
		batch = append(batch, r)
		if len(batch) == 1000 || i == week-1 {
			a1.publish(t, batch)
			batch = nil
		}
	}
	a2.publish(t, reading(time.Now(), 1, false))
	b1.publish(t, reading(time.Now(), 2, false))
	wait.Within(t, 60*time.Second, "the week of A1 stored", func() bool {
		var h struct {
			Fields []struct {
				Points []struct{ Count int } `json:"points"`
			} `json:"fields"`
		}
		q := fmt.Sprintf("/v1/units/%s/history?from=%s&to=%s&every=24h&fields=input.voltage", a1.Serial,
			now.Add(-8*24*time.Hour).Format(time.RFC3339), now.Add(time.Minute).Format(time.RFC3339))
		if code, _ := s.call("GET", q, nil, &h); code != http.StatusOK || len(h.Fields) != 1 {
			return false
		}
		n := 0
		for _, p := range h.Fields[0].Points {
			n += p.Count
		}
		return n == week
	})
	for _, u := range []*unit{a2, b1} {
		wait.Within(t, 30*time.Second, "latest of "+u.Serial, func() bool {
			code, _ := s.call("GET", "/v1/units/"+u.Serial+"/latest", nil, nil)
			return code == http.StatusOK
		})
	}

	lan := b.person(t)
	t.Run("sign in through the invitation link", func(t *testing.T) {
		acceptInvite(t, lan, s.invite("lan"), "a long enough secret")
		if h1 := text(t, lan, "h1"); h1 != "Fleet" {
			t.Fatalf("landed on %q, want the fleet", h1)
		}
	})

	t.Run("the fleet lists the person's units and no others", func(t *testing.T) {
		rows := texts(t, lan, `tr[data-serial] th`)
		want := []string{"Rack A1 " + a1.Serial, "Rack A2 " + a2.Serial}
		if strings.Join(rows, "|") != strings.Join(want, "|") {
			t.Fatalf("rows %q, want %q", rows, want)
		}
	})

	t.Run("an outage turns the row to on battery without a reload", func(t *testing.T) {
		do(t, lan, 15*time.Second,
			chromedp.Navigate(s.base+"/"),
			chromedp.WaitVisible(chromedp.CSS(`[data-feed]`)), // the event stream is open
		)
		get(t, lan, chromedp.Evaluate[string](`window.__sameDocument = "yes"`))
		a2.publish(t, map[string]any{"ups.status": "OB DISCHRG", "input.voltage": 0, "battery.charge": 95, "battery.runtime": 1500})
		row := `tr#u-` + a2.Serial
		do(t, lan, 15*time.Second, chromedp.WaitVisible(chromedp.CSS(row+`[data-state="on_battery"]`)))
		badge := text(t, lan, row+` [data-f="state"]`)
		same := get(t, lan, chromedp.Evaluate[string](`window.__sameDocument || "reloaded"`))
		if badge != "On battery" || same != "yes" {
			t.Fatalf("badge %q, document %q; want On battery without a reload", badge, same)
		}
		if n := text(t, lan, `[data-count="on_battery"]`); n != "1" {
			t.Fatalf("on battery count %q, want 1", n)
		}
		if n := text(t, lan, `section.site [data-site-count="on_battery"]`); n != "1 On battery" {
			t.Fatalf("the site's on battery count reads %q, want 1 On battery", n)
		}
	})

	t.Run("acknowledge shows who and why to everyone and clears on resolve", func(t *testing.T) {
		// The outage of the last subtest, a further reading 7 s on (past
		// on_battery's pending period, in event time) fires the alert.
		base := time.Now()
		a2.publish(t, map[string]any{"ts": base.UnixMilli(), "ups.status": "OB DISCHRG", "input.voltage": 0, "battery.charge": 94})
		a2.publish(t, map[string]any{"ts": base.Add(7 * time.Second).UnixMilli(), "ups.status": "OB DISCHRG", "input.voltage": 0, "battery.charge": 93})
		var fp string
		wait.Within(t, 30*time.Second, "on_battery fires for A2", func() bool {
			var out struct {
				Alerts []struct{ Rule, Serial, Fingerprint string } `json:"alerts"`
			}
			s.call("GET", "/v1/alerts", nil, &out)
			for _, a := range out.Alerts {
				if a.Serial == a2.Serial && a.Rule == "on_battery" {
					fp = a.Fingerprint
				}
			}
			return fp != ""
		})
		card := "#a-" + strings.ReplaceAll(strings.ReplaceAll(fp, "/", "."), ".", `\.`)
		do(t, lan, 20*time.Second,
			chromedp.Navigate(s.base+"/alerts"),
			chromedp.WaitVisible(chromedp.CSS(card+` input[data-reason="ack"]`)),
			chromedp.SendKeys(chromedp.CSS(card+` input[data-reason="ack"]`), "Generator test by facilities"),
			chromedp.Click(chromedp.CSS(card+` form[action$="/ack"] button`)),
			chromedp.WaitVisible(chromedp.CSS(card+` [data-ack]`)),
		)
		ack := text(t, lan, card+` [data-ack]`)
		if !strings.HasPrefix(ack, "Acknowledged by Lan Tran at ") || !strings.Contains(ack, "Generator test by facilities") {
			t.Fatalf("acknowledgement reads %q", ack)
		}
		// Another recipient sees it: the operator, signed in with the
		// admin token.
		op := b.person(t)
		do(t, op, 20*time.Second,
			chromedp.Navigate(s.base+"/login"),
			chromedp.Click(chromedp.CSS(`details summary`)),
			chromedp.SendKeys(chromedp.CSS(`#token`), s.app.AdminToken()),
			chromedp.Submit(chromedp.CSS(`#token`)),
			chromedp.WaitVisible(chromedp.CSS(`#fleet`)),
			chromedp.Navigate(s.base+"/alerts"),
			chromedp.WaitVisible(chromedp.CSS(card+` [data-ack]`)),
		)
		// Each reads the time in their own zone (Lan: Asia/Ho_Chi_Minh).
		if got := text(t, op, card+` [data-ack]`); !strings.HasPrefix(got, "Acknowledged by Lan Tran at ") ||
			!strings.HasSuffix(got, ": Generator test by facilities") {
			t.Fatalf("the operator sees %q", got)
		}
		// Mains back: the alert resolves, and the card leaves both open
		// alerts pages without a reload.
		a2.publish(t, map[string]any{"ts": base.Add(30 * time.Second).UnixMilli(), "ups.status": "OL CHRG", "input.voltage": 231, "battery.charge": 93})
		do(t, lan, 30*time.Second, chromedp.WaitNotPresent(chromedp.CSS(card)))
		do(t, op, 30*time.Second, chromedp.WaitNotPresent(chromedp.CSS(card)))
		var audit struct {
			Actions []struct {
				Action string                `json:"action"`
				By     struct{ Name string } `json:"by"`
				Reason string                `json:"reason"`
			} `json:"actions"`
		}
		s.must("GET", "/v1/units/"+a2.Serial+"/alert-actions", nil, &audit, http.StatusOK)
		var seen []string
		for _, a := range audit.Actions {
			seen = append(seen, a.Action+":"+a.By.Name)
		}
		if !slices.Contains(seen, "acknowledged:Lan Tran") || !slices.Contains(seen, "ack_cleared:system") {
			t.Fatalf("audit %v, want Lan Tran's acknowledgement and its clearing on resolve", seen)
		}
	})

	t.Run("the unit page draws seven days of charts", func(t *testing.T) {
		do(t, lan, 30*time.Second,
			chromedp.Navigate(s.base+"/units/"+a1.Serial+"?range=7d"),
			chromedp.WaitReady(chromedp.CSS(`#charts[data-charts]`)),
		)
		if e := attr(t, lan, "#charts", "data-error"); e != "" {
			t.Fatalf("charts failed: %s", e)
		}
		n, _ := strconv.Atoi(attr(t, lan, "#charts", "data-charts"))
		p, _ := strconv.Atoi(attr(t, lan, "#charts", "data-points"))
		if n < 6 || p/n < week-10 {
			t.Fatalf("%d charts with %d points in all, want 6 with about %d each", n, p, week)
		}
		if c := get(t, lan, chromedp.Evaluate[int](`document.querySelectorAll("#charts canvas").length`)); c != n {
			t.Fatalf("%d canvases for %d charts", c, n)
		}
		t.Logf("unit page: %d charts, %d points, fetched and drawn in %s ms", n, p, attr(t, lan, "#charts", "data-ms"))
	})

	t.Run("the CSV of the range shown matches the API's numbers", func(t *testing.T) {
		href := attr(t, lan, `a[download]`, "href") // the unit page of the last subtest, 7 days
		if !strings.Contains(href, "format=csv") {
			t.Fatalf("CSV link %q", href)
		}
		fetch := func(u string) (string, []byte) {
			req, _ := http.NewRequest("GET", s.base+u, nil)
			for _, c := range cookies(t, lan) {
				req.AddCookie(c)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
			}
			return resp.Header.Get("Content-Type"), b
		}
		ct, raw := fetch(href)
		if !strings.HasPrefix(ct, "text/csv") {
			t.Fatalf("CSV answered as %q", ct)
		}
		rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		_, js := fetch(strings.Replace(href, "format=csv", "format=json", 1))
		var h struct {
			Fields []struct {
				Field  string `json:"field"`
				Points []struct {
					Time           time.Time
					Mean, Min, Max float64
					Count          int
				} `json:"points"`
			} `json:"fields"`
		}
		if err := json.Unmarshal(js, &h); err != nil {
			t.Fatal(err)
		}
		var want [][]string
		for _, f := range h.Fields {
			for _, p := range f.Points {
				want = append(want, []string{p.Time.UTC().Format(time.RFC3339Nano), f.Field,
					strconv.FormatFloat(p.Mean, 'f', -1, 64), strconv.FormatFloat(p.Min, 'f', -1, 64),
					strconv.FormatFloat(p.Max, 'f', -1, 64), strconv.Itoa(p.Count)})
			}
		}
		if len(rows) < 2 || strings.Join(rows[0], ",") != "time,field,mean,min,max,count" {
			t.Fatalf("CSV header %v", rows[:min(1, len(rows))])
		}
		if len(rows)-1 != len(want) || len(want) < week {
			t.Fatalf("CSV has %d rows, the API %d points (want at least %d)", len(rows)-1, len(want), week)
		}
		for i, w := range want {
			if strings.Join(rows[i+1], ",") != strings.Join(w, ",") {
				t.Fatalf("row %d: CSV %v, API %v", i+1, rows[i+1], w)
			}
		}
	})

	t.Run("a manager of site hq opening a unit of site branch gets 404", func(t *testing.T) {
		do(t, lan, 15*time.Second, chromedp.Navigate(s.base+"/units/"+b1.Serial))
		if h1 := text(t, lan, "h1"); h1 != "Not found" {
			t.Fatalf("h1 %q, want Not found", h1)
		}
		b.forget("/units/" + b1.Serial) // the browser logs the 404 it was meant to get
		// The status codes, page and API alike, with the same session.
		ck := cookies(t, lan)
		for path, want := range map[string]int{
			"/units/" + b1.Serial: http.StatusNotFound, "/v1/units/" + b1.Serial: http.StatusNotFound,
			"/units/" + a1.Serial: http.StatusOK, "/v1/units/" + a1.Serial: http.StatusOK,
		} {
			req, _ := http.NewRequest("GET", s.base+path, nil)
			for _, c := range ck {
				req.AddCookie(c)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s with lan's session: %d, want %d", path, resp.StatusCode, want)
			}
		}
	})

	t.Run("the power report shows the API's numbers", func(t *testing.T) {
		// Lan's whole fleet (hq: A1 and A2), the last 7 days by default.
		loaded := time.Now()
		do(t, lan, 30*time.Second,
			chromedp.Navigate(s.base+"/"),
			chromedp.Click(chromedp.CSS(`nav a[href="/reports"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#report`)),
		)
		if of := text(t, lan, "#report-of"); of != "My whole fleet" {
			t.Fatalf("the report is of %q, want My whole fleet", of)
		}
		from, to := reportRangeShown(t, lan)
		if d := to.Sub(from); d != 7*24*time.Hour {
			t.Fatalf("default range %s to %s, want 7 days", from, to)
		}
		page := reportFigures(t, lan)
		api := apiReport(t, s, lan, "account", "lan", from, to)
		compareReport(t, page, api, time.Since(loaded))
		// A1's 20-minute outage and A2's of the acknowledgement subtest.
		if n, _ := strconv.Atoi(page["outages.count"]); n < 2 || page["outages.over_5m"] != "1" {
			t.Fatalf("outages %s (over 5 min %s), want A1's and A2's at least, one over 5 min", page["outages.count"], page["outages.over_5m"])
		}
		if rows := texts(t, lan, `#report-units tbody th`); len(rows) != 2 {
			t.Fatalf("per-unit rows %q, want A1 and A2", rows)
		}

		// The CSV link is the API's CSV of the same scope and range.
		href := attr(t, lan, "#report-csv", "href")
		want := "/v1/reports?" + url.Values{"scope": {"account"}, "id": {"lan"}, "format": {"csv"},
			"from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}.Encode()
		if href != want {
			t.Fatalf("CSV link %q, want %q", href, want)
		}
		code, raw := getAs(t, lan, s.base+href)
		rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
		if err != nil || code != http.StatusOK || len(rows) != 4 { // header, A1, A2, total
			t.Fatalf("CSV %d %q (%v), want a header, two units and a total", code, raw, err)
		}
		if total := rows[3]; total[2] != "" || total[5] != page["outages.count"] || total[6] != page["outages.total_s"] {
			t.Fatalf("CSV total row %q, the page says %s outages, %s s", total, page["outages.count"], page["outages.total_s"])
		}
	})

	t.Run("a unit's report from its page, worked out by hand", func(t *testing.T) {
		do(t, lan, 30*time.Second,
			chromedp.Navigate(s.base+"/units/"+a1.Serial),
			chromedp.Click(chromedp.CSS(`#unit-report`)),
			chromedp.WaitVisible(chromedp.CSS(`#report[data-scope="unit"]`)),
		)
		page := reportFigures(t, lan)
		// A1's replayed outage: on battery from minute 7200 of the week
		// to minute 7220, when it reads OL again: 1,200 s. Its charge is
		// 90 - i%10 (i = 7200..7219: down to 81 %), its runtime 2400 -
		// i%60 (i%60 = 0..19: down to 2,381 s). No other outage, so the
		// longest is that one and the only one is over 5 minutes. Its
		// reason is the one A1 reported; it boosted for 30 minutes, from
		// minute 7140 to 7170.
		want := map[string]string{"outages.count": "1", "outages.total_s": "1200", "outages.longest_s": "1200",
			"outages.under_1m": "0", "outages.from_1_to_5m": "0", "outages.over_5m": "1",
			"outages.lowest_charge": "81", "outages.lowest_runtime": "2381",
			"transfers.input voltage out of range": "1", "boost_s": "1800", "trim_s": "0", "self_tests.tests": "0"}
		for k, w := range want {
			if page[k] != w {
				t.Errorf("%s = %q, want %q", k, page[k], w)
			}
		}
		if got := text(t, lan, `[data-k="outages.longest_s"]`); got != "20m00s" {
			t.Errorf("longest reads %q, want 20m00s", got)
		}
		from, to := reportRangeShown(t, lan)
		compareReport(t, page, apiReport(t, s, lan, "unit", a1.Serial, from, to), time.Minute)
	})

	t.Run("the site report, last week Monday to Monday, from the fleet page", func(t *testing.T) {
		do(t, lan, 30*time.Second,
			chromedp.Navigate(s.base+"/"),
			chromedp.Click(chromedp.CSS(`a[data-site-report]`)),
			chromedp.WaitVisible(chromedp.CSS(`#report[data-scope="site"][data-id="hq"]`)),
			chromedp.Click(chromedp.CSS(`.ranges a[href$="range=lastweek"]`)),
			chromedp.WaitVisible(chromedp.CSS(`.ranges a[href$="range=lastweek"][aria-current="true"]`)),
		)
		from, to := reportRangeShown(t, lan)
		hcm, _ := time.LoadLocation("Asia/Ho_Chi_Minh") // Lan's zone
		lf, lt := from.In(hcm), to.In(hcm)
		if lf.Weekday() != time.Monday || lf.Format("15:04") != "00:00" || lt.Sub(lf) != 7*24*time.Hour || !lt.After(time.Now().AddDate(0, 0, -7)) || lt.After(time.Now()) {
			t.Fatalf("last week is %s to %s in Lan's zone, want the last whole Monday-to-Monday week", lf, lt)
		}
		compareReport(t, reportFigures(t, lan), apiReport(t, s, lan, "site", "hq", from, to), time.Minute)
	})

	t.Run("a custom range the report cannot take says so and shows the last 7 days", func(t *testing.T) {
		for _, tc := range []struct{ query, want string }{
			{"from=2026-01-01T00:00&to=2026-11-01T00:00", "A report covers at most 92 days"},
			{"from=2026-11-02T00:00&to=2026-11-01T00:00", "That range could not be read"},
		} {
			code, b := getAs(t, lan, s.base+"/reports?of=site:hq&"+tc.query)
			body := string(b)
			if code != http.StatusOK || !strings.Contains(body, tc.want) || !strings.Contains(body, `id="report-range-error"`) ||
				!strings.Contains(body, `range=7d" aria-current="true"`) {
				t.Errorf("GET /reports?%s: %d, want 200 with %q and the last 7 days shown: %.2000s", tc.query, code, tc.want, body)
			}
		}
		if _, body := getAs(t, lan, s.base+"/reports?of=site:hq&range=30d"); strings.Contains(string(body), `id="report-range-error"`) {
			t.Error("a preset range shows a range error")
		}
	})

	t.Run("a report outside the person's scope is 404", func(t *testing.T) {
		for _, path := range []string{"/reports?of=site:branch", "/reports?of=unit:" + b1.Serial, "/reports?of=account:minh",
			"/v1/reports?scope=site&id=branch", "/v1/reports?scope=unit&id=" + b1.Serial} {
			if code, body := getAs(t, lan, s.base+path); code != http.StatusNotFound {
				t.Errorf("GET %s with lan's session: %d %.80s, want 404", path, code, body)
			}
		}
		do(t, lan, 15*time.Second, chromedp.Navigate(s.base+"/reports?of=site:branch"))
		if h1 := text(t, lan, "h1"); h1 != "Not found" {
			t.Fatalf("h1 %q, want Not found", h1)
		}
		b.forget("/reports?of=site:branch")
		// The scope menu offers only hq's: the fleet, the site, its units.
		do(t, lan, 15*time.Second, chromedp.Navigate(s.base+"/reports"), chromedp.WaitVisible(chromedp.CSS(`#report`)))
		opts := get(t, lan, chromedp.Evaluate[[]string](`[...document.querySelectorAll("select[name=of] option")].map(o => o.value)`))
		want := []string{"account:lan", "site:hq", "unit:" + a1.Serial, "unit:" + a2.Serial}
		if !slices.Equal(opts, want) {
			t.Fatalf("scopes offered %q, want %q", opts, want)
		}
	})

	t.Run("the report in Vietnamese, and on a phone", func(t *testing.T) {
		do(t, lan, 20*time.Second,
			chromedp.Navigate(s.base+"/lang/vi?next=/reports"),
			chromedp.WaitVisible(chromedp.CSS(`#report`)),
		)
		h1, of, lang := text(t, lan, "h1"), text(t, lan, "#report-of"), attr(t, lan, "html", "lang")
		label := text(t, lan, `#r-out-h`)
		if h1 != "Báo cáo điện" || of != "Tất cả thiết bị của tôi" || lang != "vi" || label != "Mất điện" {
			t.Fatalf("h1 %q, scope %q, lang %q, outages heading %q", h1, of, lang, label)
		}
		do(t, lan, 20*time.Second,
			chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
			chromedp.Navigate(s.base+"/reports?of=site:hq"),
			chromedp.WaitVisible(chromedp.CSS(`#report-units`)),
		)
		phoneScreenshot(t, lan, "the report page", "report-390px-vi.png")
		do(t, lan, 20*time.Second, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(s.base+"/lang/en?next=/reports"),
			chromedp.WaitVisible(chromedp.CSS(`#report`)))
	})

	t.Run("the Vietnamese console", func(t *testing.T) {
		minh := b.person(t)
		acceptInvite(t, minh, s.invite("minh"), "mật khẩu thật dài")
		h1, lang := text(t, minh, "h1"), attr(t, minh, "html", "lang")
		rows := texts(t, minh, `tr[data-serial] th`)
		if h1 != "Thiết bị" || lang != "vi" || len(rows) != 1 || !strings.Contains(rows[0], b1.Serial) {
			t.Fatalf("h1 %q lang %q rows %q", h1, lang, rows)
		}
		if st := text(t, minh, `tr#u-`+b1.Serial+` [data-f="state"]`); st != "Có điện lưới" {
			t.Fatalf("state %q, want Có điện lưới", st)
		}
	})

	t.Run("a phone-sized screenshot", func(t *testing.T) {
		do(t, lan, 20*time.Second,
			chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
			chromedp.Navigate(s.base+"/"),
			chromedp.WaitVisible(chromedp.CSS(`[data-feed]`)),
		)
		phoneScreenshot(t, lan, "the fleet page", "fleet-390px.png")
		do(t, lan, 10*time.Second, chromedp.EmulateViewport(1280, 900))
	})

	t.Run("no errors in the browser console", func(t *testing.T) {
		for _, page := range []string{"/", "/alerts", "/account", "/reports?of=site:hq", "/units/" + a2.Serial + "?range=1h", "/units/" + a1.Serial} {
			do(t, lan, 20*time.Second, chromedp.Navigate(s.base+page), chromedp.WaitReady(chromedp.CSS(`body`)))
		}
		do(t, lan, 20*time.Second, chromedp.WaitReady(chromedp.CSS(`#charts[data-charts]`)))
		if errs := b.pageErrors(); len(errs) > 0 {
			t.Fatalf("browser reported errors:\n%s", strings.Join(errs, "\n"))
		}
	})

	// Events sent while the stream is down are lost: once it is back the
	// fleet page takes the server's state again, without a reload. The
	// browser reaches the console through a TCP proxy; cutting it breaks
	// the open event stream and refuses the browser's retries, a reading
	// changes A1 meanwhile, and once the proxy is back the row must show
	// it. (The session cookie is the host's, whatever the port.)
	t.Run("after the event stream was down the fleet page catches up", func(t *testing.T) {
		px := testenv.NewProxy(t, strings.TrimPrefix(s.base, "http://"))
		base := "http://" + px.Addr
		row := `tr#u-` + a1.Serial
		do(t, lan, 15*time.Second,
			chromedp.Navigate(base+"/"),
			chromedp.WaitVisible(chromedp.CSS(`[data-feed]`)),
		)
		get(t, lan, chromedp.Evaluate[string](`window.__sameDocument = "yes"`))
		status, want := "OB DISCHRG", "on_battery"
		if attr(t, lan, row, "data-state") == "on_battery" {
			status, want = "OL CHRG", "online"
		}
		px.Cut()
		do(t, lan, 15*time.Second, chromedp.WaitVisible(chromedp.CSS(`[data-feed-down]`))) // the stream broke
		a1.publish(t, map[string]any{"ups.status": status, "input.voltage": 230, "battery.charge": 97})
		// The reading is stored (and its event sent to no one) before the
		// browser can reconnect.
		wait.Within(t, 30*time.Second, "A1's reading stored", func() bool {
			var latest map[string]any
			s.call("GET", "/v1/units/"+a1.Serial+"/latest", nil, &latest)
			return latest["ups.status"] == status
		})
		if got := attr(t, lan, row, "data-state"); got == want {
			t.Fatalf("the row shows %s while the stream is down", got)
		}
		px.Restore()
		do(t, lan, 30*time.Second,
			chromedp.WaitVisible(chromedp.CSS(`[data-feed]`)),
			chromedp.WaitVisible(chromedp.CSS(row+`[data-state="`+want+`"]`)),
		)
		if same := get(t, lan, chromedp.Evaluate[string](`window.__sameDocument || "reloaded"`)); same != "yes" {
			t.Fatalf("the page reloaded (%q); it should refresh in place", same)
		}
		// The broken stream's errors are expected here.
		b.pageErrors()
	})
}

// BenchmarkUnitPageCharts loads the unit page of a unit with seven days
// of one-minute readings (10,080 buckets a series, six charts) in
// headless Chromium: draw_ms is drawing only, total_ms includes fetching
// the history from the API. Target: drawing within 300 ms.
func BenchmarkUnitPageCharts(b *testing.B) {
	s := startServer(b)
	needAssets(b, s.base)
	br := newBrowser(b)
	u := s.register("900400000001", "Bench", "hq")
	now := time.Now().UTC().Truncate(time.Minute)
	const week = 7 * 24 * 60
	var batch []map[string]any
	for i := range week {
		batch = append(batch, reading(now.Add(time.Duration(i-week+1)*time.Minute), i, false))
		if len(batch) == 1000 || i == week-1 {
			u.publish(b, batch)
			batch = nil
		}
	}
	wait.Within(b, 60*time.Second, "the week stored", func() bool {
		var h struct {
			Fields []struct {
				Points []struct{ Count int } `json:"points"`
			} `json:"fields"`
		}
		q := fmt.Sprintf("/v1/units/%s/history?from=%s&to=%s&every=24h&fields=ups.load", u.Serial,
			now.Add(-8*24*time.Hour).Format(time.RFC3339), now.Add(time.Minute).Format(time.RFC3339))
		n := 0
		if code, _ := s.call("GET", q, nil, &h); code == http.StatusOK && len(h.Fields) == 1 {
			for _, p := range h.Fields[0].Points {
				n += p.Count
			}
		}
		return n == week
	})
	ctx := br.person(b)
	do(b, ctx, 20*time.Second,
		chromedp.Navigate(s.base+"/login"),
		chromedp.Click(chromedp.CSS(`details summary`)),
		chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), s.app.AdminToken()),
		chromedp.Submit(chromedp.CSS(`#token`)),
		chromedp.WaitVisible(chromedp.CSS(`#fleet`)),
	)
	var draw, total, points float64
	for b.Loop() {
		do(b, ctx, 60*time.Second,
			chromedp.Navigate(s.base+"/units/"+u.Serial+"?range=7d"),
			chromedp.WaitReady(chromedp.CSS(`#charts[data-charts]`)),
		)
		if e := attr(b, ctx, "#charts", "data-error"); e != "" {
			b.Fatalf("charts failed: %s", e)
		}
		d, _ := strconv.ParseFloat(attr(b, ctx, "#charts", "data-draw-ms"), 64)
		t, _ := strconv.ParseFloat(attr(b, ctx, "#charts", "data-ms"), 64)
		p, _ := strconv.ParseFloat(attr(b, ctx, "#charts", "data-points"), 64)
		draw, total, points = draw+d, total+t, p
	}
	b.ReportMetric(draw/float64(b.N), "draw_ms")
	b.ReportMetric(total/float64(b.N), "total_ms")
	b.ReportMetric(points, "points")
}

// phoneScreenshot checks that the page on screen (at 390 px) is no wider
// than the screen and saves a screenshot of it in the test's artifacts.
func phoneScreenshot(t *testing.T, ctx context.Context, page, file string) {
	t.Helper()
	png := get(t, ctx, chromedp.FullScreenshot(100))
	if get(t, ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > 390`)) {
		t.Errorf("%s is wider than a 390 px screen", page)
	}
	path := filepath.Join(t.ArtifactDir(), file)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// reportRangeShown is the range of the report page on screen.
func reportRangeShown(t testing.TB, ctx context.Context) (time.Time, time.Time) {
	t.Helper()
	from, err1 := time.Parse(time.RFC3339, attr(t, ctx, "#report", "data-from"))
	to, err2 := time.Parse(time.RFC3339, attr(t, ctx, "#report", "data-to"))
	if err1 != nil || err2 != nil {
		t.Fatalf("the report's range: %v %v", err1, err2)
	}
	return from, to
}

// reportFigures reads the report page's figures (its data[data-k]
// elements) by key.
func reportFigures(t testing.TB, ctx context.Context) map[string]string {
	t.Helper()
	return get(t, ctx, chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll("data[data-k]")].map(e => [e.dataset.k, e.value]))`))
}

// getAs makes a GET with the tab's session cookie.
func getAs(t testing.TB, ctx context.Context, u string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for _, c := range cookies(t, ctx) {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// apiReport is GET /v1/reports of the same scope and range, as the same
// person, in the page's keys.
func apiReport(t testing.TB, s *server, ctx context.Context, scope, id string, from, to time.Time) map[string]string {
	t.Helper()
	q := url.Values{"scope": {scope}, "id": {id}, "from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	code, raw := getAs(t, ctx, s.base+"/v1/reports?"+q.Encode())
	if code != http.StatusOK {
		t.Fatalf("GET /v1/reports?%s: %d %s", q.Encode(), code, raw)
	}
	var r struct {
		Outages   map[string]any `json:"outages"`
		Mains     map[string]any `json:"mains"`
		Alerts    map[string]int `json:"alerts_by_rule"`
		Contact   float64        `json:"out_of_contact_s"`
		Transfers map[string]int `json:"transfers_by_reason"`
		Boost     float64        `json:"boost_s"`
		Trim      float64        `json:"trim_s"`
		Tests     struct {
			Tests        int            `json:"tests"`
			TestS        float64        `json:"test_s"`
			Calibrations int            `json:"calibrations"`
			CalibrationS float64        `json:"calibration_s"`
			Results      map[string]int `json:"results"`
		} `json:"self_tests"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	f := func(v any) string {
		switch x := v.(type) {
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64)
		case []any:
			return strconv.Itoa(len(x))
		}
		return "" // null: nothing measured
	}
	out := map[string]string{"out_of_contact_s": f(r.Contact)}
	for _, k := range []string{"count", "total_s", "longest_s", "under_1m", "from_1_to_5m", "over_5m", "lowest_charge", "lowest_runtime"} {
		out["outages."+k] = f(r.Outages[k])
	}
	for _, k := range []string{"voltage_in_band_share", "sags", "swells", "frequency_in_band_share", "frequency_excursions"} {
		out["mains."+k] = f(r.Mains[k])
	}
	for rule, n := range r.Alerts {
		out["alerts."+rule] = strconv.Itoa(n)
	}
	for reason, n := range r.Transfers {
		out["transfers."+reason] = strconv.Itoa(n)
	}
	out["boost_s"], out["trim_s"] = f(r.Boost), f(r.Trim)
	out["self_tests.tests"], out["self_tests.test_s"] = strconv.Itoa(r.Tests.Tests), f(r.Tests.TestS)
	out["self_tests.calibrations"], out["self_tests.calibration_s"] = strconv.Itoa(r.Tests.Calibrations), f(r.Tests.CalibrationS)
	for res, n := range r.Tests.Results {
		out["self_tests.results."+res] = strconv.Itoa(n)
	}
	return out
}

// compareReport checks the page's figures are the API's. Time out of
// contact may differ by the time between the two requests: an open
// comm_lost counts until now.
func compareReport(t testing.TB, page, api map[string]string, apart time.Duration) {
	t.Helper()
	if len(page) != len(api) {
		t.Errorf("the page has %d figures, the API %d:\npage %v\napi  %v", len(page), len(api), page, api)
	}
	for k, want := range api {
		got, ok := page[k]
		if k == "out_of_contact_s" {
			g, _ := strconv.ParseFloat(got, 64)
			w, _ := strconv.ParseFloat(want, 64)
			if g > w || w-g > apart.Seconds()+1 {
				t.Errorf("out of contact: page %s s, API %s s (%s apart)", got, want, apart)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("%s: page %q, API %q", k, got, want)
		}
	}
}
