package fcmfake

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The fake rejects what FCM rejects, so a client bug shows up in tests.
func TestRejectsMalformed(t *testing.T) {
	s := New()
	defer s.Close()
	tests := []struct {
		name, path, contentType, body string
		want                          int
	}{
		{"wrong path", "/v1/projects/p/messages:batchSend", "application/json", `{}`, http.StatusNotFound},
		{"not json", "/v1/projects/p/messages:send", "text/plain", `x`, http.StatusBadRequest},
		{"no message", "/v1/projects/p/messages:send", "application/json", `{}`, http.StatusBadRequest},
		{"topic target", "/v1/projects/p/messages:send", "application/json", `{"message":{"topic":"news"}}`, http.StatusBadRequest},
		{"bad ttl", "/v1/projects/p/messages:send", "application/json", `{"message":{"token":"t","android":{"ttl":"1h"}}}`, http.StatusBadRequest},
		{"ok", "/v1/projects/p/messages:send", "application/json", `{"message":{"token":"t","android":{"ttl":"60s","priority":"high"}}}`, http.StatusOK},
	}
	for _, tt := range tests {
		resp, err := http.Post(s.URL()+tt.path, tt.contentType, strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	reqs := s.Requests()
	last := reqs[len(reqs)-1]
	if last.Token != "t" || last.TTL != "60s" || last.Priority != "high" || last.Status != http.StatusOK {
		t.Errorf("recorded %+v", last)
	}
}

func TestWaitRequestsTimesOut(t *testing.T) {
	s := New()
	defer s.Close()
	got, err := s.WaitRequests(1, 10*time.Millisecond)
	if err == nil || len(got) != 0 {
		t.Errorf("WaitRequests = %v, %v; want a timeout error", got, err)
	}
}
