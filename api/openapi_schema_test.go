package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/upswatch/upswatch/actions"
	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/keyring/keyringtest"
	"github.com/upswatch/upswatch/live"
	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/templates"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store/sqlite"
	"github.com/upswatch/upswatch/ups"
)

// credentials rotates passwords in the registry and revokes at a fixed
// time.
type credentials struct{ *registry.Registry }

func (credentials) Revoke(context.Context, ups.Serial) (time.Time, error) {
	return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), nil
}

// oaDoc is the part of the OpenAPI document the schema checks read.
type oaDoc struct {
	Components struct {
		Schemas map[string]map[string]any `json:"schemas"`
	} `json:"components"`
	Paths map[string]map[string]struct {
		RequestBody *struct {
			Content map[string]struct {
				Schema map[string]any `json:"schema"`
			} `json:"content"`
		} `json:"requestBody"`
		Responses map[string]struct {
			Content map[string]struct {
				Schema map[string]any `json:"schema"`
			} `json:"content"`
		} `json:"responses"`
	} `json:"paths"`
}

func loadOADoc(t *testing.T) oaDoc {
	t.Helper()
	var doc oaDoc
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

// conform lists where v departs from schema: an object key the schema
// does not declare (in properties, or through additionalProperties), a
// required key missing, a value of another type or outside an enum, an
// unexpected null. Objects and arrays are checked all the way down.
func (d oaDoc) conform(at string, schema map[string]any, v any) []string {
	if r, ok := schema["$ref"].(string); ok {
		name, ok := strings.CutPrefix(r, "#/components/schemas/")
		s := d.Components.Schemas[name]
		if !ok || s == nil {
			return []string{at + ": unresolved $ref " + r}
		}
		return d.conform(at, s, v)
	}
	if alts, ok := schema["oneOf"].([]any); ok {
		var all []string
		for _, a := range alts {
			p := d.conform(at, a.(map[string]any), v)
			if len(p) == 0 {
				return nil
			}
			all = append(all, p...)
		}
		return []string{at + ": matches no alternative of oneOf: " + strings.Join(all, "; ")}
	}
	if v == nil {
		if schema["nullable"] == true {
			return nil
		}
		return []string{at + ": null, and the schema is not nullable"}
	}
	bad := func(format string, args ...any) []string { return []string{at + ": " + fmt.Sprintf(format, args...)} }
	switch typ, _ := schema["type"].(string); typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return bad("%T, want an object", v)
		}
		props, _ := schema["properties"].(map[string]any)
		var out []string
		required, _ := schema["required"].([]any)
		for _, req := range required {
			if _, ok := m[req.(string)]; !ok {
				out = append(out, at+": required key "+req.(string)+" missing")
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if p, ok := props[k].(map[string]any); ok {
				out = append(out, d.conform(at+"."+k, p, m[k])...)
				continue
			}
			switch ap := schema["additionalProperties"].(type) {
			case map[string]any:
				out = append(out, d.conform(at+"."+k, ap, m[k])...)
			case bool:
				if !ap {
					out = append(out, at+": key "+k+" is not declared")
				}
			default: // absent: keys must be declared
				out = append(out, at+": key "+k+" is not declared")
			}
		}
		return out
	case "array":
		l, ok := v.([]any)
		if !ok {
			return bad("%T, want an array", v)
		}
		items, _ := schema["items"].(map[string]any)
		var out []string
		for i, e := range l {
			out = append(out, d.conform(fmt.Sprintf("%s[%d]", at, i), items, e)...)
		}
		return out
	case "string":
		s, ok := v.(string)
		if !ok {
			return bad("%T, want a string", v)
		}
		if schema["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				return bad("%q is not a date-time", s)
			}
		}
		if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, any(s)) {
			return bad("%q is not one of %v", s, enum)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			return bad("%T, want a number", v)
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != math.Trunc(f) {
			return bad("%v, want an integer", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad("%T, want a boolean", v)
		}
	default:
		return bad("schema without a type")
	}
	return nil
}

// TestOpenAPISchemasMatchResponses runs a server on real stores (NATS
// accounts, registry and notification pipeline, SQLite history) and checks
// that real answers of the main endpoints, successes and errors, conform to
// the schema the document gives their status, and that the request bodies
// sent conform to the requestBody schemas: the document cannot drift from
// the code unnoticed.
func TestOpenAPISchemasMatchResponses(t *testing.T) {
	doc := loadOADoc(t)
	for name, s := range doc.Components.Schemas {
		if s["type"] == "object" && s["properties"] == nil && s["additionalProperties"] == nil {
			t.Errorf("schema %s declares no properties", name)
		}
	}
	// Every operation documents its success answer, with a schema unless
	// it has no body.
	for path, item := range doc.Paths {
		for method, op := range item {
			ok := false
			for code, r := range op.Responses {
				if strings.HasPrefix(code, "2") {
					ok = code == "204" || r.Content["application/json"].Schema != nil || path == "/v1/openapi.json" ||
						r.Content["text/event-stream"].Schema != nil
				}
			}
			if !ok {
				t.Errorf("%s %s: no success response with a schema", method, path)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, nc, js := bustest.Server(t)
	accounts, err := recipients.Open(ctx, js, recipients.Options{Sealer: keyringtest.Records(t)})
	if err != nil {
		t.Fatal(err)
	}
	units, err := registry.Open(ctx, js, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hist, err := sqlite.Open(filepath.Join(t.TempDir(), "history.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer hist.Close()
	tmpl, err := templates.Load("")
	if err != nil {
		t.Fatal(err)
	}
	notifier, err := pipeline.New(js, pipeline.Config{Units: units, Recipients: accounts, Templates: tmpl})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := actions.Open(ctx, js, actions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := live.New(live.Config{Conn: nc, Units: units, ReadingJSON: ReadingJSON})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 4)
	go func() { _ = hub.Run(ctx); done <- struct{}{} }()
	go func() { _ = accounts.Run(ctx); done <- struct{}{} }()
	go func() { _ = units.Run(ctx); done <- struct{}{} }()
	go func() { _ = notifier.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done; <-done; <-done }()
	<-hub.Ready()
	<-accounts.Ready()
	<-units.Ready()
	<-notifier.Ready()

	const admin = "admin-token-0123456789"
	t0 := time.Now().UTC().Truncate(time.Second)
	ev := rules.Event{Kind: rules.Firing, Rule: "on_battery", Severity: rules.Warning, Serial: "110000000077", At: t0,
		StartedAt: t0.Add(-6 * time.Second), Fingerprint: fmt.Sprintf("110000000077/on_battery/%d", t0.Add(-6*time.Second).UnixMilli()),
		Values: []rules.Value{{Name: "battery.runtime", Value: 1500}}, Status: "OB DISCHRG", Message: "on battery"}
	s, err := New(Config{AdminToken: admin, Units: units, History: hist, Broker: "tcp://broker.example:1883", TopicPrefix: "ups",
		RotateKeys: func(context.Context) (string, int, error) { return "20260101-0a0b0c0d", 1, nil }})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleNotify(accounts, notifier)
	s.HandleAlerts(fixedAlerts{ev})
	s.HandleAlertActions(fixedAlerts{ev}, acts)
	s.HandleOutages(fixedAlerts{ev}, notifier)
	s.HandleEvents(hub)
	s.HandleDeviceCredentials(credentials{units})
	s.HandleBattery(battery.NewStore(js, nil))
	reporter, err := report.New(hist, fixedAlerts{ev})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleReports(reporter)
	srv := httptest.NewServer(s)
	defer srv.Close()

	type call struct {
		token, method, pattern, path string
		body                         any
		code                         int
	}
	do := func(c call) map[string]any {
		t.Helper()
		var rd io.Reader
		op, ok := doc.Paths[c.pattern][strings.ToLower(c.method)]
		if !ok {
			t.Fatalf("%s %s is not in the document", c.method, c.pattern)
		}
		if c.body != nil {
			b, _ := json.Marshal(c.body)
			rd = strings.NewReader(string(b))
			if op.RequestBody == nil {
				t.Errorf("%s %s: the document has no requestBody", c.method, c.pattern)
			} else {
				var v any
				_ = json.Unmarshal(b, &v)
				for _, p := range doc.conform("request", op.RequestBody.Content["application/json"].Schema, v) {
					t.Errorf("%s %s: %s", c.method, c.pattern, p)
				}
			}
		}
		req, _ := http.NewRequest(c.method, srv.URL+c.path, rd)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.code {
			t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, resp.StatusCode, raw, c.code)
		}
		r, ok := op.Responses[fmt.Sprint(c.code)]
		if !ok {
			t.Errorf("%s %s: the document has no response %d", c.method, c.pattern, c.code)
			return nil
		}
		schema := r.Content["application/json"].Schema
		if len(raw) == 0 {
			if schema != nil {
				t.Errorf("%s %s: empty %d answer, the document gives it a body", c.method, c.pattern, c.code)
			}
			return nil
		}
		if schema == nil {
			t.Errorf("%s %s: the document gives no schema for %d", c.method, c.pattern, c.code)
			return nil
		}
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		for _, p := range doc.conform("response", schema, v) {
			t.Errorf("%s %s (%d): %s", c.method, c.pattern, c.code, p)
		}
		return v
	}

	// Accounts: every field set, so every member of the view is present.
	do(call{admin, "POST", "/v1/accounts", "/v1/accounts", map[string]any{
		"id": "lan", "role": "owner", "name": "Lan", "email": "lan@example.vn", "phone": "+84901234567",
		"address": "1 Duong A", "region": "VN", "marketing_consent": true, "language": "vi", "time_zone": "Asia/Ho_Chi_Minh",
		"contacts":    map[string]any{"fcm_tokens": []string{"fcm-tok"}, "apns_tokens": []map[string]string{{"token": strings.Repeat("ab", 32), "bundle_id": "com.example"}}, "phones": []string{"+84901234567"}},
		"preferences": map[string]any{"channels": map[string][]string{"warning": {"fcm", "sms"}}, "quiet_hours": map[string]string{"start": "22:00", "end": "06:00"}, "muted": []string{"110000000099"}},
	}, 201})
	tok := do(call{admin, "POST", "/v1/accounts/{id}/tokens", "/v1/accounts/lan/tokens", map[string]string{"name": "phone"}, 201})
	owner, _ := tok["token"].(string)
	do(call{owner, "PUT", "/v1/accounts/{id}", "/v1/accounts/lan", map[string]any{"name": "Lan N.", "email": "lan@example.vn",
		"phone": "+84901234567", "address": "1 Duong A", "region": "VN", "language": "vi", "time_zone": "Asia/Ho_Chi_Minh", "marketing_consent": false}, 200})
	do(call{owner, "PUT", "/v1/accounts/{id}/contacts", "/v1/accounts/lan/contacts", map[string]any{"fcm_tokens": []string{"fcm-tok"}, "phones": []string{"+84901234567"}}, 200})
	do(call{owner, "PUT", "/v1/accounts/{id}/preferences", "/v1/accounts/lan/preferences", map[string]any{"channels": map[string][]string{"warning": {"fcm", "apns"}}}, 200})
	do(call{admin, "PUT", "/v1/accounts/{id}/sites/{site}", "/v1/accounts/lan/sites/hq", nil, 200})
	do(call{admin, "GET", "/v1/accounts", "/v1/accounts?limit=10", nil, 200})

	// Units and readings.
	do(call{owner, "POST", "/v1/units", "/v1/units", map[string]string{"serial": "110000000077", "name": "Office", "site": "hq"}, 201})
	do(call{admin, "POST", "/v1/units", "/v1/units", map[string]string{"serial": "110000000078", "name": "Lab", "site": "hq", "owner": "lan"}, 201})
	do(call{owner, "GET", "/v1/units", "/v1/units?limit=1", nil, 200})
	do(call{owner, "GET", "/v1/units/{serial}", "/v1/units/110000000077", nil, 200})
	var rd ups.Reading
	rd.Serial, rd.Time, rd.Status, rd.HasStatus = "110000000077", t0.Add(-time.Minute), ups.ParseStatus("OB DISCHRG"), true
	rd.SetNum("battery.charge", 96)
	rd.SetNum("input.voltage", 0)
	rd.SetText("device.model", "Home 1000")
	if err := hist.WriteReadings(ctx, []ups.Reading{rd}); err != nil {
		t.Fatal(err)
	}
	do(call{owner, "GET", "/v1/units/{serial}/latest", "/v1/units/110000000077/latest", nil, 200})
	do(call{owner, "POST", "/v1/units/{serial}/rotate-password", "/v1/units/110000000077/rotate-password", nil, 200})
	do(call{owner, "POST", "/v1/units/{serial}/revoke", "/v1/units/110000000077/revoke", nil, 403})
	do(call{admin, "POST", "/v1/units/{serial}/revoke", "/v1/units/110000000077/revoke", nil, 200})
	batteryCalls(t, ctx, js, func(token, method, pattern, path string, body any, code int) map[string]any {
		return do(call{token, method, pattern, path, body, code})
	}, owner)
	do(call{owner, "GET", "/v1/units/{serial}/history", fmt.Sprintf("/v1/units/110000000077/history?from=%d&to=%d&every=1m",
		t0.Add(-time.Hour).UnixMilli(), t0.Add(time.Hour).UnixMilli()), nil, 200})

	// Alerts and notifications: an event through the (dev mode) pipeline
	// leaves a log entry and a delivery record.
	b, _ := json.Marshal(ev)
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "upswatch.alerts.110000000077.on_battery", Data: b}); err != nil {
		t.Fatal(err)
	}
	do(call{owner, "GET", "/v1/alerts", "/v1/alerts", nil, 200})
	do(call{owner, "GET", "/v1/units/{serial}/alerts", "/v1/units/110000000077/alerts", nil, 200})
	do(call{owner, "POST", "/v1/accounts/{id}/test-notification", "/v1/accounts/lan/test-notification", nil, 200})
	wait.Within(t, 10*time.Second, "the test notification in the export and its log", func() bool {
		ex := do(call{owner, "GET", "/v1/accounts/{id}/export", "/v1/accounts/lan/export", nil, 200})
		sent, _ := ex["notifications"].([]any)
		logged, _ := ex["notification_log"].([]any)
		return len(sent) > 0 && len(logged) > 0
	})
	do(call{owner, "GET", "/v1/alerts/{id}/deliveries", "/v1/alerts/" + strings.ReplaceAll(ev.Fingerprint, "/", ".") + "/deliveries", nil, 200})
	do(call{owner, "GET", "/v1/accounts/{id}", "/v1/accounts/lan", nil, 200})
	do(call{admin, "POST", "/v1/admin/keys/rotate", "/v1/admin/keys/rotate", nil, 200})

	// Acknowledge and silence: the answers, the alert list showing both,
	// the audit, the outage (ongoing: end null, no readings in it: lowest
	// values null), then both withdrawn.
	alertPath := "/v1/alerts/" + strings.ReplaceAll(ev.Fingerprint, "/", ".")
	do(call{owner, "POST", "/v1/alerts/{id}/ack", alertPath + "/ack", map[string]string{"reason": "on it"}, 200})
	do(call{owner, "POST", "/v1/alerts/{id}/silence", alertPath + "/silence", map[string]string{"duration": "2h", "reason": "works"}, 200})
	al := do(call{admin, "GET", "/v1/alerts", "/v1/alerts", nil, 200})
	if l, _ := al["alerts"].([]any); len(l) != 1 || l[0].(map[string]any)["ack"] == nil || l[0].(map[string]any)["silence"] == nil {
		t.Errorf("alerts = %v, want the alert with its ack and silence", al)
	}
	do(call{owner, "GET", "/v1/units/{serial}/alert-actions", "/v1/units/110000000077/alert-actions", nil, 200})
	do(call{owner, "GET", "/v1/units/{serial}/outages", "/v1/units/110000000077/outages", nil, 200})
	do(call{owner, "GET", "/v1/reports", "/v1/reports?scope=unit&id=110000000077", nil, 200})
	do(call{owner, "GET", "/v1/reports", "/v1/reports?scope=account&id=lan", nil, 200})
	do(call{owner, "GET", "/v1/reports", "/v1/reports?scope=site&id=nowhere", nil, 404})
	do(call{owner, "DELETE", "/v1/alerts/{id}/ack", alertPath + "/ack?reason=done", nil, 204})
	do(call{owner, "DELETE", "/v1/alerts/{id}/silence", alertPath + "/silence", nil, 204})
	do(call{owner, "DELETE", "/v1/alerts/{id}/silence", alertPath + "/silence", nil, 404})
	do(call{owner, "POST", "/v1/alerts/{id}/ack", "/v1/alerts/110000000077.on_battery.5/ack", nil, 409})
	do(call{owner, "POST", "/v1/alerts/{id}/ack", "/v1/alerts/110000000099.on_battery.5/ack", nil, 404})
	do(call{owner, "POST", "/v1/alerts/{id}/silence", alertPath + "/silence", map[string]string{"duration": "31d"}, 400})
	do(call{owner, "GET", "/v1/units/{serial}/outages", "/v1/units/110000000077/outages?from=x", nil, 400})
	do(call{owner, "GET", "/v1/units/{serial}/history", "/v1/units/110000000077/history?format=xml", nil, 400})

	// The event stream: an alert, a reading and an action, each
	// conforming to its schema.
	checkEventStream(t, doc, srv.URL, owner, func() {
		b, _ := json.Marshal(ev)
		if err := nc.Publish("upswatch.alerts.110000000077.on_battery", b); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("upswatch.readings.0", ups.AppendBatch(nil, []ups.Reading{rd})); err != nil {
			t.Fatal(err)
		}
		if _, err := acts.Silence(ctx, actions.AlertID{Serial: "110000000077", Rule: "on_battery", Start: 1}, actions.Actor{Account: "lan"}, time.Minute, "x"); err != nil {
			t.Fatal(err)
		}
	})

	// Errors.
	do(call{"", "GET", "/v1/units", "/v1/units", nil, 401})
	do(call{owner, "GET", "/v1/units/{serial}", "/v1/units/12", nil, 400})
	do(call{owner, "GET", "/v1/units/{serial}", "/v1/units/110000000099", nil, 404})
	do(call{owner, "GET", "/v1/accounts", "/v1/accounts", nil, 403})
	do(call{owner, "POST", "/v1/units", "/v1/units", map[string]string{"serial": "110000000077"}, 409})
	do(call{admin, "POST", "/v1/accounts", "/v1/accounts", map[string]any{"id": "lan"}, 409})

	// Deletions answer 204 without a body.
	do(call{owner, "DELETE", "/v1/units/{serial}", "/v1/units/110000000078", nil, 204})
	do(call{owner, "DELETE", "/v1/accounts/{id}", "/v1/accounts/lan", nil, 204})
}

// checkEventStream opens GET /v1/events, runs publish, and checks that
// the document describes the stream and that an alert, a reading and an
// action arrive with data conforming to their schemas.
func checkEventStream(t *testing.T, doc oaDoc, base, token string, publish func()) {
	t.Helper()
	if doc.Paths["/v1/events"]["get"].Responses["200"].Content["text/event-stream"].Schema == nil {
		t.Error("GET /v1/events: the document has no text/event-stream answer")
	}
	// The deadline ends a stream that never brings the events.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v1/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	publish()
	schemas := map[string]string{"alert": "AlertEvent", "reading": "LiveReading", "action": "AlertActionEvent"}
	seen := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	name := ""
	for len(seen) < len(schemas) && sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "event: "); ok {
			name = n
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			t.Fatalf("event %s: %v", name, err)
		}
		for _, p := range doc.conform(name, map[string]any{"$ref": "#/components/schemas/" + schemas[name]}, v) {
			t.Errorf("GET /v1/events: %s", p)
		}
		seen[name] = true
	}
	if len(seen) != len(schemas) {
		t.Fatalf("the stream ended after %v: %v", seen, sc.Err())
	}
}

// fixedAlerts answers every alert query with the same events.
type fixedAlerts []rules.Event

func (f fixedAlerts) Timeline(context.Context, ups.Serial, time.Time, time.Time, int) ([]rules.Event, error) {
	return f, nil
}
func (f fixedAlerts) Active(context.Context, string) ([]rules.Event, error) { return f, nil }

// TestOpenAPISchemasMatchTypes checks the JSON of the API's types with
// every field set (members the live answers above may leave out, like a
// pending notification or an erroring delivery) against their schemas.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadOADoc(t)
	at := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		schema string
		v      any
	}{
		{"Account", recipients.Recipient{
			Account: recipients.Account{ID: "lan", Role: recipients.RoleManager, Region: "VN", Language: "vi", TimeZone: "Asia/Ho_Chi_Minh",
				Preferences: recipients.Preferences{Channels: map[string][]string{"critical": {"sms"}},
					QuietHours: &recipients.QuietHours{Start: "22:00", End: "06:00"}, Muted: []ups.Serial{"110000000001"},
					WeeklyReportOff: true},
				Units: []ups.Serial{"110000000001"}, Sites: []string{"hq"},
				Dropped:   []recipients.Dropped{{Channel: "fcm", Contact: "fcm:…abcd", Reason: "unregistered", At: at}},
				Tokens:    []recipients.TokenInfo{{ID: "0123456789ab", Name: "phone", CreatedAt: at}},
				Marketing: recipients.Consent{Granted: true, At: &at}, CreatedAt: at, UpdatedAt: at},
			Personal: recipients.Personal{Name: "Lan", Email: "lan@example.vn", Phone: "+84901234567", Address: "1 Duong A",
				Contacts: recipients.Contacts{FCMTokens: []string{"f"}, APNSTokens: []recipients.APNSToken{{Token: "ab", BundleID: "b"}},
					Phones: []string{"+84901234567"}}},
		}},
		{"AlertEvent", rules.Event{Kind: rules.Resolved, Rule: "on_battery", Severity: rules.Critical, Serial: "110000000001",
			At: at, StartedAt: at.Add(-time.Minute), EndedAt: at, Duration: time.Minute, Values: []rules.Value{{Name: "x", Value: 1}},
			Status: "OL", Fingerprint: "110000000001/on_battery/1", Historical: true, Silent: true, Message: "m"}},
		{"NotificationLogEntry", pipeline.LogRecord{Key: "lan.fcm.e", Channel: "fcm", EventID: "e", State: "failed", At: at, Response: "404"}},
		{"PendingNotification", pipeline.Pending{Key: "lan.sms.e", AlertID: "a", EventID: "e", Kind: "firing", Rule: "on_battery",
			Serial: "110000000001", Recipient: "lan", Channel: "sms", EventAt: at, QueuedAt: at,
			Message: notify.Message{Title: "t", Body: "b", Critical: true, CollapseKey: "k", Expires: at, Data: map[string]string{"k": "v"}}}},
		{"Delivery", pipeline.Delivery{AlertID: "a", EventID: "e", Kind: "firing", Rule: "r", Serial: "110000000001", Recipient: "lan",
			Channel: "apns", Contact: "…ab", Outcome: "failed", Response: "410", Error: "gone", Attempt: 2, At: at}},
		{"TestResult", pipeline.TestResult{Channel: "sms", Contact: "**67", Outcome: "retry", Response: "503", Error: "down"}},
		{"AlertActionEvent", actions.Record{Action: actions.Silenced, AlertID: "a", Serial: "110000000001", Rule: "on_battery",
			By: actions.Actor{Account: "lan", Admin: true, Erased: true}, At: at, Reason: "r", Until: at}},
		{"Report", func() reportJSON {
			v, n := 42.0, 0.99
			ex := []report.Excursion{{Serial: "110000000001", Start: at, DurationS: 60, Extreme: 200, Nominal: 230}}
			return reportJSON{Scope: "site", ID: "hq", Report: report.Report{From: at, To: at.Add(time.Hour), Units: []ups.Serial{"110000000001"},
				Outages: report.Outages{Count: 1, TotalS: 60, LongestS: 60, LongestUnit: "110000000001", Under1m: 0, From1To5m: 1,
					LowestCharge: &v, LowestRuntime: &v, List: []report.Outage{{Serial: "110000000001", Start: at, End: at, DurationS: 60, Ongoing: true}}},
				Mains: report.Mains{VoltageWindows: 6, VoltageInBand: 5, VoltageInBandShare: &n, Sags: ex, Swells: ex,
					FrequencyWindows: 60, FrequencyInBand: 59, FrequencyInBandShare: &n, FrequencyExcursions: ex},
				Alerts: map[string]int{"on_battery": 1}, OutOfContactS: 5, OutOfContact: []report.UnitTime{{Serial: "110000000001", S: 5}},
				Transfers: map[string]int{"blackout": 1}, BoostS: 60, TrimS: 30,
				SelfTests: report.SelfTests{Tests: 1, TestS: 10, Calibrations: 1, CalibrationS: 600, Results: map[string]int{"passed": 1}}}}
		}()},
		{"MQTTCredentials", Credentials{Broker: "tcp://b:1883", Username: "u", Password: "p", TelemetryTopic: "t", StatusTopic: "s"}},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		_ = json.Unmarshal(b, &v)
		for _, p := range doc.conform(tt.schema, map[string]any{"$ref": "#/components/schemas/" + tt.schema}, v) {
			t.Errorf("%s", p)
		}
	}
}

// TestConformFindsDrift shows the checker refuses what it should.
func TestConformFindsDrift(t *testing.T) {
	doc := loadOADoc(t)
	unit := map[string]any{"$ref": "#/components/schemas/Unit"}
	good := map[string]any{"serial": "110000000001", "name": "n", "site": "s", "created_at": "2026-11-24T08:00:00Z"}
	if p := doc.conform("unit", unit, good); len(p) != 0 {
		t.Fatalf("a good unit: %v", p)
	}
	for name, bad := range map[string]map[string]any{
		"undeclared key":   {"serial": "110000000001", "name": "n", "site": "s", "created_at": "2026-11-24T08:00:00Z", "owner_name": "x"},
		"required missing": {"serial": "110000000001", "name": "n", "site": "s"},
		"wrong type":       {"serial": "110000000001", "name": 3.0, "site": "s", "created_at": "2026-11-24T08:00:00Z"},
		"not a date-time":  {"serial": "110000000001", "name": "n", "site": "s", "created_at": "yesterday"},
		"null":             {"serial": "110000000001", "name": nil, "site": "s", "created_at": "2026-11-24T08:00:00Z"},
	} {
		if p := doc.conform("unit", unit, bad); len(p) != 1 {
			t.Errorf("%s: %v, want one finding", name, p)
		}
	}
	list := map[string]any{"$ref": "#/components/schemas/UnitList"}
	if p := doc.conform("list", list, map[string]any{"units": []any{map[string]any{"serial": "1"}}, "next_cursor": ""}); len(p) == 0 {
		t.Error("an incomplete unit inside a list passed")
	}
}
