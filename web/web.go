// Package web is the console: the pages facility managers and owners use
// in a browser (the fleet, a unit's history, alerts, their account),
// served by the same HTTP server as the API and authorized exactly as the
// API is (api.Principal). Pages are Go html/template with texts in
// i18n/*.yaml; the scripts and styles are built from web/ui by esbuild
// (`make assets`) into static/dist and embedded.
//
// A person signs in with an email and password (set through a one-time
// invitation link) or the admin token; the session lives server-side in
// NATS KV (package access) and its cookie is HttpOnly and SameSite=Lax.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/api"
	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/report"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

//go:embed templates/*.html
var templateFS embed.FS

// static holds the built scripts and styles (static/dist, made by `make
// assets`; absent in a plain `go build`, when the pages still work but
// without charts and live updates).
//
//go:embed all:static
var staticFS embed.FS

// Units is what the console needs of the registry.
type Units interface {
	Lookup(serial ups.Serial) (registry.Unit, bool)
	List() []registry.Unit
}

// Alerts is what the console needs of the alert timeline.
type Alerts interface {
	Timeline(ctx context.Context, serial ups.Serial, from, to time.Time, limit int) ([]rules.Event, error)
	Active(ctx context.Context, site string) ([]rules.Event, error)
	Recent(ctx context.Context, since time.Time, limit int, keep func(rules.Event) bool) ([]rules.Event, error)
}

// Batteries is what the console needs of the battery store
// (battery.Store).
type Batteries interface {
	Report(ctx context.Context, serial ups.Serial) (battery.Report, error)
}

// Accounts is what the console needs of the recipients store.
type Accounts interface {
	Lookup(id string) (recipients.Recipient, bool)
	LookupEmail(ctx context.Context, email string) (recipients.Recipient, bool, error)
	UpdateProfile(ctx context.Context, id string, p recipients.Profile) (recipients.Recipient, error)
	SetContacts(ctx context.Context, id string, c recipients.Contacts) (recipients.Recipient, error)
	SetPreferences(ctx context.Context, id string, p recipients.Preferences) (recipients.Recipient, error)
	List() []string
}

// Notifier sends test notifications.
type Notifier interface {
	SendTest(ctx context.Context, accountID string) ([]pipeline.TestResult, error)
}

// Config of the console.
type Config struct {
	AdminToken string
	Units      Units
	History    store.History
	Alerts     Alerts
	Accounts   Accounts
	Access     *access.Store
	Notifier   Notifier
	// Actions acknowledge and silence alerts (nil: the alerts page
	// offers neither).
	Actions Actions
	// Batteries shows a battery card on the unit page (nil: none).
	Batteries Batteries
	// Limiter slows password guessing (default: 5 failures per account,
	// 20 per address, one back every 3 minutes, in memory; serve gives a
	// limiter shared by its instances).
	Limiter Limiter
	// SecureCookies marks the session cookie Secure even when the request
	// did not come over TLS (a TLS-terminating proxy in front).
	SecureCookies bool
	Logger        *slog.Logger
	Now           func() time.Time
}

// Console serves the pages.
type Console struct {
	cfg   Config
	log   *slog.Logger
	texts catalog
	pages map[string]*template.Template
	mux   *http.ServeMux
	// reports computes the report page from History and Alerts, as the
	// API's /v1/reports does.
	reports *report.Reporter
	// assetVersion is a hash of the built assets, appended to their URLs
	// so a new build is fetched despite the long cache lifetime.
	assetVersion string
	static       fs.FS
}

const sessionCookie = "upswatch_session"

// New builds the console.
func New(cfg Config) (*Console, error) {
	if cfg.AdminToken == "" || cfg.Units == nil || cfg.History == nil || cfg.Alerts == nil ||
		cfg.Accounts == nil || cfg.Access == nil {
		return nil, errors.New("web: AdminToken, Units, History, Alerts, Accounts and Access are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Limiter == nil {
		cfg.Limiter = access.NewFailureLimiter(5, 20, 3*time.Minute)
	}
	texts, err := loadCatalog(i18nFS)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, log: cfg.Logger.With("component", "console"), texts: texts, mux: http.NewServeMux()}
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if c.reports, err = report.New(cfg.History, cfg.Alerts); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	c.static, _ = fs.Sub(staticFS, "static")
	c.assetVersion = hashAssets(c.static)
	if c.assetVersion == "" {
		c.log.Warn("console scripts and styles are not built: run `make assets` (pages work, without charts and live updates)")
	}
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	c.mux.HandleFunc("GET /login", c.loginPage)
	c.mux.HandleFunc("POST /login", c.login)
	c.mux.HandleFunc("POST /login/admin", c.loginAdmin)
	c.mux.HandleFunc("POST /logout", c.logout)
	c.mux.HandleFunc("GET /invite/{token}", c.invitePage)
	c.mux.HandleFunc("POST /invite/{token}", c.acceptInvite)
	c.mux.HandleFunc("GET /lang/{lang}", c.setLanguage)
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", c.staticHandler()))
	c.mux.HandleFunc("GET /{$}", c.signedIn(c.fleet))
	c.mux.HandleFunc("GET /units/{serial}", c.signedIn(c.unitPage))
	c.mux.HandleFunc("GET /alerts", c.signedIn(c.alertsPage))
	c.mux.HandleFunc("POST /alerts/{id}/{action}", c.signedIn(c.alertAction))
	c.mux.HandleFunc("GET /reports", c.signedIn(c.reportPage))
	c.mux.HandleFunc("GET /account", c.signedIn(c.accountPage))
	c.mux.HandleFunc("POST /account/profile", c.signedIn(c.saveProfile))
	c.mux.HandleFunc("POST /account/contacts", c.signedIn(c.saveContacts))
	c.mux.HandleFunc("POST /account/preferences", c.signedIn(c.savePreferences))
	c.mux.HandleFunc("POST /account/test", c.signedIn(c.sendTest))
	c.mux.HandleFunc("POST /account/invite/{id}", c.signedIn(c.invite))
	c.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.notFound(w, r, c.newView(r, c.principal(r)))
	})
}

// contentSecurityPolicy allows the console's own scripts, styles and API
// only: no inline script or style, no framing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// ServeHTTP implements http.Handler with the console's security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	c.mux.ServeHTTP(w, r)
}

// principal resolves the request's session cookie (zero when none).
func (c *Console) principal(r *http.Request) api.Principal {
	p, _ := c.SessionPrincipal(r)
	return p
}

// SessionPrincipal resolves the request's session cookie to who it signs
// in, for the API too (the console's scripts call it with the cookie).
func (c *Console) SessionPrincipal(r *http.Request) (api.Principal, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return api.Principal{}, false
	}
	sess, err := c.cfg.Access.Session(r.Context(), ck.Value)
	if err != nil {
		if !errors.Is(err, access.ErrNoSession) {
			c.log.Warn("session lookup failed", "err", err)
		}
		return api.Principal{}, false
	}
	if sess.Admin {
		return api.Principal{Admin: true}, true
	}
	// The account is read on every request: a deleted account's sessions
	// end with it, and a changed role or site applies at once.
	rec, ok := c.cfg.Accounts.Lookup(sess.AccountID)
	if !ok {
		return api.Principal{}, false
	}
	return api.Principal{Admin: rec.Role == recipients.RoleAdmin, Account: rec}, true
}

type principalKey struct{}

// signedIn sends anyone not signed in to the login page, coming back
// here after.
func (c *Console) signedIn(h func(http.ResponseWriter, *http.Request, *view)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := c.SessionPrincipal(r)
		if !ok {
			http.Redirect(w, r, "/login?next="+urlEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h(w, r, c.newView(r, p))
	}
}

func (c *Console) newView(r *http.Request, p api.Principal) *view {
	v := &view{c: c, Principal: p, Path: r.URL.Path, Now: c.cfg.Now(), Loc: time.Local}
	v.Lang = c.language(r, p)
	if p.Account.ID != "" {
		v.Loc = p.Account.Location()
		v.Who = p.Account.Name
		if v.Who == "" {
			v.Who = p.Account.Email
		}
	} else if p.Admin {
		v.Who = "admin"
	}
	return v
}

// language: the lang cookie (the switch), else the account's, else the
// browser's.
func (c *Console) language(r *http.Request, p api.Principal) string {
	if ck, err := r.Cookie("lang"); err == nil {
		if _, ok := c.texts[ck.Value]; ok {
			return ck.Value
		}
	}
	if _, ok := c.texts[p.Account.Language]; ok {
		return p.Account.Language
	}
	return pickLanguage(r.Header.Get("Accept-Language"))
}

func (c *Console) setLanguage(w http.ResponseWriter, r *http.Request) {
	lang := r.PathValue("lang")
	if _, ok := c.texts[lang]; !ok {
		http.NotFound(w, r)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: "lang", Value: lang, Path: "/", MaxAge: 365 * 24 * 3600,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: c.secure(r)})
	http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
}

func (c *Console) secure(r *http.Request) bool { return r.TLS != nil || c.cfg.SecureCookies }

// render executes page with the view into a buffer first, so a template
// failure answers a clean 500 instead of half a page.
func (c *Console) render(w http.ResponseWriter, code int, page string, v *view) {
	t, ok := c.pages[page]
	if !ok {
		c.log.Error("no such page template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	name := "layout"
	if v.fragment {
		name = "content"
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() < 4<<20 {
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	if err := t.ExecuteTemplate(buf, name, v); err != nil {
		c.log.Error("page render failed", "page", page, "err", err)
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request, v *view) {
	v.Page = errorPage{Title: v.T("err.not_found"), Text: v.T("err.not_found_text")}
	c.render(w, http.StatusNotFound, "error", v)
}

func (c *Console) internal(w http.ResponseWriter, v *view, what string, err error) {
	c.log.Error("console request failed", "op", what, "err", err)
	v.Page = errorPage{Title: v.T("err.internal"), Text: v.T("err.internal_text")}
	c.render(w, http.StatusInternalServerError, "error", v)
}

type errorPage struct{ Title, Text string }

func parsePages() (map[string]*template.Template, error) {
	layout, err := template.ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", base, err)
		}
		pages[base[:len(base)-len(".html")]] = t
	}
	return pages, nil
}

// hashAssets fingerprints the built assets ("" when there are none).
func hashAssets(fsys fs.FS) string {
	h := sha256.New()
	n := 0
	for _, name := range []string{"dist/app.js", "dist/app.css"} {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return ""
		}
		h.Write(b)
		n++
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Asset is the URL of a built asset, versioned.
func (v *view) Asset(name string) string { return "/static/dist/" + name + "?v=" + v.c.assetVersion }

// HasAssets reports whether the scripts are built.
func (v *view) HasAssets() bool { return v.c.assetVersion != "" }

func (c *Console) staticHandler() http.Handler {
	files := http.FileServerFS(c.static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("v") == c.assetVersion && c.assetVersion != "" {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}
