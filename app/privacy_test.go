package app

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/store/sqlite"
)

// scan reports which of needles appear in any file under dir (the
// embedded NATS store, the SQLite history and its journal).
func scan(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found = append(found, n+" in "+strings.TrimPrefix(path, dir))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestPersonalDataSealedExportedErased writes an account with a phone
// number and push token, registers its unit as the owner, and checks: the
// store files never hold the personal fields in clear; export lists them;
// after DELETE the account, its unit and the unit's readings are gone.
func TestPersonalDataSealedExportedErased(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Products.File = filepath.Join("..", "configs", "products.yaml")
	in := start(t, cfg)

	const (
		name  = "Nguyen Van Privacy"
		email = "privacy.owner@example.vn"
		phone = "+84987654321"
		sms   = "+84911223344"
		push  = "fcm-token-PRIVACY-test-0123456789abcdef"
		addr  = "12 Duong Privacy, Quan 1"
	)
	secrets := []string{name, email, phone, sms, push, addr}
	code, body := in.doAs("", "POST", "/v1/accounts", map[string]any{
		"id": "priv", "name": name, "email": email, "phone": phone, "address": addr, "region": "VN",
		"language": "vi", "contacts": map[string]any{"fcm_tokens": []string{push}, "phones": []string{sms}},
	})
	if code != http.StatusCreated {
		t.Fatalf("create account: %d %s", code, body)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if code, body := in.call(in.app.AdminToken(), "POST", "/v1/accounts/priv/tokens", map[string]string{"name": "phone app"}, &tok); code != http.StatusCreated {
		t.Fatalf("token: %d %s", code, body)
	}
	secrets = append(secrets, tok.Token)
	var u registered
	if code, body := in.call(tok.Token, "POST", "/v1/units", map[string]string{"serial": "110000000042", "name": "home"}, &u); code != http.StatusCreated {
		t.Fatalf("owner registration: %d %s", code, body)
	}
	// An outage: on_battery fires once its 6 s pending period has passed in
	// event time, and the (dev mode) notifier logs and records it for the
	// account.
	dev, topic, now := in.device(u), "ups/110000000042/telemetry", time.Now()
	publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OL","battery.charge":100}`, now.Add(-20*time.Second).UnixMilli()))
	publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","battery.charge":98}`, now.Add(-10*time.Second).UnixMilli()))
	publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","battery.charge":77}`, now.UnixMilli()))
	wait.Within(t, 10*time.Second, "readings stored", func() bool {
		l := in.latest("110000000042")
		return l != nil && l["battery.charge"] == 77.0
	})
	var found map[string]any
	if code, body := in.call(in.app.AdminToken(), "GET", "/v1/accounts?email=PRIVACY.owner@example.vn", nil, &found); code != 200 || !strings.Contains(body, `"priv"`) {
		t.Fatalf("find by email: %d %s", code, body)
	}

	// Export before erasure lists every kind of record DELETE erases: the
	// account (profile, contacts, preferences, tokens), the unit's
	// registration and readings, the notification log and the delivery
	// records of the alert it was sent.
	var ex struct {
		Account         map[string]any   `json:"account"`
		Units           []map[string]any `json:"units"`
		Readings        []map[string]any `json:"readings"`
		NotificationLog []struct {
			Key     string `json:"key"`
			Channel string `json:"channel"`
			EventID string `json:"event_id"`
			State   string `json:"state"`
		} `json:"notification_log"`
		Pending       []map[string]any `json:"pending_notifications"`
		Notifications []struct {
			AlertID   string `json:"alert_id"`
			Recipient string `json:"recipient"`
			Outcome   string `json:"outcome"`
		} `json:"notifications"`
	}
	var export string
	wait.Within(t, 10*time.Second, "alert notified and recorded", func() bool {
		ex.NotificationLog, ex.Notifications = nil, nil
		code, body := in.call(tok.Token, "GET", "/v1/accounts/priv/export", nil, &ex)
		export = body
		fcmDelivered := false
		for _, l := range ex.NotificationLog {
			fcmDelivered = fcmDelivered || l.Channel == "fcm" && l.State == "delivered"
		}
		return code == http.StatusOK && fcmDelivered && len(ex.Notifications) > 0
	})
	for _, want := range []string{name, email, phone, sms, push, addr, "110000000042", "phone app"} {
		if !strings.Contains(export, want) {
			t.Errorf("export lacks %q", want)
		}
	}
	if p, _ := ex.Account["preferences"].(map[string]any); p == nil {
		t.Errorf("export lacks the preferences: %v", ex.Account)
	}
	if ts, _ := ex.Account["tokens"].([]any); len(ts) != 1 {
		t.Errorf("export tokens = %v, want the one token's metadata", ex.Account["tokens"])
	}
	if len(ex.Units) != 1 || ex.Units[0]["serial"] != "110000000042" {
		t.Errorf("export units = %v", ex.Units)
	}
	if len(ex.Readings) != 1 || ex.Readings[0]["battery.charge"] != 77.0 {
		t.Errorf("export readings = %v, want the unit's latest", ex.Readings)
	}
	for _, l := range ex.NotificationLog {
		if !strings.HasPrefix(l.Key, "priv.") || !strings.HasPrefix(l.EventID, "110000000042/on_battery/") || l.Channel == "" {
			t.Errorf("notification log entry = %+v", l)
		}
	}
	for _, d := range ex.Notifications {
		if d.Recipient != "priv" || !strings.HasPrefix(d.AlertID, "110000000042/on_battery/") || d.Outcome == "" {
			t.Errorf("delivery record = %+v", d)
		}
	}
	if ex.Pending == nil {
		t.Error("export lacks pending_notifications")
	}
	if strings.Contains(export, tok.Token) {
		t.Error("export shows the API token itself")
	}

	in.stop() // flush every store to disk
	if f := scan(t, dir, secrets...); len(f) > 0 {
		t.Fatalf("personal data in clear on disk: %v", f)
	}

	in = start(t, cfg)
	if code, body := in.doAs(tok.Token, "DELETE", "/v1/accounts/priv", nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	for _, p := range []string{"/v1/accounts/priv", "/v1/units/110000000042", "/v1/units/110000000042/latest"} {
		if code, body := in.doAs("", "GET", p, nil); code != http.StatusNotFound {
			t.Errorf("GET %s after erase: %d %s", p, code, body)
		}
	}
	if code, body := in.doAs("", "GET", "/v1/units/110000000042/history", nil); code != http.StatusNotFound {
		t.Errorf("history after erase: %d %s", code, body)
	}
	if code, body := in.doAs(tok.Token, "GET", "/v1/units", nil); code != http.StatusUnauthorized {
		t.Errorf("token of the erased account still works: %d %s", code, body)
	}
	if code, body := in.doAs("", "GET", "/v1/accounts?email="+email, nil); code != 200 || strings.Contains(body, "priv") {
		t.Errorf("email still indexed: %d %s", code, body)
	}
	// The notification log and delivery records went with the account: a
	// new account under the same id inherits none of them.
	if code, body := in.doAs("", "POST", "/v1/accounts", map[string]any{"id": "priv", "language": "en"}); code != http.StatusCreated {
		t.Fatalf("recreate account: %d %s", code, body)
	}
	var after map[string]any
	code, body = in.do("GET", "/v1/accounts/priv/export", nil, &after)
	if code != 200 {
		t.Fatalf("export of the new account: %d %s", code, body)
	}
	for _, k := range []string{"units", "readings", "notification_log", "pending_notifications", "notifications"} {
		if l, ok := after[k].([]any); !ok || len(l) != 0 {
			t.Errorf("export of a new account under the erased id: %s = %v, want []", k, after[k])
		}
	}
	if code, body := in.doAs("", "DELETE", "/v1/accounts/priv", nil); code != http.StatusNoContent {
		t.Fatalf("delete the new account: %d %s", code, body)
	}
	in.stop()
	if f := scan(t, dir, secrets...); len(f) > 0 {
		t.Fatalf("personal data on disk after erase: %v", f)
	}
	h, err := sqlite.Open(filepath.Join(dir, "history.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if r, err := h.Latest(t.Context(), "110000000042"); err == nil {
		t.Errorf("history store still has a reading of the erased unit: %v", r)
	}
}
