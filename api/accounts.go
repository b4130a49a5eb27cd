package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/upswatch/upswatch/actions"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// page is a list request's ?limit=&cursor=: up to limit items after
// cursor (the last key of the previous page).
type page struct {
	limit  int
	cursor string
}

const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

func parsePage(w http.ResponseWriter, r *http.Request) (page, bool) {
	q := r.URL.Query()
	p := page{limit: defaultPageLimit, cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageLimit {
			writeError(w, http.StatusBadRequest, "invalid_query", "limit: must be an integer from 1 to 1000")
			return page{}, false
		}
		p.limit = n
	}
	return p, true
}

// list answers GET /v1/accounts?limit=&cursor= (ids, sorted) and
// GET /v1/accounts?email= (the account with that email, through its
// blind index).
func (h *notifyAPI) list(w http.ResponseWriter, r *http.Request) {
	if email := r.URL.Query().Get("email"); email != "" {
		rec, ok, err := h.accounts.LookupEmail(r.Context(), email)
		if err != nil {
			h.s.internal(w, "find account by email", err)
			return
		}
		out := []recipients.Recipient{}
		if ok {
			out = append(out, rec)
		}
		writeJSON(w, http.StatusOK, map[string]any{"accounts": out, "next_cursor": ""})
		return
	}
	pg, ok := parsePage(w, r)
	if !ok {
		return
	}
	out := []recipients.Recipient{}
	next := ""
	for _, id := range h.accounts.List() {
		if id <= pg.cursor {
			continue
		}
		if len(out) == pg.limit {
			next = out[len(out)-1].ID
			break
		}
		if rec, ok := h.accounts.Lookup(id); ok {
			out = append(out, rec)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"accounts": out, "next_cursor": next})
}

// createToken answers POST /v1/accounts/{id}/tokens {name?}: a new API
// token for the account, in the answer this once; only its hash is kept.
func (h *notifyAPI) createToken(w http.ResponseWriter, r *http.Request) {
	id, ok := h.id(w, r)
	if !ok {
		return
	}
	var b struct {
		Name string `json:"name"`
	}
	if r.ContentLength != 0 && !decodeStrict(w, r, &b, "{name?}") {
		return
	}
	tok, info, err := h.accounts.CreateToken(r.Context(), id, b.Name)
	if err != nil {
		h.reply(w, 0, recipients.Recipient{}, err, "create token")
		return
	}
	h.s.log.Info("api token created", "account", id, "token_id", info.ID)
	writeJSON(w, http.StatusCreated, struct {
		recipients.TokenInfo
		Token string `json:"token"`
	}{info, tok})
}

func (h *notifyAPI) revokeToken(w http.ResponseWriter, r *http.Request) {
	id, ok := h.id(w, r)
	if !ok {
		return
	}
	err := h.accounts.RevokeToken(r.Context(), id, r.PathValue("token"))
	if errors.Is(err, recipients.ErrTokenNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no token with this id")
		return
	}
	if err != nil {
		h.reply(w, 0, recipients.Recipient{}, err, "revoke token")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// soleUnits are the units only account rec owns: erased with it.
func (h *notifyAPI) soleUnits(rec recipients.Recipient) []ups.Serial {
	var out []ups.Serial
	for _, u := range rec.Units {
		owners := h.accounts.OwnersOf(u)
		if len(owners) == 1 && owners[0] == rec.ID {
			out = append(out, u)
		}
	}
	return out
}

// delete answers DELETE /v1/accounts/{id}: erases the account, its
// contacts, tokens and preferences, the notification log and audit entries
// naming it, the registrations of the units it alone owns and those units'
// history; the acknowledgements and silences it set stay, naming no one.
func (h *notifyAPI) delete(w http.ResponseWriter, r *http.Request) {
	rec, ok := h.account(w, r)
	if !ok {
		return
	}
	id := rec.ID
	ctx := r.Context()
	if h.s.actions != nil {
		if _, err := h.s.actions.EraseActor(ctx, id); err != nil {
			h.s.internal(w, "erase alert actions", err)
			return
		}
	}
	for _, serial := range h.soleUnits(rec) {
		if err := h.s.cfg.History.DeleteUnit(ctx, serial); err != nil {
			h.s.internal(w, "erase unit history", err)
			return
		}
		if err := h.s.cfg.Units.Remove(ctx, serial); err != nil && !errors.Is(err, registry.ErrNotFound) {
			h.s.internal(w, "remove unit", err)
			return
		}
	}
	if h.n != nil {
		if _, err := h.n.EraseRecipient(ctx, id); err != nil {
			h.s.internal(w, "erase notification log", err)
			return
		}
	}
	if h.s.logins != nil {
		if err := h.s.logins.Forget(ctx, id); err != nil {
			h.s.internal(w, "erase console password", err)
			return
		}
	}
	if err := h.accounts.Delete(ctx, id); err != nil {
		h.reply(w, 0, recipients.Recipient{}, err, "delete account")
		return
	}
	h.s.log.Info("account erased", "account", id)
	w.WriteHeader(http.StatusNoContent)
}

// Export is everything held about an account: one member per kind of
// record DELETE /v1/accounts/{id} erases.
type Export struct {
	// Account is the profile, contacts, preferences, marketing consent,
	// granted sites and API tokens (without secrets).
	Account recipients.Recipient `json:"account"`
	// Units are the registrations of the units it owns.
	Units []unitJSON `json:"units"`
	// Readings are the latest reading of each unit it owns that has one.
	Readings []map[string]any `json:"readings"`
	// NotificationLog are its notification log entries (one per alert
	// event and channel), Pending its notifications not yet sent and
	// Deliveries every recorded attempt to notify it.
	NotificationLog []pipeline.LogRecord `json:"notification_log"`
	Pending         []pipeline.Pending   `json:"pending_notifications"`
	Deliveries      []pipeline.Delivery  `json:"notifications"`
	// AlertActions are the acknowledgements and silences it set or
	// withdrew (the audit records naming it).
	AlertActions []actions.Record `json:"alert_actions"`
}

// export answers GET /v1/accounts/{id}/export: all personal data held
// about the account, as JSON (see Export).
func (h *notifyAPI) export(w http.ResponseWriter, r *http.Request) {
	rec, ok := h.account(w, r)
	if !ok {
		return
	}
	id := rec.ID
	ctx := r.Context()
	out := Export{Account: rec, Units: []unitJSON{}, Readings: []map[string]any{},
		NotificationLog: []pipeline.LogRecord{}, Pending: []pipeline.Pending{}, Deliveries: []pipeline.Delivery{},
		AlertActions: []actions.Record{}}
	for _, serial := range rec.Units {
		if u, ok := h.s.cfg.Units.Lookup(serial); ok {
			out.Units = append(out.Units, toJSON(u))
		}
		rd, err := h.s.cfg.History.Latest(ctx, serial)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			h.s.storeError(w, "export latest reading", err)
			return
		default:
			out.Readings = append(out.Readings, ReadingJSON(&rd))
		}
	}
	if h.n != nil {
		rs, err := h.n.RecordsOf(ctx, id)
		if err != nil {
			h.s.internal(w, "export notification records", err)
			return
		}
		out.NotificationLog = append(out.NotificationLog, rs.Log...)
		out.Pending = append(out.Pending, rs.Pending...)
		out.Deliveries = append(out.Deliveries, rs.Deliveries...)
	}
	if h.s.actions != nil {
		recs, err := h.s.actions.RecordsOf(ctx, id)
		if err != nil {
			h.s.internal(w, "export alert actions", err)
			return
		}
		out.AlertActions = append(out.AlertActions, recs...)
	}
	w.Header().Set("Content-Disposition", `attachment; filename="upswatch-account-`+id+`.json"`)
	writeJSON(w, http.StatusOK, out)
}
