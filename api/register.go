package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/products"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/ups"
)

// Catalog is what registration needs of the product catalog
// (*products.Catalog).
type Catalog interface {
	Check(serial, region string) (products.Product, error)
}

// Credentials are the device's MQTT login, returned once at registration.
type Credentials struct {
	Broker         string `json:"broker,omitempty"`
	Username       string `json:"username"`
	Password       string `json:"password"`
	TelemetryTopic string `json:"telemetry_topic"`
	StatusTopic    string `json:"status_topic"`
}

// addUnit answers POST /v1/units {serial, name, site, owner?}: product
// registration. An owner registers for itself: the serial is checked
// against the product catalog for the account's region, and refusals
// carry a stable code and a message in the account's language. The admin
// registers on behalf of an owner (owner: its account id), with the same
// checks, or, without owner, an operator unit that the catalog does not
// check. The device's MQTT credentials are in the answer, once.
func (s *Server) addUnit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Serial string `json:"serial"`
		Name   string `json:"name"`
		Site   string `json:"site"`
		Owner  string `json:"owner"`
	}
	if !decodeStrict(w, r, &req, "{serial, name, site, owner?}") {
		return
	}
	p := principalOf(r)
	var owner *recipients.Recipient
	switch {
	case !p.Admin && p.Account.Role != recipients.RoleOwner:
		forbidden(w)
		return
	case !p.Admin:
		if req.Owner != "" && req.Owner != p.Account.ID {
			forbidden(w)
			return
		}
		owner = &p.Account
	case req.Owner != "":
		if s.owners == nil {
			accountNotFound(w)
			return
		}
		acct, ok := s.owners.Lookup(req.Owner)
		if !ok {
			accountNotFound(w)
			return
		}
		owner = &acct
	}
	lang := r.Header.Get("Accept-Language")
	if owner != nil {
		lang = owner.Language
	}
	refuse := func(status int, code string) {
		writeError(w, status, code, products.Message(code, lang))
	}
	serial := strings.TrimSpace(req.Serial)
	if !ups.ValidSerial(serial) {
		refuse(http.StatusBadRequest, products.CodeInvalidSerial)
		return
	}
	var model string
	if owner != nil && s.cfg.Catalog != nil {
		if owner.Region == "" {
			writeError(w, http.StatusBadRequest, "region_required", "the account has no region; set it before registering a product")
			return
		}
		prod, err := s.cfg.Catalog.Check(serial, owner.Region)
		var perr *products.Error
		switch {
		case errors.As(err, &perr):
			s.log.Info("registration refused", "code", perr.Code, "account", owner.ID)
			refuse(http.StatusUnprocessableEntity, perr.Code)
			return
		case err != nil:
			writeError(w, http.StatusBadRequest, "region_required", "the account's region is not an ISO 3166-1 code")
			return
		}
		model = prod.Model
	}
	u, pw, err := s.cfg.Units.Add(r.Context(), ups.Serial(serial), req.Name, req.Site)
	switch {
	case errors.Is(err, ups.ErrInvalidSerial):
		refuse(http.StatusBadRequest, products.CodeInvalidSerial)
		return
	case errors.Is(err, registry.ErrInvalidName):
		writeError(w, http.StatusBadRequest, "invalid_field", err.Error())
		return
	case errors.Is(err, registry.ErrAlreadyRegistered):
		refuse(http.StatusConflict, products.CodeAlreadyRegistered)
		return
	case err != nil:
		s.internal(w, "add unit", err)
		return
	}
	ownerID := ""
	if owner != nil {
		if _, err := s.owners.SetUnit(r.Context(), owner.ID, u.Serial, true); err != nil {
			if rerr := s.cfg.Units.Remove(r.Context(), u.Serial); rerr != nil {
				s.log.Error("registration half done: unit without owner", "serial", u.Serial, "err", rerr)
			}
			s.internal(w, "record unit owner", err)
			return
		}
		ownerID = owner.ID
	}
	s.log.Info("unit registered", "serial", u.Serial, "site", u.Site, "account", ownerID)
	prefix := s.cfg.TopicPrefix + "/" + string(u.Serial) + "/"
	writeJSON(w, http.StatusCreated, struct {
		unitJSON
		Owner string      `json:"owner,omitempty"`
		Model string      `json:"model,omitempty"`
		MQTT  Credentials `json:"mqtt"`
	}{toJSON(u), ownerID, model, Credentials{Broker: s.cfg.Broker, Username: string(u.Serial), Password: pw,
		TelemetryTopic: prefix + "telemetry", StatusTopic: prefix + "status"}})
}
