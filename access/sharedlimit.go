package access

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
)

// LoginFailuresBucket holds the console's shared sign-in failure budget.
const LoginFailuresBucket = bus.LoginFailuresBucket

// Defaults of SharedLimiterOptions.
const (
	// DefaultLimiterTimeout bounds each Wait and Fail: past it the
	// limiter answers from its in-memory fallback rather than keep a
	// person at the sign-in form.
	DefaultLimiterTimeout = time.Second
	// DefaultLimiterTries is how often a Fail reads and writes a key
	// whose revision another instance changed in between. Each lost try
	// means another failure was recorded, so k instances failing one key
	// at the same moment all count as long as k does not exceed it.
	DefaultLimiterTries = 16
)

// SharedLimiterOptions configure a SharedFailureLimiter.
type SharedLimiterOptions struct {
	// AccountBurst failures per account and AddrBurst per client address
	// are allowed at once; the account's budget gets one back per Every,
	// the address's one per Every/4 (as NewFailureLimiter).
	AccountBurst, AddrBurst int
	Every                   time.Duration
	Replicas                int
	Timeout                 time.Duration // default DefaultLimiterTimeout
	Tries                   int           // default DefaultLimiterTries
	Logger                  *slog.Logger
	// Pseudonym, when set, names an email or address in the bucket's
	// keys: a keyed hash (serve passes the keyring's BlindIndex), so a
	// reader of the bucket cannot test guessed emails or addresses
	// against it. Without it the key is a plain SHA-256.
	Pseudonym func(kind, value string) string
}

// SharedFailureLimiter is FailureLimiter's budget held in NATS KV, so that
// every instance behind a load balancer spends from one budget per account
// and per address: spreading guesses over N instances gains nothing.
//
// Each key holds a GCRA theoretical arrival time (TAT): the moment its
// budget is whole again. A failure at now moves it to max(TAT, now) +
// interval, capped at now + burst*interval (an empty bucket does not go
// into debt, as with FailureLimiter). The key must wait TAT - now -
// (burst-1)*interval when that is positive. The update is a compare-and-set
// on the key's revision, retried on a conflict, so failures at the same
// moment on two instances both count. The bucket's MaxAge is the longest
// time a budget takes to refill, so idle keys vanish on their own.
//
// Instances compare TATs with their own clocks: a clock skew of s between
// two instances shifts the wait by s.
//
// When the bucket cannot be read or written within the timeout (NATS
// unreachable or slow, the bucket's stream without quorum) the limiter
// fails open to an in-memory FailureLimiter that every Fail also feeds:
// the limit becomes per instance, as it was before it was shared. Failing
// closed would let anything that breaks one bucket lock every person out;
// no limit at all would hand a guesser the outage. It logs a warning (at
// most once a minute) and counts the fallback (Counts' unavailable).
// Passwords and accounts are in NATS too, so with NATS wholly unreachable
// sign-in fails anyway; the fallback is for this bucket alone failing (its
// own stream and RAFT group) and for a slow NATS, where the timeout keeps
// a sign-in from hanging on the limiter.
type SharedFailureLimiter struct {
	kv                  jetstream.KeyValue
	o                   SharedLimiterOptions
	account, addr       gcra
	local               *FailureLimiter
	lastWarn            atomic.Int64 // unix ns of the last unavailability warning
	failures, throttled atomic.Int64
	unavailable         atomic.Int64
	warnEvery           time.Duration
}

// gcra is one budget's parameters: burst failures at once, one back per
// interval.
type gcra struct {
	interval time.Duration
	burst    int
}

// wait is how long a key whose TAT is tat must wait at now (0: it may try).
func (g gcra) wait(tat, now time.Time) time.Duration {
	if !tat.After(now) { // also no entry (zero TAT), whose Sub would saturate
		return 0
	}
	return max(tat.Sub(now)-time.Duration(g.burst-1)*g.interval, 0)
}

// fail is the TAT after one more failure at now.
func (g gcra) fail(tat, now time.Time) time.Time {
	if tat.Before(now) {
		tat = now
	}
	return minTime(tat.Add(g.interval), now.Add(time.Duration(g.burst)*g.interval))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// OpenSharedFailureLimiter creates or opens the bucket.
func OpenSharedFailureLimiter(ctx context.Context, js jetstream.JetStream, o SharedLimiterOptions) (*SharedFailureLimiter, error) {
	if o.AccountBurst < 1 || o.AddrBurst < 1 || o.Every < 4 {
		return nil, errors.New("access: the shared limiter needs bursts of at least 1 and a refill interval")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultLimiterTimeout
	}
	if o.Tries <= 0 {
		o.Tries = DefaultLimiterTries
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &SharedFailureLimiter{o: o,
		account: gcra{interval: o.Every, burst: o.AccountBurst},
		addr:    gcra{interval: o.Every / 4, burst: o.AddrBurst},
		local:   NewFailureLimiter(o.AccountBurst, o.AddrBurst, o.Every), warnEvery: time.Minute}
	// An entry is useless once its budget has refilled: its last write
	// is then older than burst*interval. Keeping it that long and no
	// longer bounds the bucket by the keys failing lately.
	ttl := max(time.Duration(l.account.burst)*l.account.interval, time.Duration(l.addr.burst)*l.addr.interval)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: LoginFailuresBucket, Description: "console sign-in failures: a GCRA arrival time per hashed account and address",
		History: 1, TTL: ttl, Storage: jetstream.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("access bucket %s: %w", LoginFailuresBucket, err)
	}
	l.kv = kv
	return l, nil
}

// Counts returns the failures recorded, the attempts told to wait and the
// calls answered from the in-memory fallback, for metrics.
func (l *SharedFailureLimiter) Counts() (failures, throttled, unavailable int64) {
	return l.failures.Load(), l.throttled.Load(), l.unavailable.Load()
}

// key names a budget in the bucket without the email or address in
// clear: Pseudonym's keyed hash, else a SHA-256 in hex (which a reader of
// the bucket could still test a guessed email or address against). Both
// are valid KV keys (base64url, hex).
func (l *SharedFailureLimiter) key(kind, id string) string {
	if l.o.Pseudonym != nil {
		return kind + "." + l.o.Pseudonym("login-"+kind, id)
	}
	sum := sha256.Sum256([]byte(kind + ":" + id))
	return kind + "." + hex.EncodeToString(sum[:])
}

// Wait tells how long account and addr must wait before trying again
// (0: they may try now).
func (l *SharedFailureLimiter) Wait(account, addr string, now time.Time) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), l.o.Timeout)
	defer cancel()
	var wait time.Duration
	for _, b := range []struct {
		key string
		g   gcra
	}{{l.key("account", account), l.account}, {l.key("addr", addr), l.addr}} {
		tat, _, err := l.read(ctx, b.key)
		if err != nil {
			l.fallback("read", err)
			wait = l.local.Wait(account, addr, now)
			break
		}
		wait = max(wait, b.g.wait(tat, now))
	}
	if wait > 0 {
		l.throttled.Add(1)
	}
	return wait
}

// Fail records a failed sign-in of account from addr, in the bucket and in
// the in-memory fallback.
func (l *SharedFailureLimiter) Fail(account, addr string, now time.Time) {
	l.failures.Add(1)
	l.local.Fail(account, addr, now)
	ctx, cancel := context.WithTimeout(context.Background(), l.o.Timeout)
	defer cancel()
	if err := l.fail(ctx, l.key("account", account), l.account, now); err != nil {
		l.fallback("record", err)
		return
	}
	if err := l.fail(ctx, l.key("addr", addr), l.addr, now); err != nil {
		l.fallback("record", err)
	}
}

// read returns a key's TAT and revision (zero time and 0: no entry).
func (l *SharedFailureLimiter) read(ctx context.Context, key string) (time.Time, uint64, error) {
	e, err := l.kv.Get(ctx, key)
	if notFound(err) {
		return time.Time{}, 0, nil
	}
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("read sign-in budget: %w", err)
	}
	ns, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		// Not ours to trust, and nothing to lose but one budget: start it anew.
		return time.Time{}, e.Revision(), nil
	}
	return time.Unix(0, ns), e.Revision(), nil
}

// errContended: every try lost to another instance's write.
var errContended = errors.New("sign-in budget changed by others on every try")

// fail moves a key's TAT by one failure, compare-and-set on its revision.
func (l *SharedFailureLimiter) fail(ctx context.Context, key string, g gcra, now time.Time) error {
	for range l.o.Tries {
		tat, rev, err := l.read(ctx, key)
		if err != nil {
			return err
		}
		v := []byte(strconv.FormatInt(g.fail(tat, now).UnixNano(), 10))
		if rev == 0 {
			_, err = l.kv.Create(ctx, key, v)
		} else {
			_, err = l.kv.Update(ctx, key, v, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("write sign-in budget: %w", err)
		}
	}
	return errContended
}

// fallback counts an answer from the in-memory limiter and warns, at most
// once per warnEvery: during an outage every sign-in would log otherwise.
// The error names no email or address (keys are hashes).
func (l *SharedFailureLimiter) fallback(op string, err error) {
	l.unavailable.Add(1)
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(l.warnEvery) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	l.o.Logger.Warn("shared sign-in limit unavailable: limiting failures per instance until it is back",
		"bucket", LoginFailuresBucket, "op", op, "err", err)
}
