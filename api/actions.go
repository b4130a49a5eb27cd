package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/actions"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// AlertActions is what the acknowledge and silence endpoints need
// (actions.Store implements it).
type AlertActions interface {
	Ack(ctx context.Context, id actions.AlertID, by actions.Actor, reason string) (actions.Ack, error)
	Unack(ctx context.Context, id actions.AlertID, by actions.Actor, reason string) error
	Silence(ctx context.Context, id actions.AlertID, by actions.Actor, d time.Duration, reason string) (actions.Silence, error)
	Unsilence(ctx context.Context, id actions.AlertID, by actions.Actor, reason string) error
	Live(ctx context.Context) (map[string]actions.Ack, map[string]actions.Silence, error)
	History(ctx context.Context, serial ups.Serial, from, to time.Time) ([]actions.Record, error)
	// EraseActor removes a deleted account from the actions it took;
	// RecordsOf lists them (for its export).
	EraseActor(ctx context.Context, accountID string) (int, error)
	RecordsOf(ctx context.Context, accountID string) ([]actions.Record, error)
}

// HandleAlertActions adds, for whoever may see the alert's unit (anyone
// else gets not_found):
//
//	POST   /v1/alerts/{id}/ack       {"reason"}               acknowledge a firing alert
//	DELETE /v1/alerts/{id}/ack                                withdraw the acknowledgement
//	POST   /v1/alerts/{id}/silence   {"duration","reason"}    silence the unit's rule
//	DELETE /v1/alerts/{id}/silence                            lift the silence
//	GET    /v1/units/{serial}/alert-actions?from=&to=        the audit of those actions
//
// and shows the live acknowledgement and silence of each alert in
// GET /v1/alerts. Call it after HandleAlerts and HandleNotify (the
// latter resolves actors' names), before serving.
func (s *Server) HandleAlertActions(q AlertQuerier, a AlertActions) {
	h := &actionsAPI{s: s, q: q, a: a}
	s.actions = a
	s.handle("POST /v1/alerts/{id}/ack", s.auth(h.ack))
	s.handle("DELETE /v1/alerts/{id}/ack", s.auth(h.unack))
	s.handle("POST /v1/alerts/{id}/silence", s.auth(h.silence))
	s.handle("DELETE /v1/alerts/{id}/silence", s.auth(h.unsilence))
	s.handle("GET /v1/units/{serial}/alert-actions", s.auth(h.history))
}

type actionsAPI struct {
	s *Server
	q AlertQuerier
	a AlertActions
}

// actorJSON is who acted, as answers show it: the account and its name
// now (resolved at read time; records keep the id only), "admin" for the
// admin token, "system" for what upswatch did itself.
type actorJSON struct {
	Account string `json:"account,omitempty"`
	Name    string `json:"name"`
	Admin   bool   `json:"admin,omitempty"`
}

type ackJSON struct {
	AlertID string    `json:"alert_id"`
	By      actorJSON `json:"by"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"`
}

type silenceJSON struct {
	AlertID string    `json:"alert_id"`
	Serial  string    `json:"serial"`
	Rule    string    `json:"rule"`
	By      actorJSON `json:"by"`
	At      time.Time `json:"at"`
	Until   time.Time `json:"until"`
	Reason  string    `json:"reason"`
}

type actionJSON struct {
	Action  string    `json:"action"`
	AlertID string    `json:"alert_id"`
	Serial  string    `json:"serial"`
	Rule    string    `json:"rule"`
	By      actorJSON `json:"by"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason,omitempty"`
	Until   time.Time `json:"until,omitzero"`
}

// activeAlertJSON is an alert of GET /v1/alerts: its latest event, with
// its live acknowledgement and the silence covering it, if any.
type activeAlertJSON struct {
	rules.Event
	Ack     *ackJSON     `json:"ack,omitempty"`
	Silence *silenceJSON `json:"silence,omitempty"`
}

// Actor is who the principal is in the acknowledgement and silence records.
func (p Principal) Actor() actions.Actor {
	return actions.Actor{Account: p.Account.ID, Admin: p.Admin}
}

func (s *Server) actorJSON(a actions.Actor) actorJSON {
	switch {
	case a.Erased:
		return actorJSON{Name: "(deleted account)"}
	case a.Account != "":
		out := actorJSON{Account: a.Account, Admin: a.Admin, Name: a.Account}
		if s.owners != nil {
			out.Name = "(deleted account)"
			if r, ok := s.owners.Lookup(a.Account); ok {
				out.Name = r.Name
			}
		}
		return out
	case a.Admin:
		return actorJSON{Name: "admin", Admin: true}
	default:
		return actorJSON{Name: "system"}
	}
}

func (s *Server) ackJSON(a actions.Ack) *ackJSON {
	return &ackJSON{AlertID: a.AlertID, By: s.actorJSON(a.By), At: a.At, Reason: a.Reason}
}

func (s *Server) silenceJSON(sl actions.Silence) *silenceJSON {
	return &silenceJSON{AlertID: sl.AlertID, Serial: string(sl.Serial), Rule: sl.Rule, By: s.actorJSON(sl.By), At: sl.At,
		Until: sl.Until, Reason: sl.Reason}
}

// withActions joins the live acknowledgements and silences to alerts.
func (s *Server) withActions(ctx context.Context, events []rules.Event) ([]activeAlertJSON, error) {
	out := make([]activeAlertJSON, len(events))
	for i, ev := range events {
		out[i].Event = ev
	}
	if s.actions == nil || len(events) == 0 {
		return out, nil
	}
	acks, silences, err := s.actions.Live(ctx)
	if err != nil {
		return nil, err
	}
	for i := range out {
		ev := &out[i].Event
		if a, ok := acks[ev.Fingerprint]; ok {
			out[i].Ack = s.ackJSON(a)
		}
		if sl, ok := silences[string(ev.Serial)+"/"+ev.Rule]; ok {
			out[i].Silence = s.silenceJSON(sl)
		}
	}
	return out, nil
}

func alertNotFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "no alert with this id")
}

// alert resolves the {id} of the path (serial/rule/start-ms, slashes
// escaped or written as dots) to its unit, answering not_found when the
// caller may not see the unit.
func (h *actionsAPI) alert(w http.ResponseWriter, r *http.Request) (actions.AlertID, registry.Unit, bool) {
	raw, err := url.PathUnescape(r.PathValue("id"))
	if err != nil {
		raw = ""
	}
	id, err := actions.ParseAlertID(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_alert_id", "the alert id is serial/rule/start-ms")
		return actions.AlertID{}, registry.Unit{}, false
	}
	u, ok := h.s.cfg.Units.Lookup(id.Serial)
	if !ok || !principalOf(r).CanSeeAlert(id.Rule, u) {
		alertNotFound(w)
		return actions.AlertID{}, registry.Unit{}, false
	}
	return id, u, true
}

// body decodes an optional JSON body into v: an empty body leaves v as
// it is.
func body(w http.ResponseWriter, r *http.Request, v any, shape string) bool {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body unreadable: "+err.Error())
		return false
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body must be a JSON object "+shape+": "+err.Error())
		return false
	}
	return true
}

func (h *actionsAPI) fail(w http.ResponseWriter, op string, err error) {
	switch {
	case errors.Is(err, actions.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_field", err.Error())
	case errors.Is(err, actions.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	default:
		h.s.log.Warn("alert action failed", "op", op, "err", err)
		writeError(w, http.StatusServiceUnavailable, "alerts_unavailable", "the alert store is unavailable; try again shortly")
	}
}

// ack answers POST /v1/alerts/{id}/ack {"reason"}: the alert must be
// firing (not_firing otherwise).
func (h *actionsAPI) ack(w http.ResponseWriter, r *http.Request) {
	id, u, ok := h.alert(w, r)
	if !ok {
		return
	}
	var b struct {
		Reason string `json:"reason"`
	}
	if !body(w, r, &b, `{"reason"}`) {
		return
	}
	active, err := h.q.Active(r.Context(), u.Site)
	if err != nil {
		h.fail(w, "active alerts", err)
		return
	}
	if !slices.ContainsFunc(active, func(ev rules.Event) bool { return ev.Fingerprint == id.String() }) {
		writeError(w, http.StatusConflict, "not_firing", "this alert is not firing; only a firing alert can be acknowledged")
		return
	}
	a, err := h.a.Ack(r.Context(), id, principalOf(r).Actor(), b.Reason)
	if err != nil {
		h.fail(w, "acknowledge", err)
		return
	}
	h.s.log.Info("alert acknowledged", "alert", a.AlertID, "account", a.By.Account)
	writeJSON(w, http.StatusOK, h.s.ackJSON(a))
}

func (h *actionsAPI) unack(w http.ResponseWriter, r *http.Request) {
	id, _, ok := h.alert(w, r)
	if !ok {
		return
	}
	if err := h.a.Unack(r.Context(), id, principalOf(r).Actor(), r.URL.Query().Get("reason")); err != nil {
		h.fail(w, "withdraw acknowledgement", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseSilenceDuration reads a Go duration ("90m", "2h") or a number of
// days ("1d").
func parseSilenceDuration(s string) (time.Duration, bool) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		return time.Duration(n) * 24 * time.Hour, err == nil && n > 0
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d > 0
}

// silence answers POST /v1/alerts/{id}/silence {"duration","reason"}: no
// notification of the unit's rule until now+duration (at most 30 days).
func (h *actionsAPI) silence(w http.ResponseWriter, r *http.Request) {
	id, _, ok := h.alert(w, r)
	if !ok {
		return
	}
	var b struct {
		Duration string `json:"duration"`
		Reason   string `json:"reason"`
	}
	if !body(w, r, &b, `{"duration", "reason"}`) {
		return
	}
	d, ok := parseSilenceDuration(b.Duration)
	if !ok || d > actions.MaxSilence {
		writeError(w, http.StatusBadRequest, "invalid_field", "duration: a positive duration like 30m, 2h or 1d, at most 30d")
		return
	}
	sl, err := h.a.Silence(r.Context(), id, principalOf(r).Actor(), d, b.Reason)
	if err != nil {
		h.fail(w, "silence", err)
		return
	}
	h.s.log.Info("alert silenced", "serial", sl.Serial, "rule", sl.Rule, "until", sl.Until, "account", sl.By.Account)
	writeJSON(w, http.StatusOK, h.s.silenceJSON(sl))
}

func (h *actionsAPI) unsilence(w http.ResponseWriter, r *http.Request) {
	id, _, ok := h.alert(w, r)
	if !ok {
		return
	}
	if err := h.a.Unsilence(r.Context(), id, principalOf(r).Actor(), r.URL.Query().Get("reason")); err != nil {
		h.fail(w, "lift silence", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// history answers GET /v1/units/{serial}/alert-actions?from=&to=: the
// acknowledgements and silences of the unit's alerts, set, withdrawn and
// cleared, oldest first (default: the last 30 days).
func (h *actionsAPI) history(w http.ResponseWriter, r *http.Request) {
	u, ok := h.s.unit(w, r)
	if !ok {
		return
	}
	from, to, ok := timeRange(w, r, 30*24*time.Hour)
	if !ok {
		return
	}
	recs, err := h.a.History(r.Context(), u.Serial, from, to)
	if err != nil {
		h.fail(w, "alert actions", err)
		return
	}
	out := make([]actionJSON, len(recs))
	for i, rec := range recs {
		out[i] = actionJSON{Action: rec.Action, AlertID: rec.AlertID, Serial: string(rec.Serial), Rule: rec.Rule,
			By: h.s.actorJSON(rec.By), At: rec.At, Reason: rec.Reason, Until: rec.Until}
	}
	writeJSON(w, http.StatusOK, map[string]any{"serial": u.Serial, "actions": out})
}

// timeRange reads from and to (RFC 3339 or unix ms; default: the last
// def), answering invalid_query when they are wrong.
func timeRange(w http.ResponseWriter, r *http.Request, def time.Duration) (time.Time, time.Time, bool) {
	qs := r.URL.Query()
	to, err := parseTime(qs.Get("to"), time.Now().UTC())
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", "to: "+err.Error())
		return time.Time{}, time.Time{}, false
	}
	from, err := parseTime(qs.Get("from"), to.Add(-def))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", "from: "+err.Error())
		return time.Time{}, time.Time{}, false
	}
	if !to.After(from) {
		writeError(w, http.StatusBadRequest, "invalid_query", "to must be after from")
		return time.Time{}, time.Time{}, false
	}
	return from, to, true
}
