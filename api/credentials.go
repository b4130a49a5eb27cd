package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/ups"
)

// DeviceCredentials changes a device's credentials (the registry and the
// revocation list).
type DeviceCredentials interface {
	RotatePassword(ctx context.Context, serial ups.Serial) (registry.Unit, string, error)
	Revoke(ctx context.Context, serial ups.Serial) (time.Time, error)
}

// HandleDeviceCredentials adds:
//
//	POST /v1/units/{serial}/rotate-password  a new MQTT password (shown once); the device's sessions end
//	POST /v1/units/{serial}/revoke           admin: the unit's certificates issued until now are refused
//
// Rotating is for whoever may change the unit (its owner, a manager of
// its site, the admin); revoking, for the admin, who issues certificates.
func (s *Server) HandleDeviceCredentials(c DeviceCredentials) {
	s.handle("POST /v1/units/{serial}/rotate-password", s.auth(func(w http.ResponseWriter, r *http.Request) {
		s.rotatePassword(w, r, c)
	}))
	s.handle("POST /v1/units/{serial}/revoke", s.admin(func(w http.ResponseWriter, r *http.Request) {
		s.revoke(w, r, c)
	}))
}

func (s *Server) rotatePassword(w http.ResponseWriter, r *http.Request, c DeviceCredentials) {
	u, ok := s.unit(w, r)
	if !ok {
		return
	}
	if !principalOf(r).CanChange(u) {
		forbidden(w)
		return
	}
	u, pw, err := c.RotatePassword(r.Context(), u.Serial)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			writeError(w, http.StatusNotFound, "not_found", "no unit with this serial number is registered")
			return
		}
		s.internal(w, "rotate device password", err)
		return
	}
	s.log.Info("device password rotated", "serial", u.Serial)
	prefix := s.cfg.TopicPrefix + "/" + string(u.Serial) + "/"
	writeJSON(w, http.StatusOK, struct {
		unitJSON
		MQTT Credentials `json:"mqtt"`
	}{toJSON(u), Credentials{Broker: s.cfg.Broker, Username: string(u.Serial), Password: pw,
		TelemetryTopic: prefix + "telemetry", StatusTopic: prefix + "status"}})
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, c DeviceCredentials) {
	u, ok := s.unit(w, r)
	if !ok {
		return
	}
	at, err := c.Revoke(r.Context(), u.Serial)
	if err != nil {
		s.internal(w, "revoke device certificates", err)
		return
	}
	s.log.Info("device certificates revoked", "serial", u.Serial, "revoked_at", at)
	writeJSON(w, http.StatusOK, map[string]any{"serial": u.Serial, "revoked_at": at.Format(time.RFC3339)})
}
