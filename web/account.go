package web

import (
	"net/http"
	"slices"
	"strings"

	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

type accountPage struct {
	Account  recipients.Recipient
	Units    []registry.Unit
	Severity []string
	Channels []string
	Langs    []string
	// Saved names the section just saved; Error its problem.
	Saved, Error, Section string
	Tests                 []pipeline.TestResult
	// Admin lists: every account id and unit.
	Accounts []recipients.Recipient
	AllUnits []registry.Unit
	// InviteFor and InviteURL show a link just made for an account.
	InviteFor, InviteURL string
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, v *view) {
	c.renderAccount(w, r, v, accountPage{})
}

func (c *Console) renderAccount(w http.ResponseWriter, r *http.Request, v *view, pg accountPage) {
	pg.Severity = []string{rules.Info.String(), rules.Warning.String(), rules.Critical.String()}
	pg.Channels = recipients.Channels
	pg.Langs = Languages
	if id := v.Principal.Account.ID; id != "" {
		if rec, ok := c.cfg.Accounts.Lookup(id); ok {
			pg.Account = rec
		}
		pg.Units = c.visibleUnits(v.Principal)
	}
	if v.Principal.Admin {
		for _, id := range c.cfg.Accounts.List() {
			if rec, ok := c.cfg.Accounts.Lookup(id); ok {
				pg.Accounts = append(pg.Accounts, rec)
			}
		}
		pg.AllUnits = c.visibleUnits(v.Principal)
	}
	v.Page = pg
	code := http.StatusOK
	if pg.Error != "" {
		code = http.StatusBadRequest
	}
	v.fragment = r.Header.Get("HX-Request") == "true"
	c.render(w, code, "account", v)
}

// accountOnly refuses the account forms to the admin-token session,
// which has no account.
func (c *Console) accountOnly(w http.ResponseWriter, r *http.Request, v *view) (string, bool) {
	id := v.Principal.Account.ID
	if id == "" {
		c.notFound(w, r, v)
		return "", false
	}
	return id, true
}

// saved answers a form: the account section again with its outcome
// (htmx swaps it in), or for a plain form post the whole page.
func (c *Console) saved(w http.ResponseWriter, r *http.Request, v *view, section string, err error) {
	pg := accountPage{Section: section}
	if err != nil {
		pg.Error = err.Error()
	} else {
		pg.Saved = section
		// The new language applies to this very answer.
		if rec, ok := c.cfg.Accounts.Lookup(v.Principal.Account.ID); ok {
			v.Principal.Account = rec
			v.Lang = c.language(r, v.Principal)
		}
	}
	c.renderAccount(w, r, v, pg)
}

func (c *Console) saveProfile(w http.ResponseWriter, r *http.Request, v *view) {
	id, ok := c.accountOnly(w, r, v)
	if !ok {
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	lang, tz := r.PostFormValue("language"), strings.TrimSpace(r.PostFormValue("time_zone"))
	rec, found := c.cfg.Accounts.Lookup(id)
	if !found {
		c.notFound(w, r, v)
		return
	}
	_, err := c.cfg.Accounts.UpdateProfile(r.Context(), id, recipients.Profile{Name: name, Email: rec.Email,
		Phone: rec.Phone, Address: rec.Address, Region: rec.Region, Language: lang, TimeZone: tz,
		Marketing: rec.Marketing.Granted})
	if err == nil {
		// The account's language wins over an earlier switch.
		http.SetCookie(w, &http.Cookie{Name: "lang", Path: "/", MaxAge: -1})
		r.Header.Del("Cookie")
	}
	c.saved(w, r, v, "profile", err)
}

func lines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func (c *Console) saveContacts(w http.ResponseWriter, r *http.Request, v *view) {
	id, ok := c.accountOnly(w, r, v)
	if !ok {
		return
	}
	ct := recipients.Contacts{FCMTokens: lines(r.PostFormValue("fcm")), Phones: lines(r.PostFormValue("phones"))}
	for _, t := range lines(r.PostFormValue("apns")) {
		tok, bundle, _ := strings.Cut(t, " ")
		ct.APNSTokens = append(ct.APNSTokens, recipients.APNSToken{Token: tok, BundleID: strings.TrimSpace(bundle)})
	}
	_, err := c.cfg.Accounts.SetContacts(r.Context(), id, ct)
	c.saved(w, r, v, "contacts", err)
}

func (c *Console) savePreferences(w http.ResponseWriter, r *http.Request, v *view) {
	id, ok := c.accountOnly(w, r, v)
	if !ok {
		return
	}
	rec, found := c.cfg.Accounts.Lookup(id)
	if !found {
		c.notFound(w, r, v)
		return
	}
	if err := r.ParseForm(); err != nil {
		c.saved(w, r, v, "preferences", consoleError("the form could not be read"))
		return
	}
	prefs := rec.Preferences
	prefs.Channels = map[string][]string{}
	for _, sev := range []rules.Severity{rules.Info, rules.Warning, rules.Critical} {
		prefs.Channels[sev.String()] = r.PostForm["ch_"+sev.String()]
		if prefs.Channels[sev.String()] == nil {
			prefs.Channels[sev.String()] = []string{}
		}
	}
	prefs.QuietHours = nil
	if from, to := r.PostFormValue("quiet_from"), r.PostFormValue("quiet_to"); from != "" && to != "" {
		prefs.QuietHours = &recipients.QuietHours{Start: from, End: to}
	}
	prefs.Muted = nil
	for _, s := range r.PostForm["muted"] {
		if u, ok := c.cfg.Units.Lookup(ups.Serial(s)); ok && v.Principal.CanSee(u) {
			prefs.Muted = append(prefs.Muted, u.Serial)
		}
	}
	slices.Sort(prefs.Muted)
	// A checkbox left unticked is absent from the form: opted out.
	prefs.WeeklyReportOff = r.PostFormValue("weekly_report") == ""
	_, err := c.cfg.Accounts.SetPreferences(r.Context(), id, prefs)
	c.saved(w, r, v, "preferences", err)
}

func (c *Console) sendTest(w http.ResponseWriter, r *http.Request, v *view) {
	id, ok := c.accountOnly(w, r, v)
	if !ok {
		return
	}
	if c.cfg.Notifier == nil {
		c.saved(w, r, v, "test", errNoNotifier)
		return
	}
	res, err := c.cfg.Notifier.SendTest(r.Context(), id)
	if err != nil {
		c.log.Warn("test notification failed", "account", id, "err", err)
	}
	c.renderAccount(w, r, v, accountPage{Section: "test", Saved: "test", Tests: res})
}

type consoleError string

func (e consoleError) Error() string { return string(e) }

const errNoNotifier = consoleError("notifications are not configured on this server")

// Muted reports whether the account muted serial.
func (p accountPage) Muted(serial ups.Serial) bool { return p.Account.Preferences.IsMuted(serial) }

// HasChannel reports whether sev's alerts go to channel.
func (p accountPage) HasChannel(sev, channel string) bool {
	return slices.Contains(p.Account.Preferences.Channels[sev], channel)
}

// APNSLines renders the APNS tokens for the textarea.
func (p accountPage) APNSLines() string {
	var b strings.Builder
	for _, t := range p.Account.Contacts.APNSTokens {
		b.WriteString(t.Token)
		if t.BundleID != "" {
			b.WriteString(" " + t.BundleID)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// invite makes a one-time sign-in link for an account (admins only; the
// same as `upswatch account invite`).
func (c *Console) invite(w http.ResponseWriter, r *http.Request, v *view) {
	id := r.PathValue("id")
	if !v.Principal.Admin {
		c.notFound(w, r, v)
		return
	}
	if _, ok := c.cfg.Accounts.Lookup(id); !ok {
		c.notFound(w, r, v)
		return
	}
	tok, _, err := c.cfg.Access.NewInvite(r.Context(), id)
	if err != nil {
		c.internal(w, v, "create invitation", err)
		return
	}
	scheme := "http"
	if c.secure(r) {
		scheme = "https"
	}
	c.log.Info("invitation issued", "account", id)
	c.renderAccount(w, r, v, accountPage{InviteFor: id, InviteURL: scheme + "://" + r.Host + "/invite/" + tok})
}
