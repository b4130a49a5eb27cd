package access

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus/bustest"
)

// t0 is the injected clock's start; every wait below is exact, so the
// tests compare durations with ==.
var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// twoInstances opens two limiters on one NATS, each on a connection of
// its own, as two serve instances behind a load balancer would.
func twoInstances(t *testing.T, o SharedLimiterOptions) (a, b *SharedFailureLimiter, js jetstream.JetStream) {
	t.Helper()
	ns, _, js := bustest.Server(t)
	var ls [2]*SharedFailureLimiter
	for i := range ls {
		_, js := bustest.Connect(t, ns)
		l, err := OpenSharedFailureLimiter(t.Context(), js, o)
		if err != nil {
			t.Fatal(err)
		}
		ls[i] = l
	}
	return ls[0], ls[1], js
}

// A step fails or checks on instance 0 or 1 at t0+at.
type step struct {
	inst          int
	at            time.Duration
	account, addr string
	fail          bool
	wait          time.Duration // the wait a check expects
}

func TestSharedLimiterSharesTheBudget(t *testing.T) {
	const every = time.Minute // the address gets one back per 15 s
	o := SharedLimiterOptions{AccountBurst: 3, AddrBurst: 8, Every: every}
	fail := func(inst int, at time.Duration, account, addr string) step {
		return step{inst: inst, at: at, account: account, addr: addr, fail: true}
	}
	check := func(inst int, at time.Duration, account, addr string, wait time.Duration) step {
		return step{inst: inst, at: at, account: account, addr: addr, wait: wait}
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"an account's failures on both instances add up", []step{
			fail(0, 0, "an@example.com", "10.0.0.1"),
			fail(1, 0, "an@example.com", "10.0.0.2"),
			check(0, 0, "an@example.com", "10.0.0.3", 0),
			check(1, 0, "an@example.com", "10.0.0.3", 0),
			fail(0, 0, "an@example.com", "10.0.0.3"),
			check(1, 0, "an@example.com", "10.0.0.4", every),
			check(0, 0, "an@example.com", "10.0.0.4", every),
			check(1, 0, "bo@example.com", "10.0.0.4", 0),
		}},
		{"an address's failures on both instances add up", []step{
			fail(0, 0, "a1@example.com", "10.0.0.9"), fail(1, 0, "a2@example.com", "10.0.0.9"),
			fail(0, 0, "a3@example.com", "10.0.0.9"), fail(1, 0, "a4@example.com", "10.0.0.9"),
			fail(0, 0, "a5@example.com", "10.0.0.9"), fail(1, 0, "a6@example.com", "10.0.0.9"),
			fail(0, 0, "a7@example.com", "10.0.0.9"),
			check(1, 0, "a8@example.com", "10.0.0.9", 0),
			fail(1, 0, "a8@example.com", "10.0.0.9"),
			check(0, 0, "a9@example.com", "10.0.0.9", every/4),
			check(0, 0, "a9@example.com", "10.0.0.10", 0),
		}},
		{"the budget refills one per interval", []step{
			fail(0, 0, "lan@example.com", "10.0.1.1"), fail(1, 0, "lan@example.com", "10.0.1.2"),
			fail(0, 0, "lan@example.com", "10.0.1.3"),
			check(1, 0, "lan@example.com", "10.0.1.4", every),
			check(1, 20*time.Second, "lan@example.com", "10.0.1.4", 40*time.Second),
			check(0, every-time.Nanosecond, "lan@example.com", "10.0.1.4", time.Nanosecond),
			check(0, every, "lan@example.com", "10.0.1.4", 0),
			fail(1, every, "lan@example.com", "10.0.1.4"),
			check(0, every, "lan@example.com", "10.0.1.5", every),
			// Three intervals idle: whole again, and three more failures
			// are allowed before the wait, not four.
			fail(0, 5*every, "lan@example.com", "10.0.1.6"), fail(1, 5*every, "lan@example.com", "10.0.1.6"),
			check(0, 5*every, "lan@example.com", "10.0.1.6", 0),
			fail(0, 5*every, "lan@example.com", "10.0.1.6"),
			check(1, 5*every, "lan@example.com", "10.0.1.6", every),
		}},
		{"failures past the budget do not lengthen the wait", []step{
			fail(0, 0, "mai@example.com", "10.0.2.1"), fail(1, 0, "mai@example.com", "10.0.2.1"),
			fail(0, 0, "mai@example.com", "10.0.2.1"), fail(1, 0, "mai@example.com", "10.0.2.1"),
			fail(0, 0, "mai@example.com", "10.0.2.1"),
			check(1, 0, "mai@example.com", "10.0.2.2", every),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, _ := twoInstances(t, o)
			inst := []*SharedFailureLimiter{a, b}
			for i, s := range tc.steps {
				l := inst[s.inst]
				if s.fail {
					l.Fail(s.account, s.addr, t0.Add(s.at))
					continue
				}
				if w := l.Wait(s.account, s.addr, t0.Add(s.at)); w != s.wait {
					t.Fatalf("step %d: instance %d, Wait at +%v = %v, want %v", i, s.inst, s.at, w, s.wait)
				}
			}
			for i, l := range inst {
				if _, _, u := l.Counts(); u != 0 {
					t.Errorf("instance %d answered %d times from its fallback with NATS up", i, u)
				}
			}
		})
	}
}

// Failures at the same moment on two instances all count: the
// compare-and-set makes the loser read the winner's write and retry.
func TestSharedLimiterConcurrentFailuresAllCount(t *testing.T) {
	const perInstance = 8
	const every = time.Minute
	// A budget of exactly the failures made: one lost would leave it
	// with one failure to spare (wait 0) instead of empty (wait every).
	o := SharedLimiterOptions{AccountBurst: 2 * perInstance, AddrBurst: 100, Every: every, Tries: 2 * perInstance}
	a, b, _ := twoInstances(t, o)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, l := range []*SharedFailureLimiter{a, b} {
		for i := range perInstance {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				l.Fail("hoa@example.com", "10.1.0."+string(rune('a'+i)), t0)
			}()
		}
	}
	close(start)
	wg.Wait()
	for i, l := range []*SharedFailureLimiter{a, b} {
		if f, _, u := l.Counts(); f != perInstance || u != 0 {
			t.Errorf("instance %d counted %d failures (%d unavailable), want %d (0)", i, f, u, perInstance)
		}
		if w := l.Wait("hoa@example.com", "10.1.1.1", t0); w != every {
			t.Fatalf("instance %d: Wait after %d concurrent failures = %v, want %v (a failure was lost)", i, 2*perInstance, w, every)
		}
	}
}

// The bucket forgets idle budgets on its own and names nobody.
func TestSharedLimiterBucket(t *testing.T) {
	t.Run("plain hash", func(t *testing.T) { testLimiterBucket(t, nil, "") })
	// A keyed hash: the keys are its output, not a hash anyone can
	// recompute from a guessed email.
	pseudonym := func(kind, v string) string { return "P-" + kind + "-" + fmt.Sprint(len(v)) }
	t.Run("pseudonym", func(t *testing.T) { testLimiterBucket(t, pseudonym, "P-login-") })
}

func testLimiterBucket(t *testing.T, pseudonym func(kind, v string) string, prefix string) {
	a, _, js := twoInstances(t, SharedLimiterOptions{AccountBurst: 5, AddrBurst: 20, Every: 3 * time.Minute, Pseudonym: pseudonym})
	a.Fail("an@example.com", "192.0.2.7", t0)
	kv, err := js.KeyValue(t.Context(), LoginFailuresBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The longest refill: 5 x 3 min for an account, 20 x 45 s for an
	// address.
	if st.TTL() != 15*time.Minute || st.History() != 1 {
		t.Fatalf("bucket TTL %v, history %d; want 15m0s, 1", st.TTL(), st.History())
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for k := range keys.Keys() {
		n++
		if strings.Contains(k, "example") || strings.Contains(k, "192.0.2") {
			t.Errorf("key %q shows the email or address", k)
		}
		if _, rest, _ := strings.Cut(k, "."); !strings.HasPrefix(rest, prefix) {
			t.Errorf("key %q is not named by the pseudonym (%q...)", k, prefix)
		}
	}
	if n != 2 {
		t.Fatalf("%d keys after one failure, want 2 (account and address)", n)
	}
}

// Without its bucket the limiter falls back to limiting per instance,
// warns once and counts every fallback; sign-in goes on.
func TestSharedLimiterFallsBackWhenNATSIsGone(t *testing.T) {
	const every = time.Minute
	for _, tc := range []struct {
		name   string
		break_ func(ns *server.Server, nc *nats.Conn)
	}{
		{"connection closed", func(_ *server.Server, nc *nats.Conn) { nc.Close() }},
		// The client keeps reconnecting: each call waits out the timeout.
		{"server stopped", func(ns *server.Server, _ *nats.Conn) { ns.Shutdown(); ns.WaitForShutdown() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, _, _ := bustest.Server(t)
			nc, js := bustest.Connect(t, ns)
			var logs syncBuffer
			l, err := OpenSharedFailureLimiter(t.Context(), js, SharedLimiterOptions{AccountBurst: 2, AddrBurst: 8, Every: every,
				Timeout: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			// One failure while the bucket is there: the fallback, fed
			// by every Fail, already knows it.
			l.Fail("an@example.com", "192.0.2.7", t0)
			tc.break_(ns, nc)
			if w := l.Wait("an@example.com", "192.0.2.7", t0); w != 0 {
				t.Fatalf("Wait after one failure of two = %v, want 0", w)
			}
			l.Fail("an@example.com", "192.0.2.7", t0)
			if w := l.Wait("an@example.com", "192.0.2.8", t0); w != every {
				t.Fatalf("Wait from the fallback after two failures of two = %v, want %v", w, every)
			}
			if w := l.Wait("bo@example.com", "192.0.2.8", t0.Add(time.Second)); w != 0 {
				t.Fatalf("another account from the fallback: Wait %v, want 0", w)
			}
			f, th, u := l.Counts()
			if f != 2 || th != 1 || u != 4 {
				t.Fatalf("counts: %d failures, %d throttled, %d unavailable; want 2, 1, 4 (three Waits and a Fail)", f, th, u)
			}
			out := logs.String()
			if n := strings.Count(out, "shared sign-in limit unavailable"); n != 1 {
				t.Fatalf("%d warnings, want 1 (at most one a minute):\n%s", n, out)
			}
			if strings.Contains(out, "example.com") || strings.Contains(out, "192.0.2") {
				t.Fatalf("the warning names an email or address:\n%s", out)
			}
		})
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
