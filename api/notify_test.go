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
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

type noUnits struct{ Units }
type noHistory struct{ store.History }

func (noUnits) Remove(context.Context, ups.Serial) error       { return registry.ErrNotFound }
func (noUnits) Lookup(ups.Serial) (registry.Unit, bool)        { return registry.Unit{}, false }
func (noHistory) DeleteUnit(context.Context, ups.Serial) error { return nil }
func (noHistory) Latest(context.Context, ups.Serial) (ups.Reading, error) {
	return ups.Reading{}, store.ErrNotFound
}

// notifier is a function-field fake of the pipeline.
type notifier struct {
	deliveries func(alertID string) ([]pipeline.Delivery, error)
	test       func(id string) ([]pipeline.TestResult, error)
	erased     map[string]int
}

func (n notifier) Deliveries(_ context.Context, id string) ([]pipeline.Delivery, error) {
	return n.deliveries(id)
}
func (n notifier) SendTest(_ context.Context, id string) ([]pipeline.TestResult, error) {
	return n.test(id)
}
func (n notifier) EraseRecipient(_ context.Context, id string) (int, error) {
	n.erased[id]++
	return 0, nil
}
func (n notifier) RecordsOf(_ context.Context, id string) (pipeline.Records, error) {
	ds, err := n.deliveries("of/" + id)
	return pipeline.Records{Log: []pipeline.LogRecord{{Key: id + ".fcm.x/on_battery/1/firing", Channel: "fcm",
		EventID: "x/on_battery/1/firing", State: "delivered"}}, Deliveries: ds}, err
}

func TestNotifyAPI(t *testing.T) {
	_, _, js := bustest.Server(t)
	accounts, err := recipients.Open(context.Background(), js, recipients.Options{Sealer: keyringtest.Records(t)})
	if err != nil {
		t.Fatal(err)
	}
	var askedAlert string
	s, err := New(Config{AdminToken: "admin-token-0123456789", Units: noUnits{}, History: noHistory{}})
	if err != nil {
		t.Fatal(err)
	}
	erased := map[string]int{}
	s.HandleNotify(accounts, notifier{
		erased: erased,
		deliveries: func(id string) ([]pipeline.Delivery, error) {
			askedAlert = id
			return []pipeline.Delivery{{AlertID: id, Channel: "fcm", Outcome: "delivered"}}, nil
		},
		test: func(id string) ([]pipeline.TestResult, error) {
			return []pipeline.TestResult{{Channel: "sms", Contact: "**67", Outcome: "delivered"}}, nil
		},
	})
	srv := httptest.NewServer(s)
	defer srv.Close()
	do := func(method, path, body string, token bool) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token {
			req.Header.Set("Authorization", "Bearer admin-token-0123456789")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	errCode := func(m map[string]any) string {
		e, _ := m["error"].(map[string]any)
		c, _ := e["code"].(string)
		return c
	}

	if code, _ := do("POST", "/v1/accounts", `{}`, false); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	code, acc := do("POST", "/v1/accounts", `{"id":"lan","name":"Lan","language":"vi","time_zone":"Asia/Ho_Chi_Minh","contacts":{"phones":["+84901234567"]}}`, true)
	if code != http.StatusCreated || acc["id"] != "lan" || acc["language"] != "vi" {
		t.Fatalf("create: %d %v", code, acc)
	}
	tests := []struct {
		method, path, body string
		code               int
		errCode            string
	}{
		{"POST", "/v1/accounts", `{"id":"lan"}`, 409, "already_exists"},
		{"POST", "/v1/accounts", `{"language":"fr"}`, 400, "invalid_field"},
		{"POST", "/v1/accounts", `{"nmae":"x"}`, 400, "bad_request"},
		{"GET", "/v1/accounts/nobody", ``, 404, "not_found"},
		{"PUT", "/v1/accounts/lan/contacts", `{"phones":["0901234567"]}`, 400, "invalid_field"},
		{"PUT", "/v1/accounts/lan/contacts", `{"fcm_tokens":["tok-1"],"phones":["+84901234567"]}`, 200, ""},
		{"PUT", "/v1/accounts/lan/preferences", `{"channels":{"warning":["fcm","sms"]},"quiet_hours":{"start":"22:00","end":"06:30"}}`, 200, ""},
		{"PUT", "/v1/accounts/lan/preferences", `{"channels":{"warning":["pigeon"]}}`, 400, "invalid_field"},
		{"PUT", "/v1/accounts/lan/units/123456789012", ``, 200, ""},
		{"PUT", "/v1/accounts/lan/units/12", ``, 400, "invalid_serial"},
		{"PUT", "/v1/accounts/lan/sites/hq", ``, 200, ""},
		{"PUT", "/v1/accounts/lan", `{"name":"Lan N.","language":"en","time_zone":"Asia/Ho_Chi_Minh"}`, 200, ""},
		{"PUT", "/v1/accounts/nobody/units/123456789012", ``, 404, "not_found"},
	}
	for _, tt := range tests {
		code, out := do(tt.method, tt.path, tt.body, true)
		if code != tt.code || errCode(out) != tt.errCode {
			t.Errorf("%s %s: %d %v, want %d %q", tt.method, tt.path, code, out, tt.code, tt.errCode)
		}
		if e, ok := out["error"].(map[string]any); ok && strings.Contains(e["message"].(string), "0901234567") {
			t.Errorf("%s %s: error quotes the number", tt.method, tt.path)
		}
	}
	code, acc = do("GET", "/v1/accounts/lan", ``, true)
	if code != 200 || acc["name"] != "Lan N." || acc["language"] != "en" {
		t.Fatalf("get: %d %v", code, acc)
	}
	if got, _ := accounts.For(context.Background(), ups.Serial("123456789012"), ""); len(got) != 1 || got[0].ID != "lan" {
		t.Fatalf("routing after PUT units: %+v", got)
	}
	// The weekly summary's opt-out is a preference like the others.
	if code, _ = do("PUT", "/v1/accounts/lan/preferences", `{"weekly_report_off":true}`, true); code != 200 {
		t.Fatalf("opt out of the weekly summary: %d", code)
	}
	if r, _ := accounts.Lookup("lan"); !r.Preferences.WeeklyReportOff {
		t.Fatal("weekly_report_off not stored")
	}
	code, out := do("POST", "/v1/accounts/lan/test-notification", ``, true)
	if code != 200 || len(out["results"].([]any)) != 1 {
		t.Fatalf("test-notification: %d %v", code, out)
	}
	code, out = do("GET", "/v1/alerts/123456789012%2Fon_battery%2F1764000000000/deliveries", ``, true)
	if code != 200 || askedAlert != "123456789012/on_battery/1764000000000" || len(out["deliveries"].([]any)) != 1 {
		t.Fatalf("deliveries: %d %v (asked %q)", code, out, askedAlert)
	}
	if code, _ = do("GET", "/v1/alerts/123456789012.on_battery.1764000000000/deliveries", ``, true); code != 200 || askedAlert != "123456789012/on_battery/1764000000000" {
		t.Fatalf("dotted alert id: %d %q", code, askedAlert)
	}
	code, out = do("GET", "/v1/accounts/lan/export", ``, true)
	if code != 200 || out["account"].(map[string]any)["name"] != "Lan N." {
		t.Fatalf("export: %d %v", code, out)
	}
	for key, n := range map[string]int{"units": 0, "readings": 0, "notification_log": 1, "pending_notifications": 0, "notifications": 1} {
		if l, ok := out[key].([]any); !ok || len(l) != n {
			t.Errorf("export %s = %v, want %d entries", key, out[key], n)
		}
	}
	if code, _ = do("DELETE", "/v1/accounts/lan", ``, true); code != http.StatusNoContent || erased["lan"] != 1 {
		t.Fatalf("delete: %d, notification log erased %d times", code, erased["lan"])
	}
	if code, _ = do("GET", "/v1/accounts/lan", ``, true); code != 404 {
		t.Fatalf("get after delete: %d", code)
	}
}
