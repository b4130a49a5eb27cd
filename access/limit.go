package access

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// FailureLimiter slows down password guessing: each failed sign-in spends
// a token of the account's bucket and of the client address's bucket;
// while either is empty, sign-in is refused before the password is
// checked, with the time to wait. A success does not refill: the buckets
// refill at their rate.
//
// It is per instance: a guesser spreading attempts over N instances gets
// N times the budget. The console uses SharedFailureLimiter, one budget
// for every instance; the MQTT broker keeps this one (see app's
// connectFailures for why).
type FailureLimiter struct {
	account, addr rate.Limit
	accountBurst  int
	addrBurst     int

	mu      sync.Mutex
	buckets map[string]*failBucket

	failures, throttled atomic.Int64
}

// Counts returns the failures recorded and the attempts told to wait,
// for metrics.
func (l *FailureLimiter) Counts() (failures, throttled int64) {
	return l.failures.Load(), l.throttled.Load()
}

type failBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewFailureLimiter allows accountBurst failures per account and
// addrBurst per address at once, refilled one each per every.
func NewFailureLimiter(accountBurst, addrBurst int, every time.Duration) *FailureLimiter {
	return &FailureLimiter{account: rate.Every(every), addr: rate.Every(every / 4),
		accountBurst: accountBurst, addrBurst: addrBurst, buckets: map[string]*failBucket{}}
}

func (l *FailureLimiter) bucket(key string, r rate.Limit, burst int, now time.Time) *rate.Limiter {
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) > 50000 { // forget full, idle buckets
			for k, v := range l.buckets {
				if now.Sub(v.seen) > time.Hour {
					delete(l.buckets, k)
				}
			}
		}
		b = &failBucket{lim: rate.NewLimiter(r, burst)}
		l.buckets[key] = b
	}
	b.seen = now
	return b.lim
}

// Wait tells how long account and addr must wait before trying again
// (0: they may try now).
func (l *FailureLimiter) Wait(account, addr string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, b := range []*rate.Limiter{
		l.bucket("a:"+account, l.account, l.accountBurst, now),
		l.bucket("i:"+addr, l.addr, l.addrBurst, now),
	} {
		if b.TokensAt(now) < 1 {
			r := b.ReserveN(now, 1)
			wait = max(wait, r.DelayFrom(now))
			r.CancelAt(now)
		}
	}
	if wait > 0 {
		l.throttled.Add(1)
	}
	return wait
}

// WaitAddr tells how long addr must wait before trying again, whatever
// the account (0: it may try now). It lets a server drop a connection
// from an address over its budget before reading anything from it.
func (l *FailureLimiter) WaitAddr(addr string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket("i:"+addr, l.addr, l.addrBurst, now)
	if b.TokensAt(now) >= 1 {
		return 0
	}
	r := b.ReserveN(now, 1)
	defer r.CancelAt(now)
	l.throttled.Add(1)
	return r.DelayFrom(now)
}

// Fail records a failed sign-in of account from addr.
func (l *FailureLimiter) Fail(account, addr string, now time.Time) {
	l.failures.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bucket("a:"+account, l.account, l.accountBurst, now).AllowN(now, 1)
	l.bucket("i:"+addr, l.addr, l.addrBurst, now).AllowN(now, 1)
}
