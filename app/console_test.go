package app

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/notify/fcm/fcmfake"
)

// sseEvent is one event read from GET /v1/events.
type sseEvent struct {
	Name string
	Data map[string]any
}

// stream reads an event stream in the background; events arrive in order
// on a list the test waits on.
type stream struct {
	t    *testing.T
	mu   sync.Mutex
	evs  []sseEvent
	more chan struct{} // closed and replaced on every event
	done chan struct{} // closed when the stream ends
}

func (in *instance) events(token string) *stream {
	in.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+in.app.HTTPAddr()+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		in.t.Fatalf("GET /v1/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &stream{t: in.t, more: make(chan struct{}), done: make(chan struct{})}
	in.t.Cleanup(func() { resp.Body.Close() })
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var d map[string]any
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d); err != nil {
					s.t.Errorf("event data %q: %v", line, err)
				}
				s.mu.Lock()
				s.evs = append(s.evs, sseEvent{name, d})
				close(s.more)
				s.more = make(chan struct{})
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// wait returns the events read once one matches, failing after 10 s.
func (s *stream) wait(what string, match func(sseEvent) bool) []sseEvent {
	s.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		evs, more := append([]sseEvent(nil), s.evs...), s.more
		s.mu.Unlock()
		for _, ev := range evs {
			if match(ev) {
				return evs
			}
		}
		select {
		case <-more:
		case <-s.done:
			s.t.Fatalf("stream ended before %s", what)
		case <-timeout:
			s.t.Fatalf("no %s within 10s; got %v", what, evs)
		}
	}
}

func readingOf(serial, status string) func(sseEvent) bool {
	return func(ev sseEvent) bool {
		values, _ := ev.Data["values"].(map[string]any)
		return ev.Name == "reading" && ev.Data["serial"] == serial && (status == "" || values["ups.status"] == status)
	}
}

func alertOf(serial, kind string) func(sseEvent) bool {
	return func(ev sseEvent) bool {
		return ev.Name == "alert" && ev.Data["serial"] == serial && ev.Data["kind"] == kind && ev.Data["rule"] == "on_battery"
	}
}

func ofSerial(evs []sseEvent, serial string) int {
	n := 0
	for _, ev := range evs {
		if ev.Data["serial"] == serial {
			n++
		}
	}
	return n
}

// TestConsoleAPI drives the console's API on a whole serve in-process,
// with readings coming through real MQTT publishes: the live event stream
// of each role carries exactly its units; an outage is acknowledged by a
// site manager (shown to the owner with who and why) and silenced by the
// owner; the alert's "restored" is then not sent but audited as
// silenced; the acknowledgement clears when the alert resolves; the
// outage lists its lowest charge and runtime and that it paged; the CSV
// history carries the JSON's numbers; others get 404; shutdown ends the
// open streams.
func TestConsoleAPI(t *testing.T) {
	fcm := fcmfake.New()
	t.Cleanup(fcm.Close)
	c := testConfig(t, filepath.Join(t.TempDir(), "data"))
	c.Notify.FCM = config.NotifyFCM{ProjectID: "upswatch-test", Endpoint: fcm.URL(), ParallelBatches: 1}
	in := start(t, c)

	const a, b = "123456789012", "210987654321"
	ua := in.register(a) // site hq
	var ub registered
	if code, body := in.do("POST", "/v1/units", map[string]string{"serial": b, "name": "Branch", "site": "branch"}, &ub); code != http.StatusCreated {
		t.Fatalf("register %s: %d %s", b, code, body)
	}
	tokens := map[string]string{"admin": in.app.AdminToken()}
	for _, acct := range []map[string]any{
		{"id": "lan", "name": "Lan", "units": []string{a}, "contacts": map[string]any{"fcm_tokens": []string{"fcm-lan"}},
			"preferences": map[string]any{"channels": map[string][]string{"warning": {"fcm"}, "critical": {"fcm"}}}},
		{"id": "minh", "name": "Minh", "role": "manager", "sites": []string{"hq"}},
		{"id": "binh", "name": "Binh", "units": []string{b}},
	} {
		if code, body := in.do("POST", "/v1/accounts", acct, nil); code != http.StatusCreated {
			t.Fatalf("create account: %d %s", code, body)
		}
		var tok struct {
			Token string `json:"token"`
		}
		if code, body := in.do("POST", "/v1/accounts/"+acct["id"].(string)+"/tokens", map[string]string{"name": "t"}, &tok); code != http.StatusCreated {
			t.Fatalf("token: %d %s", code, body)
		}
		tokens[acct["id"].(string)] = tok.Token
	}
	streams := map[string]*stream{}
	for _, who := range []string{"admin", "lan", "minh", "binh"} {
		streams[who] = in.events(tokens[who])
	}

	// B reports first; once the admin's stream has it, its fan-out is
	// done for every stream, so A's later events come after it.
	devA, devB := in.device(ua), in.device(ub)
	now := time.Now()
	publish(t, devB, "ups/"+b+"/telemetry", fmt.Sprintf(`{"ts":%d,"ups.status":"OL","input.voltage":231}`, now.Add(-20*time.Second).UnixMilli()))
	streams["admin"].wait("B's reading", readingOf(b, "OL"))
	topicA := "ups/" + a + "/telemetry"
	// A 3 s blip, shorter than on_battery's pending period: no alert.
	publish(t, devA, topicA, fmt.Sprintf(`{"ts":%d,"ups.status":"OL","input.voltage":230,"battery.charge":100,"battery.runtime":2400}`, now.Add(-40*time.Second).UnixMilli()))
	publish(t, devA, topicA, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":99,"battery.runtime":2300}`, now.Add(-35*time.Second).UnixMilli()))
	publish(t, devA, topicA, fmt.Sprintf(`{"ts":%d,"ups.status":"OL CHRG","input.voltage":229,"battery.charge":99,"battery.runtime":2350}`, now.Add(-32*time.Second).UnixMilli()))
	publish(t, devA, topicA, fmt.Sprintf(`{"ts":%d,"ups.status":"OL","input.voltage":230,"battery.charge":100,"battery.runtime":2400}`, now.Add(-20*time.Second).UnixMilli()))
	publish(t, devA, topicA, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":98,"battery.runtime":1800}`, now.Add(-10*time.Second).UnixMilli()))
	publish(t, devA, topicA, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":96,"battery.runtime":1700}`, now.Add(-2*time.Second).UnixMilli()))

	var firing map[string]any
	for _, who := range []string{"admin", "lan", "minh"} {
		evs := streams[who].wait(who+": A's firing", alertOf(a, "firing"))
		streams[who].wait(who+": A on battery", readingOf(a, "OB DISCHRG"))
		if who == "lan" || who == "minh" {
			if n := ofSerial(evs, b); n != 0 {
				t.Errorf("%s's stream carries %d events of B, a unit of another site and owner", who, n)
			}
		}
		for _, ev := range evs {
			if alertOf(a, "firing")(ev) {
				firing = ev.Data
			}
		}
	}
	for _, ev := range streams["admin"].wait("A's reading", readingOf(a, "OB DISCHRG")) {
		if readingOf(a, "OB DISCHRG")(ev) {
			values, _ := ev.Data["values"].(map[string]any)
			if _, ok := values["battery.charge"].(float64); !ok || ev.Data["ts"] == nil || ev.Data["time"] == nil {
				t.Errorf("reading event lacks values: %v", ev.Data)
			}
		}
	}
	// B reports again; once binh has it, A's earlier events would have
	// reached binh's stream before it.
	publish(t, devB, "ups/"+b+"/telemetry", fmt.Sprintf(`{"ts":%d,"ups.status":"OL CHRG","input.voltage":229}`, now.Add(-time.Second).UnixMilli()))
	if n := ofSerial(streams["binh"].wait("B's second reading", readingOf(b, "OL CHRG")), a); n != 0 {
		t.Errorf("binh's stream carries %d events of A", n)
	}
	alertID := firing["fingerprint"].(string)
	pathID := strings.ReplaceAll(alertID, "/", ".")

	// The firing paged lan.
	if _, err := fcm.WaitRequests(1, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	type actor struct {
		Account, Name string
		Admin         bool
	}
	type alertJSON struct {
		Fingerprint string `json:"fingerprint"`
		Ack         *struct {
			By     actor  `json:"by"`
			Reason string `json:"reason"`
			At     time.Time
		} `json:"ack"`
		Silence *struct {
			By     actor     `json:"by"`
			Until  time.Time `json:"until"`
			Reason string    `json:"reason"`
		} `json:"silence"`
	}
	activeOf := func(who string) []alertJSON {
		t.Helper()
		var out struct{ Alerts []alertJSON }
		if code, body := in.call(tokens[who], "GET", "/v1/alerts", nil, &out); code != http.StatusOK {
			t.Fatalf("%s: GET /v1/alerts: %d %s", who, code, body)
		}
		return out.Alerts
	}
	wait.Within(t, 10*time.Second, "alert listed as firing", func() bool { return len(activeOf("lan")) == 1 })

	// Acknowledge, silence and audit, role by role.
	for _, tc := range []struct {
		who, method, path string
		body              any
		code              int
		errCode           string
	}{
		{"binh", "POST", "/v1/alerts/" + pathID + "/ack", map[string]string{"reason": "not mine"}, 404, "not_found"},
		{"binh", "POST", "/v1/alerts/" + pathID + "/silence", map[string]string{"duration": "1h"}, 404, "not_found"},
		{"binh", "GET", "/v1/units/" + a + "/alert-actions", nil, 404, "not_found"},
		{"binh", "GET", "/v1/units/" + a + "/outages", nil, 404, "not_found"},
		{"minh", "GET", "/v1/units/" + b + "/outages", nil, 404, "not_found"},
		{"minh", "POST", "/v1/alerts/" + a + ".on_battery.1/ack", nil, 409, "not_firing"},
		{"minh", "POST", "/v1/alerts/nonsense/ack", nil, 400, "invalid_alert_id"},
		{"lan", "POST", "/v1/alerts/" + pathID + "/silence", map[string]string{"duration": "forever"}, 400, "invalid_field"},
		{"lan", "DELETE", "/v1/alerts/" + pathID + "/ack", nil, 404, "not_found"},
		{"minh", "POST", "/v1/alerts/" + pathID + "/ack", map[string]string{"reason": "generator starting"}, 200, ""},
		{"lan", "POST", "/v1/alerts/" + strings.ReplaceAll(alertID, "/", "%2F") + "/silence", map[string]string{"duration": "2h", "reason": "maintenance"}, 200, ""},
	} {
		code, body := in.call(tokens[tc.who], tc.method, tc.path, tc.body, nil)
		if code != tc.code || (tc.errCode != "" && !strings.Contains(body, `"code": "`+tc.errCode+`"`)) {
			t.Errorf("%s %s %s: %d %s, want %d %s", tc.who, tc.method, tc.path, code, body, tc.code, tc.errCode)
		}
	}
	// The other recipients' consoles learn of it live.
	streams["lan"].wait("minh's acknowledgement", func(ev sseEvent) bool {
		by, _ := ev.Data["by"].(map[string]any)
		return ev.Name == "action" && ev.Data["action"] == "acknowledged" && ev.Data["alert_id"] == alertID && by["account"] == "minh"
	})
	for _, who := range []string{"lan", "minh", "admin"} {
		al := activeOf(who)
		if len(al) != 1 || al[0].Ack == nil || al[0].Ack.By.Account != "minh" || al[0].Ack.By.Name != "Minh" ||
			al[0].Ack.Reason != "generator starting" || al[0].Silence == nil || al[0].Silence.By.Account != "lan" ||
			al[0].Silence.Reason != "maintenance" || time.Until(al[0].Silence.Until) < 119*time.Minute {
			t.Errorf("%s sees %+v, want the ack by Minh and the silence by lan", who, al)
		}
	}
	if al := activeOf("binh"); len(al) != 0 {
		t.Errorf("binh sees alerts of A: %+v", al)
	}

	// Power back: the alert resolves; its "restored" is silenced, and the
	// acknowledgement is cleared.
	publish(t, devA, topicA, fmt.Sprintf(`{"ts":%d,"ups.status":"OL CHRG","input.voltage":230,"battery.charge":97,"battery.runtime":1750}`, now.UnixMilli()))
	streams["lan"].wait("A's resolved", alertOf(a, "resolved"))
	type action struct {
		Action string
		By     actor
		Reason string
	}
	var acts struct{ Actions []action }
	wait.Within(t, 10*time.Second, "acknowledgement cleared", func() bool {
		code, _ := in.call(tokens["lan"], "GET", "/v1/units/"+a+"/alert-actions", nil, &acts)
		return code == http.StatusOK && len(acts.Actions) == 3 && acts.Actions[2].Action == "ack_cleared"
	})
	if acts.Actions[0].Action != "acknowledged" || acts.Actions[0].By.Name != "Minh" || acts.Actions[0].Reason != "generator starting" ||
		acts.Actions[1].Action != "silenced" || acts.Actions[1].By.Account != "lan" || acts.Actions[2].By.Name != "system" {
		t.Errorf("audit = %+v", acts.Actions)
	}
	if al := activeOf("lan"); len(al) != 0 {
		t.Errorf("resolved alert still listed: %+v", al)
	}
	var ds struct {
		Deliveries []struct{ Kind, Outcome, Channel string }
	}
	wait.Within(t, 10*time.Second, "silenced restored audited", func() bool {
		code, _ := in.call(tokens["lan"], "GET", "/v1/alerts/"+pathID+"/deliveries", nil, &ds)
		for _, d := range ds.Deliveries {
			if code == http.StatusOK && d.Kind == "resolved" && d.Outcome == "silenced" && d.Channel == "fcm" {
				return true
			}
		}
		return false
	})
	if n := len(fcm.Requests()); n != 1 {
		t.Errorf("%d FCM requests, want only the firing (the restored was silenced)", n)
	}

	// The history has every reading of A (it is written asynchronously).
	wait.Within(t, 10*time.Second, "history caught up", func() bool {
		var l map[string]any
		code, _ := in.call(tokens["lan"], "GET", "/v1/units/"+a+"/latest", nil, &l)
		return code == http.StatusOK && l["ups.status"] == "OL CHRG"
	})

	// The outage, whole.
	var outs struct {
		Outages []struct {
			AlertID       string     `json:"alert_id"`
			Start         time.Time  `json:"start"`
			End           *time.Time `json:"end"`
			DurationS     float64    `json:"duration_s"`
			LowestCharge  *float64   `json:"lowest_charge"`
			LowestRuntime *float64   `json:"lowest_runtime"`
			Paged         bool       `json:"paged"`
		}
	}
	if code, body := in.call(tokens["minh"], "GET", "/v1/units/"+a+"/outages", nil, &outs); code != http.StatusOK {
		t.Fatalf("outages: %d %s", code, body)
	}
	if len(outs.Outages) != 2 {
		t.Fatalf("outages = %+v, want the blip and the outage", outs.Outages)
	}
	if b := outs.Outages[0]; b.AlertID != "" || !b.Start.Equal(time.UnixMilli(now.Add(-35*time.Second).UnixMilli())) ||
		b.End == nil || b.DurationS != 3 || b.LowestCharge == nil || *b.LowestCharge != 99 || b.Paged {
		t.Errorf("blip = %+v (end %v, charge %v), want 3 s from -35 s at 99 %%, no alert, not paged", b, b.End, deref(b.LowestCharge))
	}
	o := outs.Outages[1]
	wantStart, wantEnd := time.UnixMilli(now.Add(-10*time.Second).UnixMilli()), time.UnixMilli(now.UnixMilli())
	if o.AlertID != alertID || !o.Start.Equal(wantStart) || o.End == nil || !o.End.Equal(wantEnd) || o.DurationS != 10 ||
		o.LowestCharge == nil || *o.LowestCharge != 96 || o.LowestRuntime == nil || *o.LowestRuntime != 1700 || !o.Paged {
		t.Errorf("outage = %+v (end %v, charge %v, runtime %v), want %s from %s to %s, 96 %%, 1700 s, paged",
			o, o.End, deref(o.LowestCharge), deref(o.LowestRuntime), alertID, wantStart, wantEnd)
	}
	// Ranges select the outages they overlap.
	for _, tc := range []struct {
		from, to time.Duration
		want     int
	}{{-time.Hour, -36 * time.Second, 0}, {-time.Hour, -15 * time.Second, 1}, {-33 * time.Second, -15 * time.Second, 1}, {-31 * time.Second, time.Minute, 1}} {
		outs.Outages = nil
		q := fmt.Sprintf("/v1/units/%s/outages?from=%d&to=%d", a, now.Add(tc.from).UnixMilli(), now.Add(tc.to).UnixMilli())
		if code, body := in.call(tokens["lan"], "GET", q, nil, &outs); code != http.StatusOK || len(outs.Outages) != tc.want {
			t.Errorf("outages in [%s, %s): %d %s, want %d", tc.from, tc.to, code, body, tc.want)
		}
	}

	// CSV: the JSON's numbers, row for row.
	hist := fmt.Sprintf("/v1/units/%s/history?from=%d&to=%d&every=5s", a, now.Add(-time.Minute).UnixMilli(), now.Add(time.Minute).UnixMilli())
	var js struct {
		Fields []struct {
			Field  string
			Points []struct {
				Time           time.Time
				Mean, Min, Max float64
				Count          int
			}
		}
	}
	if code, body := in.call(tokens["lan"], "GET", hist, nil, &js); code != http.StatusOK {
		t.Fatalf("history: %d %s", code, body)
	}
	var want [][]string
	for _, f := range js.Fields {
		for _, p := range f.Points {
			want = append(want, []string{p.Time.UTC().Format(time.RFC3339Nano), f.Field, fmt.Sprint(p.Mean), fmt.Sprint(p.Min), fmt.Sprint(p.Max), strconv.Itoa(p.Count)})
		}
	}
	if len(want) < 4 {
		t.Fatalf("history too thin to compare: %+v", js)
	}
	for _, how := range []struct{ query, accept string }{{"&format=csv", ""}, {"", "text/csv"}, {"", "text/html, text/csv;q=0.9"}} {
		req, _ := http.NewRequest("GET", "http://"+in.app.HTTPAddr()+hist+how.query, nil)
		req.Header.Set("Authorization", "Bearer "+tokens["lan"])
		if how.accept != "" {
			req.Header.Set("Accept", how.accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(resp.Body).ReadAll()
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
			t.Fatalf("csv %+v: %d %s %v", how, resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		if strings.Join(rows[0], ",") != "time,field,mean,min,max,count" || len(rows)-1 != len(want) {
			t.Fatalf("csv %+v: %d rows, header %v; want %d", how, len(rows)-1, rows[0], len(want))
		}
		for i, row := range rows[1:] {
			for j := range row {
				if row[j] != want[i][j] && !sameNumber(row[j], want[i][j]) {
					t.Errorf("csv %+v row %d: %v, JSON has %v", how, i, row, want[i])
					break
				}
			}
		}
	}

	// Lan's export holds the silence lan set; minh's the acknowledgement.
	for who, want := range map[string]string{"lan": "silenced", "minh": "acknowledged"} {
		var ex struct {
			AlertActions []action `json:"alert_actions"`
		}
		if code, body := in.call(tokens[who], "GET", "/v1/accounts/"+who+"/export", nil, &ex); code != http.StatusOK ||
			len(ex.AlertActions) != 1 || ex.AlertActions[0].Action != want {
			t.Errorf("%s's export: %d %s, want one %s action", who, code, body, want)
		}
	}

	// Minh's account erased: the audit keeps the acknowledgement, naming
	// no one.
	if code, body := in.call(tokens["admin"], "DELETE", "/v1/accounts/minh", nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete minh: %d %s", code, body)
	}
	acts.Actions = nil // decoding into old elements would keep the members now absent
	if code, body := in.call(tokens["lan"], "GET", "/v1/units/"+a+"/alert-actions", nil, &acts); code != http.StatusOK ||
		len(acts.Actions) != 3 || acts.Actions[0].Action != "acknowledged" || acts.Actions[0].By.Name != "(deleted account)" ||
		acts.Actions[0].By.Account != "" || acts.Actions[0].Reason != "" || strings.Contains(body, "minh") || strings.Contains(body, "generator") {
		t.Errorf("audit after minh's erasure: %d %s", code, body)
	}

	// Shutdown ends every open stream.
	in.stop()
	for who, s := range streams {
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s's stream still open after shutdown", who)
		}
	}
}

func sameNumber(a, b string) bool {
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	return err1 == nil && err2 == nil && x == y
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
