package apns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/apns/apnsfake"
)

// newKey generates a throwaway P-256 key and PEM-encodes it as PKCS#8, the
// format of Apple's .p8 files (no key file is ever committed).
func newKey(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

type env struct {
	fake   *apnsfake.Server
	sender *Sender
	cfg    Config
}

// newEnv starts a fake that verifies the JWT signature and a sender that
// reads its key and the fake's CA from files, as in production.
func newEnv(t testing.TB) env {
	t.Helper()
	fake := apnsfake.New()
	t.Cleanup(fake.Close)
	key, keyPEM := newKey(t)
	fake.VerifyWith(&key.PublicKey)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "AuthKey_TESTKEY123.p8")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	caFile, err := fake.WriteCAFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{KeyFile: keyFile, KeyID: "TESTKEY123", TeamID: "TEAM123456", Topic: "com.example.upswatch",
		Endpoint: fake.URL(), CAFile: caFile}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return env{fake: fake, sender: s, cfg: cfg}
}

func TestSendOutcomes(t *testing.T) {
	tests := []struct {
		name           string
		reply          *apnsfake.Reply
		want           notify.Outcome
		wantRetryAfter time.Duration
		wantResponse   string
	}{
		{name: "success", want: notify.Delivered, wantResponse: "200 "},
		{name: "410 unregistered", reply: &apnsfake.Unregistered, want: notify.TokenGone, wantResponse: "410 Unregistered"},
		{name: "bad device token", reply: &apnsfake.BadDeviceToken, want: notify.TokenGone, wantResponse: "400 BadDeviceToken"},
		{name: "token not for topic", reply: &apnsfake.DeviceTokenNotForTopic, want: notify.TokenGone, wantResponse: "400 DeviceTokenNotForTopic"},
		{name: "429 with retry-after", reply: ptr(apnsfake.TooManyRequests(42)), want: notify.Retry, wantRetryAfter: 42 * time.Second, wantResponse: "429 TooManyRequests"},
		{name: "429 without retry-after", reply: ptr(apnsfake.TooManyRequests(0)), want: notify.Retry, wantResponse: "429 TooManyRequests"},
		{name: "500", reply: &apnsfake.InternalServerError, want: notify.Retry, wantResponse: "500 InternalServerError"},
		{name: "503 with http-date retry-after", reply: &apnsfake.Reply{Status: 503, Reason: "ServiceUnavailable",
			RetryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, want: notify.Retry, wantResponse: "503 ServiceUnavailable"},
		{name: "payload too large", reply: &apnsfake.PayloadTooLarge, want: notify.Failed, wantResponse: "413 PayloadTooLarge"},
		{name: "forbidden", reply: &apnsfake.Reply{Status: 403, Reason: "BadCertificateEnvironment"}, want: notify.Failed, wantResponse: "403 BadCertificateEnvironment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.reply != nil {
				e.fake.FailToken("bad0token", *tt.reply)
			}
			res := e.sender.Send(context.Background(), notify.Message{Title: "t", Body: "b"}, []string{"ok0token", "bad0token"})
			if res[0].To != "ok0token" || res[0].Outcome != notify.Delivered {
				t.Errorf("untouched token: %+v", res[0])
			}
			got := res[1]
			if got.To != "bad0token" || got.Outcome != tt.want {
				t.Errorf("got %q %v (%v), want bad0token %v", got.To, got.Outcome, got.Err, tt.want)
			}
			if strings.Contains(tt.name, "http-date") {
				// An HTTP date is relative to now: about an hour.
				if got.RetryAfter < 59*time.Minute || got.RetryAfter > time.Hour {
					t.Errorf("RetryAfter %v, want about 1h", got.RetryAfter)
				}
			} else if got.RetryAfter != tt.wantRetryAfter {
				t.Errorf("RetryAfter %v, want %v", got.RetryAfter, tt.wantRetryAfter)
			}
			if !strings.HasPrefix(got.ProviderResponse, tt.wantResponse) {
				t.Errorf("ProviderResponse %q, want prefix %q", got.ProviderResponse, tt.wantResponse)
			}
			if (got.Err == nil) != (tt.want == notify.Delivered) {
				t.Errorf("Err %v for outcome %v", got.Err, got.Outcome)
			}
			if got.Err != nil && strings.Contains(got.Err.Error(), "bad0token") {
				t.Errorf("error leaks the token: %v", got.Err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestWireFields(t *testing.T) {
	expires := time.Now().Add(30 * time.Minute).Truncate(time.Second)
	long := strings.Repeat("x", 80)
	tests := []struct {
		name             string
		msg              notify.Message
		wantPriority     string
		wantInterruption string
		wantCollapse     string
		wantExpiration   string
	}{
		{name: "critical", msg: notify.Message{Title: "Mất điện", Body: "UPS on battery", Critical: true,
			CollapseKey: "123456789012/on_battery", Expires: expires, Data: map[string]string{"unit": "123456789012"}},
			wantPriority: "10", wantInterruption: "time-sensitive", wantCollapse: "123456789012/on_battery",
			wantExpiration: strconv.FormatInt(expires.Unix(), 10)},
		{name: "normal", msg: notify.Message{Title: "Replace battery", Body: "b", CollapseKey: "u/replace_battery"},
			wantPriority: "5", wantInterruption: "active", wantCollapse: "u/replace_battery"},
		{name: "long collapse key hashed", msg: notify.Message{Title: "t", CollapseKey: long},
			wantPriority: "5", wantInterruption: "active", wantCollapse: collapseID(long)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			res := e.sender.Send(context.Background(), tt.msg, []string{"devtoken1"})
			if res[0].Outcome != notify.Delivered {
				t.Fatalf("outcome %v: %v", res[0].Outcome, res[0].Err)
			}
			reqs, err := e.fake.WaitRequests(1, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			r := reqs[0]
			if r.Token != "devtoken1" || r.Topic != e.cfg.Topic || r.PushType != "alert" {
				t.Errorf("token/topic/push type %q %q %q", r.Token, r.Topic, r.PushType)
			}
			if r.KeyID != e.cfg.KeyID || r.TeamID != e.cfg.TeamID {
				t.Errorf("JWT kid/iss %q %q, want %q %q", r.KeyID, r.TeamID, e.cfg.KeyID, e.cfg.TeamID)
			}
			if r.Title != tt.msg.Title || r.Body != tt.msg.Body {
				t.Errorf("alert %q/%q, want %q/%q", r.Title, r.Body, tt.msg.Title, tt.msg.Body)
			}
			if r.Priority != tt.wantPriority || r.InterruptionLevel != tt.wantInterruption {
				t.Errorf("priority %q interruption %q, want %q %q", r.Priority, r.InterruptionLevel, tt.wantPriority, tt.wantInterruption)
			}
			if r.CollapseID != tt.wantCollapse || len(r.CollapseID) > 64 {
				t.Errorf("collapse id %q, want %q", r.CollapseID, tt.wantCollapse)
			}
			if r.Expiration != tt.wantExpiration {
				t.Errorf("expiration %q, want %q", r.Expiration, tt.wantExpiration)
			}
			for k, v := range tt.msg.Data {
				if r.Custom[k] != v {
					t.Errorf("custom %s = %v, want %q", k, r.Custom[k], v)
				}
			}
		})
	}
}

// A key other than the one the server trusts is refused: the fake checks
// the ES256 signature, so a passing test proves the bearer is really signed.
func TestWrongKeyRefused(t *testing.T) {
	e := newEnv(t)
	_, otherPEM := newKey(t)
	cfg := e.cfg
	cfg.KeyFile, cfg.Key = "", otherPEM
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res := s.Send(context.Background(), notify.Message{Title: "t"}, []string{"devtoken1"})
	if res[0].Outcome != notify.Failed || res[0].ProviderResponse != "403 InvalidProviderToken" {
		t.Errorf("got %v %q, want Failed 403 InvalidProviderToken", res[0].Outcome, res[0].ProviderResponse)
	}
}

func TestManyTokensConcurrently(t *testing.T) {
	e := newEnv(t)
	tokens := make([]string, 300)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("tok%04d", i)
	}
	e.fake.FailToken("tok0150", apnsfake.Unregistered)
	res := e.sender.Send(context.Background(), notify.Message{Title: "t"}, tokens)
	for i, r := range res {
		want := notify.Delivered
		if i == 150 {
			want = notify.TokenGone
		}
		if r.To != tokens[i] || r.Outcome != want {
			t.Fatalf("result %d = %q %v (%v), want %q %v", i, r.To, r.Outcome, r.Err, tokens[i], want)
		}
	}
	if n := len(e.fake.Requests()); n != len(tokens) {
		t.Errorf("fake saw %d pushes, want %d", n, len(tokens))
	}
}

func TestSlowAndDown(t *testing.T) {
	e := newEnv(t)
	e.fake.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := e.sender.Send(ctx, notify.Message{Title: "t"}, []string{"devtoken1"})
	if res[0].Outcome != notify.Retry || strings.Contains(res[0].Err.Error(), "devtoken1") {
		t.Errorf("slow: got %v %v, want Retry without the token in the error", res[0].Outcome, res[0].Err)
	}

	e.fake.Reset()
	e.fake.SetDown("120")
	res = e.sender.Send(context.Background(), notify.Message{Title: "t"}, []string{"devtoken1"})
	if res[0].Outcome != notify.Retry || res[0].RetryAfter != 2*time.Minute {
		t.Errorf("down: got %v after %v, want Retry after 2m", res[0].Outcome, res[0].RetryAfter)
	}
	e.fake.SetUp()
	res = e.sender.Send(context.Background(), notify.Message{Title: "t"}, []string{"devtoken1"})
	if res[0].Outcome != notify.Delivered {
		t.Errorf("up again: got %v %v", res[0].Outcome, res[0].Err)
	}
}

func TestExpiredNotSent(t *testing.T) {
	e := newEnv(t)
	res := e.sender.Send(context.Background(), notify.Message{Title: "t", Expires: time.Now().Add(-time.Second)}, []string{"a"})
	if res[0].Outcome != notify.Failed || !errors.Is(res[0].Err, notify.ErrExpired) {
		t.Errorf("got %v %v, want Failed ErrExpired", res[0].Outcome, res[0].Err)
	}
	if n := len(e.fake.Requests()); n != 0 {
		t.Errorf("fake saw %d requests, want 0", n)
	}
}

func TestUntrustedServerRefused(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.CAFile = "" // system roots do not include the fake's certificate
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res := s.Send(context.Background(), notify.Message{Title: "t"}, []string{"devtoken1"})
	if res[0].Outcome != notify.Retry || !strings.Contains(res[0].Err.Error(), "certificate") {
		t.Errorf("got %v %v, want a certificate error", res[0].Outcome, res[0].Err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "bad.p8")
	if err := os.WriteFile(notPEM, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, keyPEM := newKey(t)
	ok := Config{Key: keyPEM, KeyID: "K", TeamID: "T", Topic: "com.example.app"}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "apns: invalid config: key_file, key_id, team_id, topic required"},
		{with(func(c *Config) { c.Topic = "" }), "apns: invalid config: topic required"},
		{with(func(c *Config) { c.Endpoint = "http://127.0.0.1:1" }), `apns: invalid config: endpoint "http://127.0.0.1:1" must be an https:// URL (APNs is HTTP/2 over TLS)`},
		{with(func(c *Config) { c.Key, c.KeyFile = nil, notPEM }), "apns: invalid config: auth key: token: AuthKey must be a valid .p8 PEM file"},
		{with(func(c *Config) { c.CAFile = notPEM }), "apns: invalid config: ca_file " + notPEM + " holds no PEM certificate"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New = %v, want %q", err, tt.want)
		}
	}
}
