package access

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upswatch/upswatch/bus/bustest"
)

// fastParams keep the tests quick; the format and checks are the same.
var fastParams = hashParams{memory: 64, time: 1, threads: 1, keyLen: 32}

func TestPasswordHash(t *testing.T) {
	h, err := hashPassword("correct horse battery", fastParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string", h)
	}
	h2, _ := hashPassword("correct horse battery", fastParams)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	for _, tc := range []struct {
		name, pw, hash string
		ok             bool
		err            error
	}{
		{"right", "correct horse battery", h, true, nil},
		{"wrong", "correct horse batterx", h, false, nil},
		{"empty", "", h, false, nil},
		{"not argon2id", "x", "$argon2i$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA", false, errBadHash},
		{"version", "x", strings.Replace(h, "v=19", "v=16", 1), false, errBadHash},
		{"huge memory", "x", strings.Replace(h, "m=64", "m=99999999", 1), false, errBadHash},
		{"truncated", "x", h[:20], false, errBadHash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := verifyPassword(tc.pw, tc.hash)
			if ok != tc.ok || !errors.Is(err, tc.err) {
				t.Fatalf("verify = %v, %v; want %v, %v", ok, err, tc.ok, tc.err)
			}
		})
	}
}

func TestPasswordLength(t *testing.T) {
	for _, tc := range []struct {
		pw string
		ok bool
	}{
		{"short", false}, {"123456789", false}, {"1234567890", true},
		{"mật khẩu dài", true}, {strings.Repeat("x", 256), true}, {strings.Repeat("x", 257), false},
	} {
		if err := checkPassword(tc.pw); (err == nil) != tc.ok {
			t.Errorf("checkPassword(%d chars) = %v, want ok=%v", len(tc.pw), err, tc.ok)
		}
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func open(t *testing.T) (*Store, *clock) {
	t.Helper()
	_, _, js := bustest.Server(t)
	c := &clock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	s, err := Open(context.Background(), js, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestInviteSetsPasswordOnce(t *testing.T) {
	ctx := context.Background()
	s, c := open(t)
	if _, err := s.CheckPassword(ctx, "acct1", "whatever12"); !errors.Is(err, ErrNoPassword) {
		t.Fatalf("before invite: %v, want ErrNoPassword", err)
	}
	tok, inv, err := s.NewInvite(ctx, "acct1")
	if err != nil {
		t.Fatal(err)
	}
	if inv.AccountID != "acct1" || !inv.Expires.Equal(c.Now().Add(DefaultInviteTTL)) {
		t.Fatalf("invite = %+v", inv)
	}
	if peek, err := s.PeekInvite(ctx, tok); err != nil || peek.AccountID != "acct1" {
		t.Fatalf("peek = %+v, %v", peek, err)
	}
	if _, err := s.AcceptInvite(ctx, tok, "short"); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("weak password accepted: %v", err)
	}
	id, err := s.AcceptInvite(ctx, tok, "a long enough secret")
	if err != nil || id != "acct1" {
		t.Fatalf("accept = %q, %v", id, err)
	}
	if _, err := s.AcceptInvite(ctx, tok, "another long secret"); !errors.Is(err, ErrInvite) {
		t.Fatalf("second use: %v, want ErrInvite", err)
	}
	for pw, want := range map[string]bool{"a long enough secret": true, "another long secret": false} {
		if ok, err := s.CheckPassword(ctx, "acct1", pw); err != nil || ok != want {
			t.Errorf("CheckPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	if err := s.Forget(ctx, "acct1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(ctx, "acct1", "a long enough secret"); !errors.Is(err, ErrNoPassword) {
		t.Fatalf("after Forget: %v, want ErrNoPassword", err)
	}
}

func TestInviteExpires(t *testing.T) {
	ctx := context.Background()
	s, c := open(t)
	tok, _, err := s.NewInvite(ctx, "acct1")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(DefaultInviteTTL)
	if _, err := s.AcceptInvite(ctx, tok, "a long enough secret"); !errors.Is(err, ErrInvite) {
		t.Fatalf("expired invite: %v, want ErrInvite", err)
	}
	if _, err := s.PeekInvite(ctx, "made-up"); !errors.Is(err, ErrInvite) {
		t.Fatalf("unknown invite: %v, want ErrInvite", err)
	}
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	s, c := open(t)
	tok, sess, err := s.NewSession(ctx, "acct1", false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Session(ctx, tok)
	if err != nil || got.AccountID != "acct1" || got.Admin || !got.Expires.Equal(sess.Expires) {
		t.Fatalf("session = %+v, %v", got, err)
	}
	admTok, _, err := s.NewSession(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Session(ctx, admTok); err != nil || !got.Admin {
		t.Fatalf("admin session = %+v, %v", got, err)
	}
	if err := s.EndSession(ctx, admTok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, admTok); !errors.Is(err, ErrNoSession) {
		t.Fatalf("ended session: %v", err)
	}
	c.Add(DefaultSessionTTL)
	if _, err := s.Session(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Fatalf("expired session: %v", err)
	}
	if _, err := s.Session(ctx, ""); !errors.Is(err, ErrNoSession) {
		t.Fatalf("empty token: %v", err)
	}
}

func TestFailureLimiter(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	l := NewFailureLimiter(3, 8, time.Minute)
	for i := range 3 {
		if w := l.Wait("a@x", "1.2.3.4", now); w != 0 {
			t.Fatalf("attempt %d: wait %v", i, w)
		}
		l.Fail("a@x", "1.2.3.4", now)
	}
	if w := l.Wait("a@x", "1.2.3.4", now); w <= 0 || w > time.Minute {
		t.Fatalf("after 3 failures: wait %v, want (0, 1m]", w)
	}
	// Another account from the same address is still allowed (the
	// address has 8), and the first account from elsewhere is not.
	if w := l.Wait("b@x", "1.2.3.4", now); w != 0 {
		t.Fatalf("other account: wait %v", w)
	}
	if w := l.Wait("a@x", "5.6.7.8", now); w == 0 {
		t.Fatal("same account from another address is not limited")
	}
	if w := l.Wait("a@x", "1.2.3.4", now.Add(time.Minute)); w != 0 {
		t.Fatalf("a minute later: wait %v", w)
	}
	// The address limit: 8 failures over many accounts.
	for i := range 5 {
		l.Fail(string(rune('c'+i))+"@x", "1.2.3.4", now)
	}
	if w := l.Wait("new@x", "1.2.3.4", now); w == 0 {
		t.Fatal("address with 8 failures is not limited")
	}
	if w := l.WaitAddr("1.2.3.4", now); w <= 0 || w > 15*time.Second {
		t.Fatalf("WaitAddr of the spent address: %v, want (0, 15s]", w)
	}
	if w := l.WaitAddr("5.6.7.8", now); w != 0 {
		t.Fatalf("WaitAddr of an address with one failure: %v, want 0", w)
	}
	if f, th := l.Counts(); f != 8 || th != 4 {
		t.Fatalf("counts: %d failures, %d throttled; want 8 and 4", f, th)
	}
}
