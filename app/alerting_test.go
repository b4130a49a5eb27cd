package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/notify/apns/apnsfake"
	"github.com/upswatch/upswatch/notify/fcm/fcmfake"
	"github.com/upswatch/upswatch/notify/sms/smsfake"
)

// The whole alert path in one process: an OB reading for a registered unit
// becomes an on_battery alert, and the fake FCM, APNS and SMS servers
// (driven by the real client libraries) each get exactly one request, in
// the owner's language.
func TestOnBatteryReachesEveryChannelOnce(t *testing.T) {
	fcm, apns, sms := fcmfake.New(), apnsfake.New(), smsfake.New("AC0123456789", "sms-auth-token")
	t.Cleanup(fcm.Close)
	t.Cleanup(apns.Close)
	t.Cleanup(sms.Close)
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "AuthKey.p8")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	apns.VerifyWith(&key.PublicKey)
	caFile, err := apns.WriteCAFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig(t, filepath.Join(dir, "data"))
	c.Notify.FCM = config.NotifyFCM{ProjectID: "upswatch-test", Endpoint: fcm.URL(), ParallelBatches: 2}
	c.Notify.APNS = config.NotifyAPNS{KeyFile: keyFile, KeyID: "KEY1234567", TeamID: "TEAM123456",
		Topic: "com.example.upswatch", Endpoint: apns.URL(), CAFile: caFile}
	c.Notify.SMS = config.NotifySMS{Endpoint: sms.URL(), AccountSID: "AC0123456789", AuthToken: "sms-auth-token",
		From: "+15550001111", SegmentsPerSecond: 10, Burst: 5}
	in := start(t, c)

	u := in.register("123456789012")
	account := map[string]any{
		"id": "lan", "name": "Nguyễn Lan", "language": "vi", "time_zone": "Asia/Ho_Chi_Minh",
		"contacts": map[string]any{
			"fcm_tokens":  []string{"fcm-token-lan"},
			"apns_tokens": []map[string]string{{"token": "abababababababababababababababababababababababababababababababab", "bundle_id": "com.example.upswatch"}},
			"phones":      []string{"+84901234567"},
		},
		"preferences": map[string]any{"channels": map[string][]string{
			"critical": {"fcm", "apns", "sms"}, "warning": {"fcm", "apns", "sms"}}},
		"units": []string{"123456789012"},
	}
	if code, body := in.do("POST", "/v1/accounts", account, nil); code != http.StatusCreated {
		t.Fatalf("create account: %d %s", code, body)
	}
	dev := in.device(u)
	topic := "ups/123456789012/telemetry"
	now := time.Now()
	publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OL","input.voltage":230,"battery.charge":100}`, now.Add(-20*time.Second).UnixMilli()))
	publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":98,"battery.runtime":1800}`, now.Add(-10*time.Second).UnixMilli()))
	// The on_battery pending period (6 s of event time) has elapsed with
	// this reading: it fires.
	sent := time.Now()
	publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":96,"battery.runtime":1700}`, now.UnixMilli()))

	fcmReqs, err := fcm.WaitRequests(1, 5*time.Second)
	if err != nil {
		t.Fatalf("fcm: %v", err)
	}
	apnsReqs, err := apns.WaitRequests(1, 5*time.Second)
	if err != nil {
		t.Fatalf("apns: %v", err)
	}
	smsReqs, err := sms.WaitRequests(1, 5*time.Second)
	if err != nil {
		t.Fatalf("sms: %v", err)
	}
	// The latency target (within a second) is measured by
	// BenchmarkAlertLatencyUnderLoad, not asserted in a timed test.
	t.Logf("all three providers reached %s after the firing reading", time.Since(sent))
	if !strings.Contains(fcmReqs[0].Title, "đang chạy bằng pin") || fcmReqs[0].Token != "fcm-token-lan" {
		t.Errorf("fcm request: %+v", fcmReqs[0])
	}
	if !strings.Contains(apnsReqs[0].Title, "đang chạy bằng pin") || apnsReqs[0].Token != "abababababababababababababababababababababababababababababababab" {
		t.Errorf("apns request: %+v", apnsReqs[0])
	}
	if smsReqs[0].To != "+84901234567" || !strings.Contains(smsReqs[0].Body, "dang chay bang pin") {
		t.Errorf("sms request: %+v", smsReqs[0])
	}
	// Exactly once: a further reading of the same outage sends nothing new.
	publish(t, dev, topic, fmt.Sprintf(`{"ts":%d,"ups.status":"OB DISCHRG","input.voltage":0,"battery.charge":95}`, now.Add(time.Second).UnixMilli()))
	var alerts struct {
		Alerts []map[string]any `json:"alerts"`
	}
	wait.Within(t, 5*time.Second, "alert listed as firing", func() bool {
		code, _ := in.do("GET", "/v1/alerts?state=firing", nil, &alerts)
		return code == http.StatusOK && len(alerts.Alerts) > 0
	})
	// Once the rule engine has evaluated the fourth reading, any event it
	// caused would already be on its way.
	wait.Within(t, 5*time.Second, "fourth reading evaluated", func() bool {
		return in.metric("upswatch_rules_readings_evaluated_total") >= 4
	})
	if _, err := fcm.WaitRequests(2, 300*time.Millisecond); err == nil {
		t.Fatal("a second FCM request arrived for the same outage")
	}
	if n := len(fcm.Requests()) + len(apns.Requests()) + len(sms.Requests()); n != 3 {
		t.Fatalf("%d provider requests, want exactly 3", n)
	}
}
