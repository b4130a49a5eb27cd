package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/area"
	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/notify/fcm/fcmfake"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/sms/smsfake"
	"github.com/upswatch/upswatch/rules/engine"
)

// Fleet sizes of the blackout test (the numbers).
const (
	blackoutUnits = 200 // at site hq
	elsewhere     = 20  // at site branch
	silentUnits   = 50  // at site net
)

// A blackout is one message: 200 units of site hq go on battery and come
// back; the manager of hq gets at most 3 notifications per channel (the
// first unit's on_battery, site_outage, its resolution), the owner of one
// of them still gets that unit's own two, the 20 units elsewhere are
// unaffected (their manager gets only the one unit there that lost power).
// Before it, a self-test on 3 units of hq raises nothing; after it, 50
// units of site net going silent without going on battery give one
// site_unreachable.
func TestBlackoutIsOneMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 270 devices")
	}
	fcm, sms := fcmfake.New(), smsfake.New("AC0123456789", "sms-auth-token")
	t.Cleanup(fcm.Close)
	t.Cleanup(sms.Close)
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	// The numbers, except resolve_after: 2 minutes of waiting
	// prove nothing more than 2 seconds.
	if err := os.WriteFile(rulesFile, []byte("areas:\n  resolve_after: 2s\nrules:\n  comm_lost:\n    min_interval: 10m\n    default_interval: 10m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t, filepath.Join(dir, "data"))
	c.NATS.Listen = freeAddr(t) // the test watches the consumers
	url := "nats://" + c.NATS.Listen
	c.Rules.File = rulesFile
	c.HTTP.RatePerSecond = 0 // registering 270 units with one token
	c.Notify.FCM = config.NotifyFCM{ProjectID: "upswatch-test", Endpoint: fcm.URL(), ParallelBatches: 2}
	c.Notify.SMS = config.NotifySMS{Endpoint: sms.URL(), AccountSID: "AC0123456789", AuthToken: "sms-auth-token",
		From: "+15550001111", SegmentsPerSecond: 100, Burst: 100}
	in := start(t, c)
	_, js := bustest.Dial(t, url)

	add := func(site string, n, base int) []fleetUnit {
		out := make([]fleetUnit, n)
		for i := range out {
			var r registered
			serial := fmt.Sprintf("%012d", base+i)
			if code, body := in.do("POST", "/v1/units", map[string]string{"serial": serial, "site": site}, &r); code != http.StatusCreated {
				t.Fatalf("register %s: %d %s", serial, code, body)
			}
			out[i].reg = r
		}
		return out
	}
	hq, branch, net := add("hq", blackoutUnits, 100000000000), add("branch", elsewhere, 200000000000), add("net", silentUnits, 300000000000)
	all := slices.Concat(hq, branch, net)
	connectAll(t, in, all)
	hq, branch, net = all[:blackoutUnits], all[blackoutUnits:blackoutUnits+elsewhere], all[blackoutUnits+elsewhere:]

	accounts := []map[string]any{
		{"id": "mgr-hq", "role": "manager", "sites": []string{"hq"}, "language": "en", "time_zone": "UTC",
			"contacts":    map[string]any{"fcm_tokens": []string{"tok-mgr-hq"}, "phones": []string{"+15550002001"}},
			"preferences": map[string]any{"channels": map[string][]string{"warning": {"fcm", "sms"}, "critical": {"fcm", "sms"}}}},
		{"id": "own-hq", "language": "en", "units": []string{hq[7].reg.Serial},
			"contacts": map[string]any{"fcm_tokens": []string{"tok-own-hq"}}},
		{"id": "mgr-branch", "role": "manager", "sites": []string{"branch"}, "language": "en",
			"contacts": map[string]any{"fcm_tokens": []string{"tok-mgr-branch"}}},
		{"id": "mgr-net", "role": "manager", "sites": []string{"net"}, "language": "vi",
			"contacts": map[string]any{"fcm_tokens": []string{"tok-mgr-net"}}},
	}
	for _, a := range accounts {
		if code, body := in.do("POST", "/v1/accounts", a, nil); code != http.StatusCreated {
			t.Fatalf("create account %s: %d %s", a["id"], code, body)
		}
	}

	b := time.Now()
	reading := func(at time.Duration, status string, runtime int) string {
		input := 230
		if strings.Contains(status, "OB") {
			input = 0
		}
		return fmt.Sprintf(`{"ts":%d,"ups.status":%q,"input.voltage":%d,"battery.charge":90,"battery.runtime":%d}`,
			b.Add(at).UnixMilli(), status, input, runtime)
	}
	sendAll := func(us []fleetUnit, body func(i int) string) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, len(us))
		for i, u := range us {
			wg.Go(func() {
				tok := u.dev.Publish("ups/"+u.reg.Serial+"/telemetry", 1, false, body(i))
				if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("publish %s: %v", u.reg.Serial, tok.Error())
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	evaluated := 0.0
	sendStep := func(us []fleetUnit, body func(i int) string) {
		t.Helper()
		sendAll(us, body)
		evaluated += float64(len(us))
	}
	// The whole fleet on line.
	sendStep(all, func(int) string { return reading(-90*time.Second, "OL", 1800) })

	// A self-test on 3 units of hq: on battery for 20 s, TEST in the
	// status. Nothing may come of it.
	for _, at := range []time.Duration{-80 * time.Second, -70 * time.Second, -60 * time.Second} {
		sendStep(hq[:3], func(int) string { return reading(at, "OB TEST DISCHRG", 1700) })
	}
	sendStep(hq[:3], func(int) string { return reading(-55*time.Second, "OL CHRG", 1700) })
	waitQuiet(t, in, js, evaluated)
	if n := len(fcm.Requests()) + len(sms.Requests()); n != 0 {
		t.Fatalf("a self-test on 3 units sent %d notifications", n)
	}
	for _, u := range hq[:3] {
		var tl struct {
			Events []map[string]any `json:"events"`
		}
		if code, body := in.do("GET", "/v1/units/"+u.reg.Serial+"/alerts", nil, &tl); code != http.StatusOK || len(tl.Events) != 0 {
			t.Fatalf("self-test unit %s alerts: %d %s", u.reg.Serial, code, body)
		}
	}

	// The blackout: hq and one unit elsewhere lose mains at b-40s.
	started := time.Now()
	lost := append(append([]fleetUnit{}, hq...), branch[0])
	for _, at := range []time.Duration{-40 * time.Second, -30 * time.Second} {
		sendStep(lost, func(i int) string { return reading(at, "OB DISCHRG", 1500-i) })
	}
	var active struct {
		Alerts []struct {
			Rule   string   `json:"rule"`
			Serial string   `json:"serial"`
			Area   string   `json:"area"`
			Units  []string `json:"units"`
		} `json:"alerts"`
	}
	var anchor string // the site_outage's first unit
	wait.Within(t, time.Minute, "site_outage listed as firing", func() bool {
		code, _ := in.do("GET", "/v1/alerts?state=firing&site=hq", nil, &active)
		for _, a := range active.Alerts {
			if a.Rule == area.SiteOutage && a.Area == "hq" && len(a.Units) >= 60 {
				anchor = a.Serial
				return true
			}
		}
		if code != http.StatusOK {
			t.Fatalf("GET /v1/alerts: %d", code)
		}
		return false
	})
	t.Logf("site_outage firing %s after the blackout's readings were sent", time.Since(started))
	// The console's alerts page lists it like any alert.
	if page := consolePage(t, in, "/alerts?site=hq"); !strings.Contains(page, "Site outage") || !strings.Contains(page, `data-area="hq"`) {
		t.Errorf("console alerts page lacks the site outage:\n%s", page)
	}
	// Everything since power came back at b-20s.
	sendStep(lost, func(int) string { return reading(-20*time.Second, "OL CHRG", 1400) })
	restored := time.Now()
	wait.Within(t, time.Minute, "site_outage resolved", func() bool {
		code, _ := in.do("GET", "/v1/alerts?state=firing&site=hq", nil, &active)
		for _, a := range active.Alerts {
			if a.Rule == area.SiteOutage {
				return false
			}
		}
		return code == http.StatusOK
	})
	t.Logf("site_outage resolved %s after the restoring readings were sent", time.Since(restored))
	waitQuiet(t, in, js, evaluated)
	t.Logf("blackout of %d units: whole event through the pipeline in %s", blackoutUnits, time.Since(started))

	byToken := map[string][]string{}
	for _, r := range fcm.Requests() {
		byToken[r.Token] = append(byToken[r.Token], r.Title)
	}
	var mgrSMS []string
	for _, r := range sms.Requests() {
		if r.To == "+15550002001" {
			mgrSMS = append(mgrSMS, r.Body)
		}
	}
	t.Logf("hq manager: fcm %q; sms %q", byToken["tok-mgr-hq"], mgrSMS)
	for ch, got := range map[string][]string{"fcm": byToken["tok-mgr-hq"], "sms": mgrSMS} {
		if len(got) > 3 {
			t.Errorf("hq manager got %d notifications on %s for one blackout, want at most 3", len(got), ch)
		}
		if !containsText(got, "units at site hq on battery since") || !containsText(got, "ite hq: power restored") {
			t.Errorf("hq manager's %s lacks the site outage or its end: %q", ch, got)
		}
	}
	if got := byToken["tok-own-hq"]; len(got) != 2 || !containsText(got, "is on battery") || !containsText(got, "power restored") {
		t.Errorf("owner of an hq unit got %q, want its own on battery and power restored", got)
	}
	if got := byToken["tok-mgr-branch"]; len(got) != 2 || !containsText(got, "is on battery") ||
		!containsText(got, "power restored") || containsText(got, "site") {
		t.Errorf("branch manager got %q, want exactly the on battery and power restored of its one unit", got)
	}
	// Each unit's own record is whole: one outage of 20 s, paged (someone
	// was told of it on its own) only for the first unit (its manager) and
	// the owned unit (its owner); the others were told by the site outage.
	type outage struct {
		DurationS float64 `json:"duration_s"`
		Paged     bool    `json:"paged"`
	}
	var paged []string
	var pmu sync.Mutex
	sem := make(chan struct{}, 8)
	var owg sync.WaitGroup
	for _, u := range hq {
		owg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var out struct {
				Outages []outage `json:"outages"`
			}
			code, body := in.do("GET", "/v1/units/"+u.reg.Serial+"/outages", nil, &out)
			if code != http.StatusOK || len(out.Outages) != 1 || out.Outages[0].DurationS != 20 {
				t.Errorf("outages of %s: %d %s, want one of 20 s", u.reg.Serial, code, body)
				return
			}
			if out.Outages[0].Paged {
				pmu.Lock()
				paged = append(paged, u.reg.Serial)
				pmu.Unlock()
			}
		})
	}
	owg.Wait()
	slices.Sort(paged)
	want := slices.Compact(slices.Sorted(slices.Values([]string{anchor, hq[7].reg.Serial})))
	if !slices.Equal(paged, want) {
		t.Errorf("outages paged on their own: %v, want %v (the first unit and the owned one)", paged, want)
	}
	if got := byToken["tok-mgr-net"]; len(got) != 0 {
		t.Errorf("net manager got %q before anything happened at net", got)
	}

	// 50 units of net go silent (offline) without going on battery.
	fcmBefore := len(fcm.Requests())
	silent := time.Now()
	var wg sync.WaitGroup
	for _, u := range net {
		wg.Go(func() {
			tok := u.dev.Publish("ups/"+u.reg.Serial+"/status", 1, true, "offline")
			tok.WaitTimeout(20 * time.Second)
		})
	}
	wg.Wait()
	evaluated += silentUnits
	wait.Within(t, time.Minute, "site_unreachable listed as firing", func() bool {
		in.do("GET", "/v1/alerts?state=firing&site=net", nil, &active)
		for _, a := range active.Alerts {
			if a.Rule == area.SiteUnreachable && a.Area == "net" {
				return true
			}
		}
		return false
	})
	waitQuiet(t, in, js, evaluated)
	t.Logf("50 silent units: one site_unreachable, settled in %s", time.Since(silent))
	in.do("GET", "/v1/alerts?state=firing&site=net", nil, &active)
	unreachable, commLost := 0, 0
	for _, a := range active.Alerts {
		switch a.Rule {
		case area.SiteUnreachable:
			unreachable++
		case "comm_lost":
			commLost++
		}
	}
	if unreachable != 1 || commLost != silentUnits {
		t.Errorf("net: %d site_unreachable and %d comm_lost firing, want 1 and %d (the unit alerts stay, their notices fold)",
			unreachable, commLost, silentUnits)
	}
	var netTitles []string
	for _, r := range fcm.Requests()[fcmBefore:] {
		if r.Token != "tok-mgr-net" {
			t.Errorf("silence at net notified %s: %q", r.Token, r.Title)
		}
		netTitles = append(netTitles, r.Title)
	}
	if len(netTitles) > 2 || !containsText(netTitles, "UPS tại khu net mất kết nối từ") {
		t.Errorf("net manager got %q, want the first unit's comm_lost and one site_unreachable (in Vietnamese)", netTitles)
	}
}

func containsText(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// waitQuiet waits until the rule engine evaluated n readings and every
// consumer between it and the providers has nothing pending or unacked:
// the area evaluator, the notify intake (held events are unacked) and the
// senders.
func waitQuiet(t *testing.T, in *instance, js jetstream.JetStream, n float64) {
	t.Helper()
	wait.Within(t, 30*time.Second, fmt.Sprintf("%v readings evaluated", n), func() bool {
		return in.metric("upswatch_rules_readings_evaluated_total") >= n
	})
	var consumers [][2]string
	for p := range in.app.cfg.NATS.Partitions {
		consumers = append(consumers, [2]string{bus.ReadingsStream, engine.ConsumerPrefix + strconv.Itoa(p)})
	}
	consumers = append(consumers, [][2]string{{engine.AlertsStream, area.Consumer}, {engine.AlertsStream, pipeline.IntakeConsumer},
		{pipeline.OutboxStream, pipeline.SenderConsumerPrefix + "fcm"}, {pipeline.OutboxStream, pipeline.SenderConsumerPrefix + "sms"}}...)
	wait.Within(t, 60*time.Second, "alerts and notifications settled", func() bool {
		for _, sc := range consumers {
			ci, err := js.Consumer(context.Background(), sc[0], sc[1])
			if err != nil {
				return false
			}
			info, err := ci.Info(context.Background())
			if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
		}
		return true
	})
}

type fleetUnit struct {
	reg registered
	dev paho.Client
}

// connectAll connects a device per unit, 16 at a time.
func connectAll(t *testing.T, in *instance, us []fleetUnit) {
	t.Helper()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errs := make(chan error, len(us))
	for i := range us {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r := us[i].reg
			o := paho.NewClientOptions().AddBroker(in.app.MQTTURL()).SetClientID("dev-" + r.Serial).
				SetUsername(r.MQTT.Username).SetPassword(r.MQTT.Password).SetProtocolVersion(4).SetAutoReconnect(false)
			c := paho.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("device %s connect: %v", r.Serial, tok.Error())
				return
			}
			us[i].dev = c
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, u := range us {
			if u.dev != nil {
				u.dev.Disconnect(0)
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// consolePage signs in to the console with the admin token and returns a
// page's HTML.
func consolePage(t *testing.T, in *instance, path string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	base := "http://" + in.app.HTTPAddr()
	req, _ := http.NewRequest("POST", base+"/login/admin", strings.NewReader(neturl.Values{"token": {in.app.AdminToken()}, "next": {path}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("console sign-in and %s: %d %s", path, resp.StatusCode, body)
	}
	return string(body)
}
