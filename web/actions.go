package web

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/upswatch/upswatch/actions"
	"github.com/upswatch/upswatch/rules"
)

// Actions is what the console needs of the acknowledgement and silence
// store (package actions).
type Actions interface {
	Ack(ctx context.Context, id actions.AlertID, by actions.Actor, reason string) (actions.Ack, error)
	Unack(ctx context.Context, id actions.AlertID, by actions.Actor, reason string) error
	Silence(ctx context.Context, id actions.AlertID, by actions.Actor, d time.Duration, reason string) (actions.Silence, error)
	Unsilence(ctx context.Context, id actions.AlertID, by actions.Actor, reason string) error
	Live(ctx context.Context) (map[string]actions.Ack, map[string]actions.Silence, error)
}

// silenceFor are the durations a silence can be set for.
var silenceFor = []string{"1h", "4h", "24h", "168h"}

// alertAction handles the forms of an alert card: ack, unack, silence,
// unsilence. Authorization is the API's: whoever may see the unit, of an
// alert that fires now; anything else is not found.
func (c *Console) alertAction(w http.ResponseWriter, r *http.Request, v *view) {
	id, err := actions.ParseAlertID(r.PathValue("id"))
	if err != nil || c.cfg.Actions == nil {
		c.notFound(w, r, v)
		return
	}
	u, ok := c.cfg.Units.Lookup(id.Serial)
	if !ok || !v.Principal.CanSeeAlert(id.Rule, u) {
		c.notFound(w, r, v)
		return
	}
	active, err := c.cfg.Alerts.Active(r.Context(), "")
	if err != nil {
		c.internal(w, v, "alert action: active alerts", err)
		return
	}
	firing := false
	for _, ev := range active {
		firing = firing || ev.Fingerprint == id.String()
	}
	what := r.PathValue("action")
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	by := v.Principal.Actor()
	switch {
	case !firing && (what == "ack" || what == "silence"):
		c.notFound(w, r, v)
		return
	case reason == "" && (what == "ack" || what == "silence"):
		c.renderAlerts(w, r, v, id.String(), v.T("alerts.reason_required"))
		return
	}
	switch what {
	case "ack":
		_, err = c.cfg.Actions.Ack(r.Context(), id, by, reason)
	case "unack":
		err = c.cfg.Actions.Unack(r.Context(), id, by, reason)
	case "silence":
		d, perr := time.ParseDuration(r.PostFormValue("for"))
		if perr != nil || d <= 0 || d > 7*24*time.Hour {
			c.renderAlerts(w, r, v, id.String(), "1h – 168h")
			return
		}
		_, err = c.cfg.Actions.Silence(r.Context(), id, by, d, reason)
	case "unsilence":
		err = c.cfg.Actions.Unsilence(r.Context(), id, by, reason)
	default:
		c.notFound(w, r, v)
		return
	}
	switch {
	case errors.Is(err, actions.ErrNotFound):
		// Already lifted by someone else: show the page as it is now.
	case errors.Is(err, actions.ErrInvalid):
		c.renderAlerts(w, r, v, id.String(), err.Error())
		return
	case err != nil:
		c.internal(w, v, "alert action "+what, err)
		return
	}
	c.log.Info("alert action", "action", what, "alert", id.String(), "account", by.Account, "admin", by.Admin)
	if r.Header.Get("HX-Request") == "true" {
		c.renderAlerts(w, r, v, "", "")
		return
	}
	http.Redirect(w, r, "/alerts", http.StatusSeeOther)
}

// actorName names who acted, as the other recipients see it.
func (c *Console) actorName(a actions.Actor) string {
	switch {
	case a.Erased:
		return "(deleted account)"
	case a.Account != "":
		if r, ok := c.cfg.Accounts.Lookup(a.Account); ok && r.Name != "" {
			return r.Name
		}
		return a.Account
	case a.Admin:
		return "admin"
	}
	return "upswatch"
}

// DomID is an alert's id usable in HTML ids and URLs.
func DomID(ev rules.Event) string { return strings.ReplaceAll(ev.Fingerprint, "/", ".") }
