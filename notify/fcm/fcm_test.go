package fcm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/fcm/fcmfake"
)

func newSender(t testing.TB, fake *fcmfake.Server, opts ...Option) *Sender {
	t.Helper()
	s, err := New(context.Background(), Config{ProjectID: "upswatch-test", Endpoint: fake.URL()}, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func newFake(t testing.TB) *fcmfake.Server {
	fake := fcmfake.New()
	t.Cleanup(fake.Close)
	return fake
}

func TestSendOutcomes(t *testing.T) {
	tests := []struct {
		name           string
		reply          *fcmfake.Reply
		want           notify.Outcome
		wantRetryAfter time.Duration
		wantResponse   string
	}{
		{name: "success", want: notify.Delivered, wantResponse: "200 projects/upswatch-test/messages/"},
		{name: "unregistered", reply: &fcmfake.Unregistered, want: notify.TokenGone, wantResponse: "404 NOT_FOUND UNREGISTERED"},
		{name: "invalid argument with FcmError", reply: &fcmfake.InvalidArgument, want: notify.TokenGone, wantResponse: "400 INVALID_ARGUMENT INVALID_ARGUMENT"},
		{name: "invalid argument without detail", reply: &fcmfake.InvalidArgumentNoDetail, want: notify.Failed, wantResponse: "400 INVALID_ARGUMENT"},
		{name: "sender id mismatch", reply: &fcmfake.SenderIDMismatch, want: notify.Failed, wantResponse: "403 PERMISSION_DENIED SENDER_ID_MISMATCH"},
		{name: "quota exceeded", reply: ptr(fcmfake.QuotaExceeded(30)), want: notify.Retry, wantRetryAfter: 30 * time.Second, wantResponse: "429 RESOURCE_EXHAUSTED QUOTA_EXCEEDED"},
		{name: "internal", reply: &fcmfake.Internal, want: notify.Retry, wantResponse: "500 INTERNAL INTERNAL"},
		// Retry-After beyond the client's 2 min cap stops its own retries,
		// so exactly one request reaches the fake.
		{name: "unavailable with long retry-after", reply: &fcmfake.Reply{Status: 503, ErrorStatus: "UNAVAILABLE", RetryAfter: "600"}, want: notify.Retry, wantRetryAfter: 10 * time.Minute, wantResponse: "503 UNAVAILABLE"},
		{name: "bare 502 from a proxy", reply: &fcmfake.Reply{Status: 502}, want: notify.Retry, wantResponse: "502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t)
			s := newSender(t, fake)
			if tt.reply != nil {
				fake.FailToken("tok-bad", *tt.reply)
			}
			res := s.Send(context.Background(), notify.Message{Title: "t", Body: "b"}, []string{"tok-ok", "tok-bad"})
			if len(res) != 2 {
				t.Fatalf("got %d results, want 2", len(res))
			}
			if res[0].To != "tok-ok" || res[0].Outcome != notify.Delivered || res[0].Err != nil {
				t.Errorf("untouched token: got %+v, want delivered", res[0])
			}
			got := res[1]
			if got.To != "tok-bad" || got.Outcome != tt.want || got.RetryAfter != tt.wantRetryAfter {
				t.Errorf("got to=%q outcome=%v retryAfter=%v, want tok-bad %v %v", got.To, got.Outcome, got.RetryAfter, tt.want, tt.wantRetryAfter)
			}
			if !strings.HasPrefix(got.ProviderResponse, tt.wantResponse) {
				t.Errorf("ProviderResponse = %q, want prefix %q", got.ProviderResponse, tt.wantResponse)
			}
			if (got.Err == nil) != (tt.want == notify.Delivered) {
				t.Errorf("Err = %v for outcome %v", got.Err, got.Outcome)
			}
			if got.Err != nil && strings.Contains(got.Err.Error(), "tok-bad") {
				t.Errorf("error leaks the token: %v", got.Err)
			}
			if n := len(fake.Requests()); n != 2 {
				t.Errorf("fake saw %d requests, want 2 (no hidden client retry)", n)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestWireFields(t *testing.T) {
	expires := time.Now().Add(time.Hour)
	tests := []struct {
		name         string
		msg          notify.Message
		wantPriority string
		wantTTL      bool
	}{
		{name: "critical", msg: notify.Message{Title: "Mất điện", Body: "UPS 123456789012 on battery", Critical: true,
			CollapseKey: "123456789012/on_battery", Expires: expires, Data: map[string]string{"rule": "on_battery"}},
			wantPriority: "high", wantTTL: true},
		{name: "normal without expiry", msg: notify.Message{Title: "Replace battery", Body: "b", CollapseKey: "u/replace_battery"},
			wantPriority: "normal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t)
			s := newSender(t, fake)
			res := s.Send(context.Background(), tt.msg, []string{"tok-1"})
			if res[0].Outcome != notify.Delivered {
				t.Fatalf("outcome %v err %v", res[0].Outcome, res[0].Err)
			}
			reqs, err := fake.WaitRequests(1, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			r := reqs[0]
			if r.Project != "upswatch-test" || r.Token != "tok-1" || r.Title != tt.msg.Title || r.Body != tt.msg.Body {
				t.Errorf("request %+v does not carry project/token/title/body of %+v", r, tt.msg)
			}
			if r.Priority != tt.wantPriority || r.CollapseKey != tt.msg.CollapseKey {
				t.Errorf("priority %q collapse %q, want %q %q", r.Priority, r.CollapseKey, tt.wantPriority, tt.msg.CollapseKey)
			}
			if r.Data["rule"] != tt.msg.Data["rule"] {
				t.Errorf("data %v, want %v", r.Data, tt.msg.Data)
			}
			if tt.wantTTL {
				// TTL is the time left until Expires, whole seconds.
				var secs int
				if _, err := fmt.Sscanf(r.TTL, "%ds", &secs); err != nil || secs < 3590 || secs > 3600 {
					t.Errorf("ttl %q, want about 3600s", r.TTL)
				}
			} else if r.TTL != "" {
				t.Errorf("ttl %q, want none", r.TTL)
			}
			if r.Header.Get("X-Firebase-Client") == "" {
				t.Errorf("missing X-Firebase-Client header: the fake was not driven by the firebase client")
			}
		})
	}
}

func TestBatchSplit(t *testing.T) {
	fake := newFake(t)
	s := newSender(t, fake)
	const n = 2*MaxBatch + 7 // SendEach itself rejects more than 500
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("tok-%04d", i)
	}
	fake.FailToken("tok-0777", fcmfake.Unregistered)
	res := s.Send(context.Background(), notify.Message{Title: "t", Body: "b"}, tokens)
	if len(res) != n {
		t.Fatalf("%d results, want %d", len(res), n)
	}
	for i, r := range res {
		want := notify.Delivered
		if i == 777 {
			want = notify.TokenGone
		}
		if r.To != tokens[i] || r.Outcome != want {
			t.Fatalf("result %d = %q %v (%v), want %q %v", i, r.To, r.Outcome, r.Err, tokens[i], want)
		}
	}
	seen := map[string]int{}
	for _, r := range fake.Requests() {
		seen[r.Token]++
	}
	if len(seen) != n {
		t.Errorf("fake saw %d distinct tokens, want %d", len(seen), n)
	}
	for tok, c := range seen {
		if c != 1 {
			t.Errorf("token %s sent %d times", tok, c)
		}
	}
}

func TestExpiredAndEmpty(t *testing.T) {
	fake := newFake(t)
	s := newSender(t, fake)
	res := s.Send(context.Background(), notify.Message{Title: "t", Expires: time.Now().Add(-time.Minute)}, []string{"a", "b"})
	for _, r := range res {
		if r.Outcome != notify.Failed || !errors.Is(r.Err, notify.ErrExpired) {
			t.Errorf("expired: got %v %v, want Failed ErrExpired", r.Outcome, r.Err)
		}
	}
	res = s.Send(context.Background(), notify.Message{Title: "t"}, []string{"", "c"})
	if res[0].Outcome != notify.Failed || res[1].Outcome != notify.Delivered {
		t.Errorf("empty token: got %v, %v; want Failed, Delivered", res[0].Outcome, res[1].Outcome)
	}
	if n := len(fake.Requests()); n != 1 {
		t.Errorf("fake saw %d requests, want 1", n)
	}
}

// A provider that stays down past the caller's deadline yields Retry, never
// Failed: the outbox keeps the notification.
func TestDownUntilDeadline(t *testing.T) {
	fake := newFake(t)
	s := newSender(t, fake)
	fake.SetDown("")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := s.Send(ctx, notify.Message{Title: "t"}, []string{"a"})
	if res[0].Outcome != notify.Retry {
		t.Fatalf("down: got %v (%v), want Retry", res[0].Outcome, res[0].Err)
	}
	fake.SetUp()
	res = s.Send(context.Background(), notify.Message{Title: "t"}, []string{"a"})
	if res[0].Outcome != notify.Delivered {
		t.Fatalf("after SetUp: got %v (%v), want Delivered", res[0].Outcome, res[0].Err)
	}
}

func TestUnreachable(t *testing.T) {
	fake := fcmfake.New()
	s := newSender(t, fake)
	fake.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := s.Send(ctx, notify.Message{Title: "t"}, []string{"a"})
	if res[0].Outcome != notify.Retry {
		t.Fatalf("got %v (%v), want Retry", res[0].Outcome, res[0].Err)
	}
}

func TestMetrics(t *testing.T) {
	fake := newFake(t)
	reg := prometheus.NewRegistry()
	s := newSender(t, fake, WithRegisterer(reg))
	// A second sender on the same registry shares the collectors.
	_ = newSender(t, fake, WithRegisterer(reg))
	fake.FailToken("gone", fcmfake.Unregistered)
	s.Send(context.Background(), notify.Message{Title: "t"}, []string{"a", "b", "gone"})

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	var latencySamples uint64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "upswatch_notify_requests_total":
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				counts[labels["channel"]+"/"+labels["outcome"]] = m.GetCounter().GetValue()
			case "upswatch_notify_request_duration_seconds":
				latencySamples += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if counts["fcm/delivered"] != 2 || counts["fcm/token_gone"] != 1 {
		t.Errorf("counters %v, want fcm/delivered=2 fcm/token_gone=1", counts)
	}
	if latencySamples != 1 {
		t.Errorf("latency samples %d, want 1 (one SendEach call)", latencySamples)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "fcm: invalid config: project_id is required"},
		{Config{ProjectID: "p", Endpoint: "127.0.0.1:80"}, `fcm: invalid config: endpoint "127.0.0.1:80" must be an http:// or https:// URL`},
		{Config{ProjectID: "p", ParallelBatches: -1}, "fcm: invalid config: parallel_batches must not be negative"},
	}
	for _, tt := range tests {
		_, err := New(context.Background(), tt.cfg)
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func BenchmarkSend500(b *testing.B) {
	fake := newFake(b)
	s := newSender(b, fake)
	tokens := make([]string, MaxBatch)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("tok-%03d", i)
	}
	m := notify.Message{Title: "On battery", Body: "UPS 123456789012 is on battery", Critical: true, CollapseKey: "u/on_battery"}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range s.Send(context.Background(), m, tokens) {
			if r.Outcome != notify.Delivered {
				b.Fatalf("outcome %v: %v", r.Outcome, r.Err)
			}
		}
	}
}

// The storm shape: a provider answering in 50 ms, 2,000 tokens.
func BenchmarkSend2000Slow(b *testing.B) {
	fake := newFake(b)
	fake.SetDelay(50 * time.Millisecond)
	s := newSender(b, fake)
	tokens := make([]string, 4*MaxBatch)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("tok-%04d", i)
	}
	m := notify.Message{Title: "On battery", Body: "UPS 123456789012 is on battery", Critical: true}
	for b.Loop() {
		for _, r := range s.Send(context.Background(), m, tokens) {
			if r.Outcome != notify.Delivered {
				b.Fatalf("outcome %v: %v", r.Outcome, r.Err)
			}
		}
	}
}
