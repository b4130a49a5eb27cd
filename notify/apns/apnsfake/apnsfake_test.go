package apnsfake

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// Requests without a provider token, topic or HTTP/2 are refused as APNs
// refuses them.
func TestRejectsMalformed(t *testing.T) {
	s := New()
	defer s.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.CACertPEM()) {
		t.Fatal("CACertPEM holds no certificate")
	}
	h2 := &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: false}}
	const jwt = "eyJhbGciOiJFUzI1NiIsImtpZCI6IksifQ.eyJpc3MiOiJUIiwiaWF0IjoxfQ.c2ln" // {"alg":"ES256","kid":"K"}.{"iss":"T","iat":1}.sig
	tests := []struct {
		name       string
		client     *http.Client
		headers    map[string]string
		want       int
		wantReason string
	}{
		{"http/1.1", h1, map[string]string{"authorization": "bearer " + jwt, "apns-topic": "a", "apns-push-type": "alert"}, 400, "BadPath"},
		{"no token", h2, map[string]string{"apns-topic": "a", "apns-push-type": "alert"}, 403, "MissingProviderToken"},
		{"bad jwt", h2, map[string]string{"authorization": "bearer x.y", "apns-topic": "a", "apns-push-type": "alert"}, 403, "InvalidProviderToken"},
		{"no topic", h2, map[string]string{"authorization": "bearer " + jwt, "apns-push-type": "alert"}, 400, "MissingTopic"},
		{"bad priority", h2, map[string]string{"authorization": "bearer " + jwt, "apns-topic": "a", "apns-push-type": "alert", "apns-priority": "7"}, 400, "BadPriority"},
		{"ok", h2, map[string]string{"authorization": "bearer " + jwt, "apns-topic": "a", "apns-push-type": "alert", "apns-priority": "10"}, 200, ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/3/device/abc", strings.NewReader(`{"aps":{"alert":{"title":"T","body":"B"}}}`))
		for k, v := range tt.headers {
			req.Header.Set(k, v)
		}
		resp, err := tt.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var body strings.Builder
		buf := make([]byte, 256)
		n, _ := resp.Body.Read(buf)
		body.Write(buf[:n])
		resp.Body.Close()
		if resp.StatusCode != tt.want || !strings.Contains(body.String(), tt.wantReason) {
			t.Errorf("%s: %d %s, want %d %s", tt.name, resp.StatusCode, body.String(), tt.want, tt.wantReason)
		}
	}
	last := s.Requests()[len(s.Requests())-1]
	if last.Token != "abc" || last.Title != "T" || last.Body != "B" || last.KeyID != "K" || last.TeamID != "T" {
		t.Errorf("recorded %+v", last)
	}
}
