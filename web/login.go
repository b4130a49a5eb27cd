package web

import (
	"crypto/subtle"
	"errors"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/api"
	"github.com/upswatch/upswatch/notify/recipients"
)

// Limiter is what sign-in needs of a failed sign-in limiter:
// access.FailureLimiter (in memory, per instance) and
// access.SharedFailureLimiter (one budget for every instance on a NATS)
// both are one.
type Limiter interface {
	// Wait tells how long account and addr must wait before trying
	// again (0: now).
	Wait(account, addr string, now time.Time) time.Duration
	// Fail records a failed sign-in of account from addr.
	Fail(account, addr string, now time.Time)
}

var (
	_ Limiter = (*access.FailureLimiter)(nil)
	_ Limiter = (*access.SharedFailureLimiter)(nil)
)

type loginPage struct {
	Email, Next string
	Error       string
	Notice      string
	AdminError  string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	v := c.newView(r, api.Principal{})
	if _, ok := c.SessionPrincipal(r); ok {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	pg := loginPage{Next: localPath(r.URL.Query().Get("next"))}
	if r.URL.Query().Has("signedout") {
		pg.Notice = v.T("login.signedout")
	}
	v.Page = pg
	c.render(w, http.StatusOK, "login", v)
}

// login checks an email and password. Failures are counted per account
// and per client address before the (deliberately slow) hash is
// computed, and every failure says the same thing, so the form tells a
// guesser nothing about which accounts exist.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	v := c.newView(r, api.Principal{})
	email := recipients.NormalizeEmail(r.PostFormValue("email"))
	pg := loginPage{Email: email, Next: localPath(r.PostFormValue("next"))}
	addr := clientAddr(r)
	now := c.cfg.Now()
	if wait := c.cfg.Limiter.Wait(email, addr, now); wait > 0 {
		pg.Error = v.T("login.limited", int(math.Ceil(wait.Minutes())))
		v.Page = pg
		c.render(w, http.StatusTooManyRequests, "login", v)
		return
	}
	fail := func(msg string) {
		c.cfg.Limiter.Fail(email, addr, now)
		c.log.Info("sign-in failed", "reason", msg)
		pg.Error = v.T("login.failed")
		if msg == "no password" {
			pg.Error = v.T("login.nopassword")
		}
		v.Page = pg
		c.render(w, http.StatusUnauthorized, "login", v)
	}
	rec, found, err := c.cfg.Accounts.LookupEmail(r.Context(), email)
	if err != nil {
		c.internal(w, v, "sign-in: find account", err)
		return
	}
	if !found {
		fail("unknown email")
		return
	}
	ok, err := c.cfg.Access.CheckPassword(r.Context(), rec.ID, r.PostFormValue("password"))
	switch {
	case errors.Is(err, access.ErrNoPassword):
		fail("no password")
		return
	case err != nil:
		c.internal(w, v, "sign-in: check password", err)
		return
	case !ok:
		fail("wrong password")
		return
	}
	if !c.startSession(w, r, v, rec.ID, false) {
		return
	}
	c.log.Info("signed in", "account", rec.ID)
	http.Redirect(w, r, pg.Next, http.StatusSeeOther)
}

// loginAdmin signs the operator in with the admin token.
func (c *Console) loginAdmin(w http.ResponseWriter, r *http.Request) {
	v := c.newView(r, api.Principal{})
	addr := clientAddr(r)
	now := c.cfg.Now()
	pg := loginPage{Next: localPath(r.PostFormValue("next"))}
	if wait := c.cfg.Limiter.Wait("admin", addr, now); wait > 0 {
		pg.AdminError = v.T("login.limited", int(math.Ceil(wait.Minutes())))
		v.Page = pg
		c.render(w, http.StatusTooManyRequests, "login", v)
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if subtle.ConstantTimeCompare([]byte(tok), []byte(c.cfg.AdminToken)) != 1 {
		c.cfg.Limiter.Fail("admin", addr, now)
		c.log.Info("sign-in failed", "reason", "wrong admin token")
		pg.AdminError = v.T("login.admin_failed")
		v.Page = pg
		c.render(w, http.StatusUnauthorized, "login", v)
		return
	}
	if !c.startSession(w, r, v, "", true) {
		return
	}
	c.log.Info("signed in", "account", "admin")
	http.Redirect(w, r, pg.Next, http.StatusSeeOther)
}

func (c *Console) startSession(w http.ResponseWriter, r *http.Request, v *view, accountID string, admin bool) bool {
	tok, sess, err := c.cfg.Access.NewSession(r.Context(), accountID, admin)
	if err != nil {
		c.internal(w, v, "start session", err)
		return false
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", Expires: sess.Expires,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: c.secure(r)})
	return true
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if err := c.cfg.Access.EndSession(r.Context(), ck.Value); err != nil {
			c.log.Warn("ending session failed", "err", err)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: c.secure(r)})
	http.Redirect(w, r, "/login?signedout", http.StatusSeeOther)
}

type invitePage struct {
	Token, Name string
	Error       string
	Invalid     bool
}

func (c *Console) invitePage(w http.ResponseWriter, r *http.Request) {
	v := c.newView(r, api.Principal{})
	pg := invitePage{Token: r.PathValue("token")}
	inv, err := c.cfg.Access.PeekInvite(r.Context(), pg.Token)
	code := http.StatusOK
	switch {
	case errors.Is(err, access.ErrInvite):
		pg.Invalid, code = true, http.StatusNotFound
	case err != nil:
		c.internal(w, v, "read invitation", err)
		return
	default:
		rec, ok := c.cfg.Accounts.Lookup(inv.AccountID)
		if !ok {
			pg.Invalid, code = true, http.StatusNotFound
		} else {
			pg.Name = rec.Name
			if rec.Language != "" && r.URL.Query().Get("lang") == "" {
				if _, err := r.Cookie("lang"); err != nil {
					v.Lang = rec.Language
				}
			}
		}
	}
	v.Page = pg
	c.render(w, code, "invite", v)
}

func (c *Console) acceptInvite(w http.ResponseWriter, r *http.Request) {
	v := c.newView(r, api.Principal{})
	pg := invitePage{Token: r.PathValue("token")}
	pw := r.PostFormValue("password")
	again := func(msg string, code int) {
		pg.Error = msg
		if inv, err := c.cfg.Access.PeekInvite(r.Context(), pg.Token); err == nil {
			if rec, ok := c.cfg.Accounts.Lookup(inv.AccountID); ok {
				pg.Name = rec.Name
			}
		}
		v.Page = pg
		c.render(w, code, "invite", v)
	}
	if pw != r.PostFormValue("confirm") {
		again(v.T("invite.mismatch"), http.StatusBadRequest)
		return
	}
	id, err := c.cfg.Access.AcceptInvite(r.Context(), pg.Token, pw)
	switch {
	case errors.Is(err, access.ErrWeakPassword):
		again(v.T("invite.weak"), http.StatusBadRequest)
		return
	case errors.Is(err, access.ErrInvite):
		pg.Invalid = true
		v.Page = pg
		c.render(w, http.StatusNotFound, "invite", v)
		return
	case err != nil:
		c.internal(w, v, "accept invitation", err)
		return
	}
	if !c.startSession(w, r, v, id, false) {
		return
	}
	c.log.Info("password set through invitation", "account", id)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// localPath keeps a redirect target on this site: a path, not a URL
// ("//evil.example" and "/\evil" are URLs to browsers).
func localPath(p string) string {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	if u, err := url.Parse(p); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return p
}

func urlEscape(s string) string { return url.QueryEscape(s) }

// clientAddr is the client's IP (the port varies per connection).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
