package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/upswatch/upswatch/internal/wait"
)

// The whole pipeline on embedded defaults: register through the API,
// publish with a real paho client in all three payload forms, read the
// values back from the history API.
func TestEndToEndThreePayloadForms(t *testing.T) {
	in := start(t, testConfig(t, t.TempDir()))
	u := in.register("123456789012")
	dev := in.device(u)
	topic := "ups/123456789012/telemetry"
	base := time.Now().Add(-time.Minute).Truncate(time.Second)

	// 1. JSON object, numbers as numbers and as numeric strings.
	publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":"87","battery.runtime":1490}`, base.UnixMilli()))
	// 2. JSON array replay, RFC 3339 timestamps.
	publish(t, dev, topic, fmt.Sprintf(`[{"ts":%q,"battery.charge":80,"ups.status":"OB"},{"ts":%q,"battery.charge":70,"ups.status":"OB LB"}]`,
		base.Add(10*time.Second).Format(time.RFC3339), base.Add(20*time.Second).Format(time.RFC3339)))
	// 3. upsc text verbatim (time of receipt).
	publish(t, dev, topic, "battery.charge: 100\nbattery.runtime: 3000\ninput.voltage: 229.5\nups.status: OL CHRG\nups.load: 23\ndevice.model: Back-UPS XS 1500\n")

	wait.Within(t, 10*time.Second, "upsc reading is the latest", func() bool {
		l := in.latest("123456789012")
		return l != nil && l["ups.status"] == "OL CHRG"
	})
	l := in.latest("123456789012")
	if l["battery.charge"] != 100.0 || l["input.voltage"] != 229.5 || l["device.model"] != "Back-UPS XS 1500" {
		t.Fatalf("latest = %v", l)
	}
	h := in.history("123456789012", base, base.Add(30*time.Second), "10s", "battery.charge,battery.runtime")
	got := map[string][]float64{}
	for _, f := range h.Fields {
		for _, p := range f.Points {
			got[f.Field] = append(got[f.Field], p.Mean)
		}
	}
	if fmt.Sprint(got["battery.charge"]) != "[87 80 70]" || fmt.Sprint(got["battery.runtime"]) != "[1490]" {
		t.Fatalf("history = %v", got)
	}
	if n := in.metric("upswatch_ingest_readings_accepted_total"); n != 4 {
		t.Fatalf("accepted = %v, want 4", n)
	}
}

// Each bad message is rejected with its own counted reason, and never
// stops the unit's good messages behind it.
func TestRejectionReasons(t *testing.T) {
	c := testConfig(t, t.TempDir())
	c.Ingest.MaxPayloadBytes = 2048
	in := start(t, c)
	u := in.register("123456789012")
	dev := in.device(u)
	topic := "ups/123456789012/telemetry"
	now := time.Now()
	tests := []struct {
		reason  string
		topic   string
		payload string
	}{
		{"malformed", topic, `{"battery.charge": 87`},
		{"malformed", topic, "this is not telemetry"},
		{"nan_inf", topic, `{"battery.charge":"NaN"}`},
		{"nan_inf", topic, `{"input.voltage":"+Inf"}`},
		{"oversized", topic, `{"x":"` + strings.Repeat("a", 3000) + `"}`},
		{"bad_timestamp", topic, fmt.Sprintf(`{"ts":%d,"battery.charge":50}`, now.Add(48*time.Hour).UnixMilli())},
		{"bad_timestamp", topic, `{"ts":"yesterday","battery.charge":50}`},
		{"empty", topic, `{}`},
		// Only an absurd value: nothing left once it is dropped.
		{"out_of_range", topic, `{"battery.charge":250}`},
		{"malformed", "ups/123456789012/status", "maybe"},
	}
	for _, tt := range tests {
		publish(t, dev, tt.topic, tt.payload)
	}
	// A good reading after all of them still lands.
	publish(t, dev, topic, `{"battery.charge":42,"ups.status":"OL"}`)
	wait.Within(t, 10*time.Second, "good reading stored", func() bool {
		l := in.latest("123456789012")
		return l != nil && l["battery.charge"] == 42.0
	})
	want := map[string]float64{}
	for _, tt := range tests {
		want[tt.reason]++
	}
	for reason, n := range want {
		if got := in.metric(`upswatch_ingest_messages_rejected_total{reason="` + reason + `"}`); got != n {
			t.Errorf("rejected{reason=%s} = %v, want %v", reason, got, n)
		}
	}
}

// Deleting a unit ends its device's session at once and its password
// stops working. (A message of an unregistered serial that still reaches
// the ingest, through an external broker with a stale ACL, is rejected
// as unregistered: see the ingest's TestUnregisteredRejected.)
func TestUnregisteredSerial(t *testing.T) {
	in := start(t, testConfig(t, t.TempDir()))
	u := in.register("123456789012")
	lost := make(chan error, 1)
	o := paho.NewClientOptions().AddBroker(in.app.MQTTURL()).SetClientID("doomed").SetUsername(u.MQTT.Username).
		SetPassword(u.MQTT.Password).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	dev := paho.NewClient(o)
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if code, body := in.do("DELETE", "/v1/units/123456789012", nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the deleted unit's device is still connected")
	}
	if tok := dev.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		t.Fatal("the deleted unit's password still works")
	}
	if l := in.latest("123456789012"); l != nil {
		t.Fatalf("reading of a removed unit stored: %v", l)
	}
}

// A flood of garbage from one unit does not delay another unit's
// readings: the broker holds each device to its publish budget, and what
// the ingest does take from the flooder is rejected cheaply.
func TestGarbageFloodDoesNotDelayOthers(t *testing.T) {
	in := start(t, testConfig(t, t.TempDir()))
	bad := in.device(in.register("111111111111"))
	good := in.device(in.register("222222222222"))
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() {
		n := 0
		defer func() { flooded <- n }()
		for ; n < 200000; n++ { // bounded, and stopped as soon as the test is done
			select {
			case <-stop:
				return
			default:
			}
			bad.Publish("ups/111111111111/telemetry", 1, false, `{"battery.charge": garbage`)
		}
	}()
	wait.Within(t, 10*time.Second, "flood under way", func() bool {
		return in.metric(`upswatch_ingest_messages_rejected_total{reason="malformed"}`) >= 100 &&
			in.metric("upswatch_mqtt_broker_rate_limited_total") > 0
	})
	var worst time.Duration
	for i := range 20 {
		sent := time.Now()
		publish(t, good, "ups/222222222222/telemetry", fmt.Sprintf(`{"battery.charge":%d}`, i))
		wait.Within(t, 10*time.Second, "good reading stored during flood", func() bool {
			l := in.latest("222222222222")
			return l != nil && l["battery.charge"] == float64(i)
		})
		worst = max(worst, time.Since(sent))
	}
	close(stop)
	n := <-flooded
	t.Logf("%d garbage messages flooded, %v refused by the broker; worst good-reading latency %s",
		n, in.metric("upswatch_mqtt_broker_rate_limited_total"), worst)
	if worst > 5*time.Second { // without the per-device budget it was over 10 s
		t.Fatalf("good unit delayed %s by the flood", worst)
	}
}

// Restarting serve on the same data dir keeps the registry and history.
func TestRestartKeepsRegistryAndHistory(t *testing.T) {
	dir := t.TempDir()
	in := start(t, testConfig(t, dir))
	u := in.register("1234567890123456")
	publish(t, in.device(u), "ups/1234567890123456/telemetry", `{"battery.charge":61,"ups.status":"OL"}`)
	wait.Within(t, 10*time.Second, "reading stored", func() bool { return in.latest("1234567890123456") != nil })
	token := in.app.AdminToken()
	in.stop()

	again := start(t, testConfig(t, dir))
	if again.app.AdminToken() != token {
		t.Fatal("admin token changed across restart")
	}
	var unit map[string]any
	if code, body := again.do("GET", "/v1/units/1234567890123456", nil, &unit); code != http.StatusOK {
		t.Fatalf("unit lost across restart: %d %s", code, body)
	}
	if l := again.latest("1234567890123456"); l == nil || l["battery.charge"] != 61.0 {
		t.Fatalf("history lost across restart: %v", l)
	}
	// The device's credentials still work.
	publish(t, again.device(u), "ups/1234567890123456/telemetry", `{"battery.charge":62}`)
	wait.Within(t, 10*time.Second, "reading after restart", func() bool {
		l := again.latest("1234567890123456")
		return l != nil && l["battery.charge"] == 62.0
	})
}

func TestAPIErrors(t *testing.T) {
	in := start(t, testConfig(t, t.TempDir()))
	tests := []struct {
		method, path string
		body         any
		token        string
		code         int
		errCode      string
	}{
		{"GET", "/v1/units", nil, "wrong", 401, "unauthorized"},
		{"POST", "/v1/units", map[string]string{"serial": "12345"}, "", 400, "invalid_serial"},
		{"POST", "/v1/units", map[string]any{"serial": "123456789012", "colour": "red"}, "", 400, "bad_request"},
		{"GET", "/v1/units/999999999999", nil, "", 404, "not_found"},
		{"GET", "/v1/units/abc", nil, "", 400, "invalid_serial"},
		{"GET", "/v1/units/999999999999/latest", nil, "", 404, "not_found"},
	}
	for _, tt := range tests {
		code, body := in.doAs(tt.token, tt.method, tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, `"code": "`+tt.errCode+`"`) {
			t.Errorf("%s %s: %d %s, want %d %s", tt.method, tt.path, code, body, tt.code, tt.errCode)
		}
	}
	in.register("123456789012")
	if code, body := in.doAs("", "POST", "/v1/units", map[string]string{"serial": "123456789012"}); code != 409 || !strings.Contains(body, "already_registered") {
		t.Errorf("duplicate: %d %s", code, body)
	}
	if code, body := in.doAs("", "GET", "/v1/units/123456789012/history?every=-1s", nil); code != 400 || !strings.Contains(body, "invalid_query") {
		t.Errorf("bad every: %d %s", code, body)
	}
	if code, body := in.doAs("", "GET", "/v1/units/123456789012/latest", nil); code != 404 || !strings.Contains(body, "no_readings") {
		t.Errorf("latest without readings: %d %s", code, body)
	}
}

// Each account token is held to its request rate: past the burst, 429
// with a Retry-After; the admin token (the operator's, used by
// provisioning scripts) is not limited.
func TestRateLimitPerToken(t *testing.T) {
	c := testConfig(t, t.TempDir())
	c.HTTP.RatePerSecond = 0.01
	c.HTTP.RateBurst = 3
	in := start(t, c)
	if code, body := in.do("POST", "/v1/accounts", map[string]any{"id": "ops", "name": "Ops", "email": "ops@example.com",
		"region": "VN", "language": "en", "time_zone": "UTC"}, nil); code != http.StatusCreated {
		t.Fatalf("create account: %d %s", code, body)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if code, body := in.do("POST", "/v1/accounts/ops/tokens", map[string]any{}, &tok); code != http.StatusCreated || tok.Token == "" {
		t.Fatalf("create token: %d %s", code, body)
	}
	for i := range 3 {
		if code, body := in.doAs(tok.Token, "GET", "/v1/accounts/ops", nil); code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+in.app.HTTPAddr()+"/v1/accounts/ops", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th request: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for i := range 10 {
		if code, body := in.do("GET", "/v1/units", nil, nil); code != http.StatusOK {
			t.Fatalf("admin request %d: %d %s", i, code, body)
		}
	}
}
