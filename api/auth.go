package api

import (
	"context"
	"crypto/subtle"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/upswatch/upswatch/area"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/ups"
)

// Principal is who a request comes from: the admin token, or an account
// through one of its API tokens.
type Principal struct {
	// Admin: the admin token, or an account with the admin role.
	Admin bool
	// Account is the caller's account (zero for the admin token).
	Account recipients.Recipient
}

type principalKey struct{}

func principalOf(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey{}).(Principal)
	return p
}

// Self reports whether the principal is account id or the admin.
func (p Principal) Self(id string) bool { return p.Admin || (p.Account.ID != "" && p.Account.ID == id) }

// Owns reports whether the principal owns serial.
func (p Principal) Owns(serial ups.Serial) bool { return slices.Contains(p.Account.Units, serial) }

// CanSee reports whether the principal may read unit u: the admin, its
// owner, or a manager of its site.
func (p Principal) CanSee(u registry.Unit) bool {
	if p.Admin || p.Owns(u.Serial) {
		return true
	}
	return p.Account.Role == recipients.RoleManager && u.Site != "" && slices.Contains(p.Account.Sites, u.Site)
}

// CanSeeAlert reports whether the principal may read (and act on) an alert
// of rule on unit u: an area alert (site_outage, site_unreachable), which
// lists the units of a whole site, only the admin and the site's managers,
// not the owner of the unit that anchors it; any other alert as CanSee.
func (p Principal) CanSeeAlert(rule string, u registry.Unit) bool {
	if area.IsAreaRule(rule) {
		return p.Admin || (p.Account.Role == recipients.RoleManager && u.Site != "" && slices.Contains(p.Account.Sites, u.Site))
	}
	return p.CanSee(u)
}

// CanChange reports whether the principal may change or remove unit u:
// the admin or its owner.
func (p Principal) CanChange(u registry.Unit) bool { return p.Admin || p.Owns(u.Serial) }

// Authenticator resolves an account's API token.
type Authenticator interface {
	Authenticate(token string) (recipients.Recipient, bool)
}

// limiter hands out one token bucket per bearer token.
type limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	return &limiter{rate: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*bucket{}}
}

// allow reports whether key may make a request now, and if not how long
// to wait.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) > 10000 { // forget idle tokens
			for k, v := range l.buckets {
				if now.Sub(v.seen) > 10*time.Minute {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// auth lets through the admin token and account tokens, with the caller
// in the request's context, each token within its rate limit.
func (s *Server) auth(h http.HandlerFunc) http.Handler {
	want := []byte(s.cfg.AdminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		var p Principal
		switch {
		case tok != "" && subtle.ConstantTimeCompare([]byte(tok), want) == 1:
			p.Admin = true
		case tok == "" && s.sessions != nil:
			// The console's scripts call the API with the session
			// cookie; cross-site requests never get here (Handler
			// wraps the server in http.CrossOriginProtection).
			var ok bool
			if p, ok = s.sessions(r); !ok {
				unauthorized(w)
				return
			}
		case tok != "" && s.authn != nil:
			acct, ok := s.authn.Authenticate(tok)
			if !ok {
				unauthorized(w)
				return
			}
			p = Principal{Admin: acct.Role == recipients.RoleAdmin, Account: acct}
		default:
			unauthorized(w)
			return
		}
		// The admin token is the operator's own (provisioning scripts
		// register thousands of units with it): account tokens are the
		// ones held to a rate.
		if ok, wait := s.limit.allow(tok, time.Now()); !p.Admin && !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			writeError(w, http.StatusTooManyRequests, "rate_limited", "too many requests; retry after the Retry-After seconds")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// admin is auth for the admin only (the admin token or an admin account).
func (s *Server) admin(h http.HandlerFunc) http.Handler {
	return s.auth(func(w http.ResponseWriter, r *http.Request) {
		if !principalOf(r).Admin {
			forbidden(w)
			return
		}
		h(w, r)
	})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="upswatch"`)
	writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
}

func forbidden(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, "forbidden", "this token may not do that")
}
