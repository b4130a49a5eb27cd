package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/ups"
)

// Accounts is what the API needs of notify/recipients.
type Accounts interface {
	Create(ctx context.Context, r recipients.Recipient) (recipients.Recipient, error)
	Lookup(id string) (recipients.Recipient, bool)
	UpdateProfile(ctx context.Context, id string, p recipients.Profile) (recipients.Recipient, error)
	SetContacts(ctx context.Context, id string, c recipients.Contacts) (recipients.Recipient, error)
	SetPreferences(ctx context.Context, id string, p recipients.Preferences) (recipients.Recipient, error)
	SetUnit(ctx context.Context, id string, serial ups.Serial, owned bool) (recipients.Recipient, error)
	SetSite(ctx context.Context, id, site string, managed bool) (recipients.Recipient, error)
	Delete(ctx context.Context, id string) error
	Authenticate(token string) (recipients.Recipient, bool)
	CreateToken(ctx context.Context, id, name string) (string, recipients.TokenInfo, error)
	RevokeToken(ctx context.Context, id, tokenID string) error
	LookupEmail(ctx context.Context, email string) (recipients.Recipient, bool, error)
	OwnersOf(serial ups.Serial) []string
	List() []string
}

// Notifier is what the API needs of notify/pipeline.
type Notifier interface {
	Deliveries(ctx context.Context, alertID string) ([]pipeline.Delivery, error)
	SendTest(ctx context.Context, accountID string) ([]pipeline.TestResult, error)
	// EraseRecipient removes the account's notification log entries,
	// outbox messages and audit records.
	EraseRecipient(ctx context.Context, accountID string) (int, error)
	// RecordsOf lists what EraseRecipient removes, for the export.
	RecordsOf(ctx context.Context, accountID string) (pipeline.Records, error)
}

// HandleNotify registers the account and notification endpoints. "self"
// is the account's own token or the admin; "admin" the admin only.
//
//	POST   /v1/accounts                          admin  create
//	GET    /v1/accounts?email=&limit=&cursor=    admin  list, or find by email
//	GET    /v1/accounts/{id}                     self   read
//	PUT    /v1/accounts/{id}                     self   profile (replaced)
//	DELETE /v1/accounts/{id}                     self   erase the account and its units' data
//	GET    /v1/accounts/{id}/export              self   all personal data held, as JSON
//	POST   /v1/accounts/{id}/tokens              self   new API token (shown once)
//	DELETE /v1/accounts/{id}/tokens/{token}      self   revoke a token by its id
//	PUT    /v1/accounts/{id}/contacts            self   fcm_tokens, apns_tokens, phones
//	PUT    /v1/accounts/{id}/preferences         self   channels, quiet_hours, muted, weekly_report_off
//	PUT|DELETE /v1/accounts/{id}/units/{serial}  admin  ownership
//	PUT|DELETE /v1/accounts/{id}/sites/{site}    admin  management
//	POST   /v1/accounts/{id}/test-notification   self   per-address results
//	GET    /v1/alerts/{id}/deliveries            any    attempts of an alert (an account sees its own)
//
// An alert id is its fingerprint serial/rule/start-ms; in the path, escape
// the slashes (%2F) or write dots instead.
func (s *Server) HandleNotify(accounts Accounts, n Notifier) {
	h := &notifyAPI{s: s, accounts: accounts, n: n}
	s.authn, s.owners = accounts, accounts
	s.handle("POST /v1/accounts", s.admin(h.create))
	s.handle("GET /v1/accounts", s.admin(h.list))
	s.handle("GET /v1/accounts/{id}", s.auth(h.self(h.get)))
	s.handle("PUT /v1/accounts/{id}", s.auth(h.self(h.update)))
	s.handle("DELETE /v1/accounts/{id}", s.auth(h.self(h.delete)))
	s.handle("GET /v1/accounts/{id}/export", s.auth(h.self(h.export)))
	s.handle("POST /v1/accounts/{id}/tokens", s.auth(h.self(h.createToken)))
	s.handle("DELETE /v1/accounts/{id}/tokens/{token}", s.auth(h.self(h.revokeToken)))
	s.handle("PUT /v1/accounts/{id}/contacts", s.auth(h.self(h.contacts)))
	s.handle("PUT /v1/accounts/{id}/preferences", s.auth(h.self(h.preferences)))
	s.handle("PUT /v1/accounts/{id}/units/{serial}", s.admin(h.unit(true)))
	s.handle("DELETE /v1/accounts/{id}/units/{serial}", s.admin(h.unit(false)))
	s.handle("PUT /v1/accounts/{id}/sites/{site}", s.admin(h.site(true)))
	s.handle("DELETE /v1/accounts/{id}/sites/{site}", s.admin(h.site(false)))
	s.handle("POST /v1/accounts/{id}/test-notification", s.auth(h.self(h.test)))
	s.handle("GET /v1/alerts/{id}/deliveries", s.auth(h.deliveries))
}

// self lets the account itself or the admin through; another account
// gets not_found, as if the account did not exist.
func (h *notifyAPI) self(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !principalOf(r).Self(r.PathValue("id")) {
			accountNotFound(w)
			return
		}
		next(w, r)
	}
}

type notifyAPI struct {
	s        *Server
	accounts Accounts
	n        Notifier
}

func decodeStrict(w http.ResponseWriter, r *http.Request, v any, shape string) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body must be a JSON object "+shape+": "+err.Error())
		return false
	}
	return true
}

// reply writes the account or maps err to a stable error code. Errors
// never quote a contact (recipients' errors name the field only).
func (h *notifyAPI) reply(w http.ResponseWriter, code int, rec recipients.Recipient, err error, op string) {
	switch {
	case errors.Is(err, recipients.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_field", err.Error())
	case errors.Is(err, recipients.ErrNotFound):
		accountNotFound(w)
	case errors.Is(err, recipients.ErrExists):
		writeError(w, http.StatusConflict, "already_exists", "an account with this id exists")
	case errors.Is(err, recipients.ErrEmailTaken):
		writeError(w, http.StatusConflict, "email_taken", "another account has this email")
	case err != nil:
		h.s.internal(w, op, err)
	default:
		writeJSON(w, code, rec)
	}
}

func (h *notifyAPI) id(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !recipients.ValidID(id) {
		accountNotFound(w)
		return "", false
	}
	return id, true
}

// account resolves the {id} of the path to an account, answering
// not_found when there is none.
func (h *notifyAPI) account(w http.ResponseWriter, r *http.Request) (recipients.Recipient, bool) {
	id, ok := h.id(w, r)
	if !ok {
		return recipients.Recipient{}, false
	}
	rec, ok := h.accounts.Lookup(id)
	if !ok {
		accountNotFound(w)
	}
	return rec, ok
}

func accountNotFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "no account with this id")
}

type accountBody struct {
	ID          string                 `json:"id"`
	Role        string                 `json:"role"`
	Name        string                 `json:"name"`
	Email       string                 `json:"email"`
	Phone       string                 `json:"phone"`
	Address     string                 `json:"address"`
	Region      string                 `json:"region"`
	Marketing   bool                   `json:"marketing_consent"`
	Language    string                 `json:"language"`
	TimeZone    string                 `json:"time_zone"`
	Contacts    recipients.Contacts    `json:"contacts"`
	Preferences recipients.Preferences `json:"preferences"`
	Units       []ups.Serial           `json:"units"`
	Sites       []string               `json:"sites"`
}

func (h *notifyAPI) create(w http.ResponseWriter, r *http.Request) {
	var b accountBody
	if !decodeStrict(w, r, &b, "{id?, role, name, email, phone, address, region, marketing_consent, language, time_zone, contacts, preferences, units, sites}") {
		return
	}
	rec, err := h.accounts.Create(r.Context(), recipients.Recipient{
		Account: recipients.Account{ID: b.ID, Role: b.Role, Region: b.Region, Language: b.Language, TimeZone: b.TimeZone,
			Preferences: b.Preferences, Units: b.Units, Sites: b.Sites, Marketing: recipients.Consent{Granted: b.Marketing}},
		Personal: recipients.Personal{Name: b.Name, Email: b.Email, Phone: b.Phone, Address: b.Address, Contacts: b.Contacts},
	})
	if err == nil {
		h.s.log.Info("recipient account created", "account", rec.ID)
	}
	h.reply(w, http.StatusCreated, rec, err, "create account")
}

func (h *notifyAPI) get(w http.ResponseWriter, r *http.Request) {
	rec, ok := h.account(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (h *notifyAPI) update(w http.ResponseWriter, r *http.Request) {
	id, ok := h.id(w, r)
	if !ok {
		return
	}
	var b struct {
		Name      string `json:"name"`
		Email     string `json:"email"`
		Phone     string `json:"phone"`
		Address   string `json:"address"`
		Region    string `json:"region"`
		Language  string `json:"language"`
		TimeZone  string `json:"time_zone"`
		Marketing bool   `json:"marketing_consent"`
	}
	if !decodeStrict(w, r, &b, "{name, email, phone, address, region, language, time_zone, marketing_consent}") {
		return
	}
	rec, err := h.accounts.UpdateProfile(r.Context(), id, recipients.Profile{Name: b.Name, Email: b.Email, Phone: b.Phone,
		Address: b.Address, Region: b.Region, Language: b.Language, TimeZone: b.TimeZone, Marketing: b.Marketing})
	h.reply(w, http.StatusOK, rec, err, "update account")
}

func (h *notifyAPI) contacts(w http.ResponseWriter, r *http.Request) {
	id, ok := h.id(w, r)
	if !ok {
		return
	}
	var c recipients.Contacts
	if !decodeStrict(w, r, &c, "{fcm_tokens, apns_tokens: [{token, bundle_id}], phones}") {
		return
	}
	rec, err := h.accounts.SetContacts(r.Context(), id, c)
	h.reply(w, http.StatusOK, rec, err, "set contacts")
}

func (h *notifyAPI) preferences(w http.ResponseWriter, r *http.Request) {
	id, ok := h.id(w, r)
	if !ok {
		return
	}
	var p recipients.Preferences
	if !decodeStrict(w, r, &p, "{channels: {severity: [channel]}, quiet_hours: {start, end}, muted, weekly_report_off}") {
		return
	}
	rec, err := h.accounts.SetPreferences(r.Context(), id, p)
	h.reply(w, http.StatusOK, rec, err, "set preferences")
}

func (h *notifyAPI) unit(owned bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := h.id(w, r)
		if !ok {
			return
		}
		serial := r.PathValue("serial")
		if !ups.ValidSerial(serial) {
			writeError(w, http.StatusBadRequest, "invalid_serial", "the serial number must have exactly 12 or 16 digits")
			return
		}
		rec, err := h.accounts.SetUnit(r.Context(), id, ups.Serial(serial), owned)
		h.reply(w, http.StatusOK, rec, err, "set unit ownership")
	}
}

func (h *notifyAPI) site(managed bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := h.id(w, r)
		if !ok {
			return
		}
		rec, err := h.accounts.SetSite(r.Context(), id, r.PathValue("site"), managed)
		h.reply(w, http.StatusOK, rec, err, "set site management")
	}
}

func (h *notifyAPI) test(w http.ResponseWriter, r *http.Request) {
	id, ok := h.id(w, r)
	if !ok {
		return
	}
	results, err := h.n.SendTest(r.Context(), id)
	if err != nil {
		h.reply(w, 0, recipients.Recipient{}, err, "test notification")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

func (h *notifyAPI) deliveries(w http.ResponseWriter, r *http.Request) {
	id, err := url.PathUnescape(r.PathValue("id"))
	if err != nil || id == "" {
		writeError(w, http.StatusBadRequest, "invalid_alert_id", "the alert id is serial/rule/start-ms")
		return
	}
	if !strings.Contains(id, "/") {
		id = strings.ReplaceAll(id, ".", "/")
	}
	ds, err := h.n.Deliveries(r.Context(), id)
	if err != nil {
		if strings.Contains(err.Error(), "invalid alert id") {
			writeError(w, http.StatusBadRequest, "invalid_alert_id", "the alert id is serial/rule/start-ms")
			return
		}
		h.s.internal(w, "list deliveries", err)
		return
	}
	if p := principalOf(r); !p.Admin {
		ds = slices.DeleteFunc(ds, func(d pipeline.Delivery) bool { return d.Recipient != p.Account.ID })
	}
	if ds == nil {
		ds = []pipeline.Delivery{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"alert_id": id, "deliveries": ds})
}
