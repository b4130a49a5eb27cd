package sms

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/sms/smsfake"
)

const (
	testSID   = "ACtest0000000000000000000000000001"
	testToken = "s3cr3t-auth-token"
	testFrom  = "+15005550006"
)

func newEnv(t testing.TB, cfg Config, opts ...Option) (*smsfake.Server, *Sender) {
	t.Helper()
	fake := smsfake.New(testSID, testToken)
	t.Cleanup(fake.Close)
	return fake, newSender(t, fake, cfg, opts...)
}

func newSender(t testing.TB, fake *smsfake.Server, cfg Config, opts ...Option) *Sender {
	t.Helper()
	cfg.Endpoint, cfg.AccountSID, cfg.From = fake.URL(), testSID, testFrom
	if cfg.AuthToken == "" {
		cfg.AuthToken = testToken
	}
	if cfg.SegmentsPerSecond == 0 {
		cfg.SegmentsPerSecond = 1e6 // pacing is tested in a synctest bubble below
		cfg.Burst = 1000
	}
	s, err := New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// inBubble is an HTTP client that serves each request with the fake's
// handler in the calling goroutine, noting when (by the bubble's clock,
// since start) each request was made: no network, so a token bucket is
// measured inside a synctest bubble, where time moves only when every
// goroutine waits on it.
type inBubble struct {
	h     http.Handler
	start time.Time
	mu    sync.Mutex
	at    []time.Duration
}

func (b *inBubble) RoundTrip(r *http.Request) (*http.Response, error) {
	b.mu.Lock()
	b.at = append(b.at, time.Since(b.start))
	b.mu.Unlock()
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func (b *inBubble) times() []time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Duration(nil), b.at...)
}

func TestSendOutcomes(t *testing.T) {
	tests := []struct {
		name           string
		reply          *smsfake.Reply
		authToken      string
		want           notify.Outcome
		wantRetryAfter time.Duration
		wantResponse   string
	}{
		{name: "success", want: notify.Delivered, wantResponse: "201 SM"},
		{name: "opted out", reply: &smsfake.OptedOut, want: notify.TokenGone, wantResponse: "400 21610"},
		{name: "invalid number", reply: &smsfake.InvalidNumber, want: notify.TokenGone, wantResponse: "400 21211"},
		{name: "not mobile", reply: &smsfake.NotMobile, want: notify.TokenGone, wantResponse: "400 21614"},
		{name: "429 with retry-after", reply: ptr(smsfake.TooManyRequests(7)), want: notify.Retry, wantRetryAfter: 7 * time.Second, wantResponse: "429 20429"},
		{name: "500", reply: &smsfake.ServerError, want: notify.Retry, wantResponse: "500 20500"},
		{name: "503 with retry-after", reply: &smsfake.Reply{Status: 503, Code: 20503, RetryAfter: "60"}, want: notify.Retry, wantRetryAfter: time.Minute, wantResponse: "503 20503"},
		{name: "other 4xx", reply: &smsfake.Reply{Status: 400, Code: 21408, Message: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +84912345678"},
			want: notify.Failed, wantResponse: "400 21408"},
		{name: "wrong credentials", authToken: "wrong-token", want: notify.Failed, wantResponse: "401 20003"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			fake, s := newEnv(t, Config{AuthToken: tt.authToken}, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			const ok, bad = "+84900000001", "+84912345678"
			if tt.reply != nil {
				fake.FailTo(bad, *tt.reply)
			}
			res := s.Send(context.Background(), notify.Message{Body: "UPS on battery"}, []string{ok, bad})
			if tt.authToken == "" && (res[0].To != ok || res[0].Outcome != notify.Delivered) {
				t.Errorf("untouched number: %+v", res[0])
			}
			got := res[1]
			if got.To != bad || got.Outcome != tt.want || got.RetryAfter != tt.wantRetryAfter {
				t.Errorf("got %v after %v (%v), want %v after %v", got.Outcome, got.RetryAfter, got.Err, tt.want, tt.wantRetryAfter)
			}
			if !strings.HasPrefix(got.ProviderResponse, tt.wantResponse) {
				t.Errorf("ProviderResponse %q, want prefix %q", got.ProviderResponse, tt.wantResponse)
			}
			if (got.Err == nil) != (tt.want == notify.Delivered) {
				t.Errorf("Err %v for outcome %v", got.Err, got.Outcome)
			}
			for _, secret := range []string{bad, "912345678", testToken, tt.authToken} {
				if secret == "" {
					continue
				}
				if got.Err != nil && strings.Contains(got.Err.Error(), secret) {
					t.Errorf("error leaks %q: %v", secret, got.Err)
				}
				if strings.Contains(logs.String(), secret) {
					t.Errorf("log leaks %q: %s", secret, logs.String())
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestWire(t *testing.T) {
	fake, s := newEnv(t, Config{})
	body := FitGSM("Mất điện: UPS 123456789012 đang chạy pin")
	res := s.Send(context.Background(), notify.Message{Title: "ignored by SMS", Body: body}, []string{"+84901234567"})
	if res[0].Outcome != notify.Delivered || !strings.HasSuffix(res[0].ProviderResponse, " queued") {
		t.Fatalf("got %+v", res[0])
	}
	reqs, err := fake.WaitRequests(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := reqs[0]
	if r.AccountSID != testSID || r.To != "+84901234567" || r.From != testFrom || r.Body != "Mat dien: UPS 123456789012 dang chay pin" {
		t.Errorf("request %+v", r)
	}
	if u, p, ok := (&http.Request{Header: r.Header}).BasicAuth(); !ok || u != testSID || p != testToken {
		t.Errorf("basic auth %q/%q %v", u, p, ok)
	}
}

func TestRejectedBeforeSending(t *testing.T) {
	fake, s := newEnv(t, Config{})
	tests := []struct {
		name string
		msg  notify.Message
		to   []string
		want error
	}{
		{"expired", notify.Message{Body: "b", Expires: time.Now().Add(-time.Second)}, []string{"+84900000001"}, notify.ErrExpired},
		{"empty body", notify.Message{}, []string{"+84900000001"}, nil},
		{"empty number", notify.Message{Body: "b"}, []string{""}, nil},
	}
	for _, tt := range tests {
		res := s.Send(context.Background(), tt.msg, tt.to)
		if res[0].Outcome != notify.Failed || (tt.want != nil && !errors.Is(res[0].Err, tt.want)) {
			t.Errorf("%s: got %v %v, want Failed", tt.name, res[0].Outcome, res[0].Err)
		}
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("fake saw %d requests, want 0", n)
	}
}

// The bucket runs on the real clock inside a synctest bubble: each request
// is made exactly when the rate allows it.
func TestTokenBucket(t *testing.T) {
	long := strings.Repeat("a", 400) // 3 GSM-7 segments
	tests := []struct {
		name   string
		rate   float64
		burst  int
		bodies []string
		wantAt []time.Duration // when each body's request is made
	}{
		{name: "burst then rate", rate: 2, burst: 2, bodies: []string{"a", "b", "c", "d"},
			wantAt: []time.Duration{0, 0, 500 * time.Millisecond, time.Second}},
		{name: "multi-segment message pays per segment", rate: 1, burst: 1, bodies: []string{"a", long},
			wantAt: []time.Duration{0, 3 * time.Second}},
		{name: "message longer than burst waits in burst steps", rate: 10, burst: 2, bodies: []string{long},
			wantAt: []time.Duration{100 * time.Millisecond}},
		{name: "unicode counts ucs2 segments", rate: 1, burst: 4, bodies: []string{strings.Repeat("đ", 71), strings.Repeat("đ", 71), "x"},
			wantAt: []time.Duration{0, 0, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := smsfake.New(testSID, testToken) // outside the bubble: it listens on a real port
			t.Cleanup(fake.Close)
			synctest.Test(t, func(t *testing.T) {
				client := &inBubble{h: fake.Handler(), start: time.Now()}
				s := newSender(t, fake, Config{SegmentsPerSecond: tt.rate, Burst: tt.burst, Concurrency: 1},
					WithHTTPClient(&http.Client{Transport: client}))
				for i, b := range tt.bodies {
					if res := s.Send(context.Background(), notify.Message{Body: b}, []string{"+8490000000" + string(rune('0'+i))}); res[0].Outcome != notify.Delivered {
						t.Fatalf("send %d: %v %v", i, res[0].Outcome, res[0].Err)
					}
				}
				if got := client.times(); !equalDurations(got, tt.wantAt) {
					t.Errorf("requests at %v, want %v", got, tt.wantAt)
				}
				if n := len(fake.Requests()); n != len(tt.bodies) {
					t.Errorf("fake saw %d requests, want %d", n, len(tt.bodies))
				}
			})
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Past the caller's deadline a number is not sent: it gets Retry with the
// wait it still needed, and its segments go back to the bucket.
func TestBucketDeadline(t *testing.T) {
	fake := smsfake.New(testSID, testToken)
	t.Cleanup(fake.Close)
	synctest.Test(t, func(t *testing.T) {
		client := &inBubble{h: fake.Handler(), start: time.Now()}
		s := newSender(t, fake, Config{SegmentsPerSecond: 0.1, Burst: 1, Concurrency: 1}, WithHTTPClient(&http.Client{Transport: client}))
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Second))
		defer cancel()
		res := s.Send(ctx, notify.Message{Body: "b"}, []string{"+84900000001", "+84900000002", "+84900000003"})
		if res[0].Outcome != notify.Delivered {
			t.Fatalf("first: %v %v", res[0].Outcome, res[0].Err)
		}
		for _, r := range res[1:] {
			if r.Outcome != notify.Retry || r.RetryAfter != 10*time.Second || !errors.Is(r.Err, context.DeadlineExceeded) {
				t.Errorf("got %v after %v (%v), want Retry after 10s", r.Outcome, r.RetryAfter, r.Err)
			}
		}
		if took, n := time.Since(client.start), len(fake.Requests()); took != 0 || n != 1 {
			t.Errorf("took %v and sent %d, want no wait and 1 request", took, n)
		}
		// The two numbers refused gave their segments back: the next one
		// goes once the first one's segment is earned again, not after three.
		if res := s.Send(context.Background(), notify.Message{Body: "b"}, []string{"+84900000004"}); res[0].Outcome != notify.Delivered {
			t.Fatalf("after the deadline: %v %v", res[0].Outcome, res[0].Err)
		}
		if got, want := client.times(), []time.Duration{0, 10 * time.Second}; !equalDurations(got, want) {
			t.Errorf("requests at %v, want %v", got, want)
		}
	})
}

func TestDownThenUp(t *testing.T) {
	fake, s := newEnv(t, Config{})
	fake.SetDown("30")
	res := s.Send(context.Background(), notify.Message{Body: "b"}, []string{"+84900000001"})
	if res[0].Outcome != notify.Retry || res[0].RetryAfter != 30*time.Second {
		t.Errorf("down: %v after %v", res[0].Outcome, res[0].RetryAfter)
	}
	fake.SetUp()
	fake.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res = s.Send(ctx, notify.Message{Body: "b"}, []string{"+84900000001"})
	if res[0].Outcome != notify.Retry || strings.Contains(res[0].Err.Error(), "84900000001") {
		t.Errorf("slow: %v %v", res[0].Outcome, res[0].Err)
	}
}

func TestMask(t *testing.T) {
	tests := []struct{ in, want string }{
		{"+84912345678", "+*********78"},
		{"+1 (500) 555-0006", "+* (***) ***-**06"},
		{"12", "12"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := maskNumbers("The 'To' number +84 912 345 678 is not valid (code 21211)"); got != "The 'To' number +** *** *** *78 is not valid (code 21211)" {
		t.Errorf("maskNumbers = %q", got)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "sms: invalid config: account_sid, auth_token, from required"},
		{Config{AccountSID: "AC1", AuthToken: "t", From: "+1", Endpoint: "api.twilio.com"}, `sms: invalid config: endpoint "api.twilio.com" must be an http:// or https:// URL`},
		{Config{AccountSID: "AC/1", AuthToken: "t", From: "+1"}, "sms: invalid config: account_sid must not contain '/', '?' or '#'"},
		{Config{AccountSID: "AC1", AuthToken: "t", From: "+1", Burst: -1}, "sms: invalid config: segments_per_second, burst, concurrency and timeout must not be negative"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New = %v, want %q", err, tt.want)
		}
	}
}
