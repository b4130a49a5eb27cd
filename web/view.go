package web

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/api"
)

// view is what every page template gets: the person, their language and
// time zone, and helpers that format numbers and times for them.
type view struct {
	c         *Console
	Lang      string
	Loc       *time.Location
	Principal api.Principal
	// Who names the signed-in person in the header.
	Who string
	// Path is the page's path, for the language switch and the nav.
	Path string
	Now  time.Time
	// Page is the page's own data.
	Page any
	// fragment renders the page's content only (an htmx request).
	fragment bool
}

// T is the text of key in the view's language.
func (v *view) T(key string, args ...any) string { return v.c.texts.text(v.Lang, key, args...) }

// SignedIn reports whether someone is signed in.
func (v *view) SignedIn() bool { return v.Principal.Admin || v.Principal.Account.ID != "" }

// Time formats t in the person's zone, with the date when not today.
func (v *view) Time(t time.Time) string {
	if t.IsZero() {
		return v.T("time.never")
	}
	lt := t.In(v.Loc)
	if lt.Format("2006-01-02") == v.Now.In(v.Loc).Format("2006-01-02") {
		return lt.Format("15:04:05")
	}
	return lt.Format("2006-01-02 15:04")
}

// ISO is t in RFC 3339 (for <time datetime> and the scripts).
func (v *view) ISO(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Ago says how long ago t was.
func (v *view) Ago(t time.Time) string {
	if t.IsZero() {
		return v.T("time.never")
	}
	d := max(v.Now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return v.T("time.ago_s", int(d.Seconds()))
	case d < time.Hour:
		return v.T("time.ago_m", int(d.Minutes()))
	case d < 48*time.Hour:
		return v.T("time.ago_h", int(d.Hours()))
	}
	return v.T("time.ago_d", int(d.Hours()/24))
}

// Duration formats d as 1h02m03s, short.
func (v *view) Duration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// Num formats an optional value with a unit: "–" when absent.
func (v *view) Num(x *float64, unit string) string {
	if x == nil || math.IsNaN(*x) {
		return "–"
	}
	return v.localNum(*x) + unit
}

// localNum formats x with the language's decimal mark.
func (v *view) localNum(x float64) string {
	s := formatNum(x)
	if v.Lang == "vi" {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s
}

// Minutes formats a runtime in seconds as minutes.
func (v *view) Minutes(x *float64) string {
	if x == nil {
		return "–"
	}
	return v.T("unit.minutes", v.localNum(*x/60))
}

func formatNum(x float64) string {
	switch {
	case math.Abs(x) >= 100:
		return strconv.FormatFloat(math.Round(x), 'f', -1, 64)
	case math.Abs(x) >= 10:
		return strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64)
	}
	return strconv.FormatFloat(math.Round(x*100)/100, 'f', -1, 64)
}

// States lists the unit states (for the scripts' texts).
func (v *view) States() []string { return States }

// LangName is a language's own name ("Tiếng Việt").
func (v *view) LangName(code string) string { return v.c.texts.text(code, "lang.name") }
