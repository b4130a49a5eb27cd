package api

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/keyring/keyringtest"
	"github.com/upswatch/upswatch/live"
	"github.com/upswatch/upswatch/notify/recipients"
)

// TestEventStream: the stream needs a token, opens with a retry hint,
// keeps alive with ping comments, ends when the hub closes (shutdown),
// and then refuses new streams with shutting_down.
func TestEventStream(t *testing.T) {
	_, nc, _ := bustest.Server(t)
	hub, err := live.New(live.Config{Conn: nc, Units: noUnits{}, ReadingJSON: ReadingJSON})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{AdminToken: "tok", Units: noUnits{}, History: noHistory{}})
	if err != nil {
		t.Fatal(err)
	}
	s.heartbeat = 10 * time.Millisecond
	s.HandleEvents(hub)
	srv := httptest.NewServer(s)
	defer srv.Close()
	open := func(token string) *http.Response {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/events", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, tc := range []struct {
		name, token string
		code        int
		errCode     string
	}{
		{"no token", "", 401, "unauthorized"},
		{"wrong token", "nope", 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := open(tc.token)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.errCode) {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, b, tc.code, tc.errCode)
			}
		})
	}

	resp := open("tok")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	lines := bufio.NewScanner(resp.Body)
	var got []string
	for len(got) < 4 && lines.Scan() {
		if l := lines.Text(); l != "" {
			got = append(got, l)
		}
	}
	if len(got) != 4 || got[0] != "retry: 3000" || got[1] != ": ping" || got[3] != ": ping" {
		t.Fatalf("stream began %q, want the retry hint then pings", got)
	}
	hub.Close()
	for lines.Scan() {
		if l := lines.Text(); l != "" && l != ": ping" {
			t.Errorf("after the end: %q", l)
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatalf("the stream did not end cleanly on shutdown: %v", err)
	}
	resp = open("tok")
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 503 || !strings.Contains(string(b), "shutting_down") {
		t.Fatalf("a stream after shutdown: %d %s", resp.StatusCode, b)
	}
}

// TestEventStreamEndsForDeletedAccount: the stream reads the account
// again at each keep-alive, so erasing the account ends its open stream.
func TestEventStreamEndsForDeletedAccount(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	_, nc, js := bustest.Server(t)
	accounts, err := recipients.Open(ctx, js, recipients.Options{Sealer: keyringtest.Records(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = accounts.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-accounts.Ready()
	if _, err := accounts.Create(ctx, recipients.Recipient{Account: recipients.Account{ID: "lan"}}); err != nil {
		t.Fatal(err)
	}
	tok, _, err := accounts.CreateToken(ctx, "lan", "t")
	if err != nil {
		t.Fatal(err)
	}
	hub, err := live.New(live.Config{Conn: nc, Units: noUnits{}, ReadingJSON: ReadingJSON})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{AdminToken: "tok", Units: noUnits{}, History: noHistory{}})
	if err != nil {
		t.Fatal(err)
	}
	s.heartbeat = 10 * time.Millisecond
	s.HandleNotify(accounts, nil)
	s.HandleEvents(hub)
	srv := httptest.NewServer(s)
	defer srv.Close()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() && lines.Text() != ": ping" {
	}
	if err := accounts.Delete(ctx, "lan"); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
	}
	if err := lines.Err(); err != nil {
		t.Fatalf("the stream of a deleted account did not end: %v", err)
	}
}
