// Package api is upswatch's HTTP interface: the admin and history API
// under /v1, health (/healthz, /readyz), Prometheus /metrics and, behind
// the admin token, Go runtime profiles under /debug/pprof/.
//
// Errors are always {"error":{"code":"...","message":"..."}} with a
// stable code.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// Units is what the API needs of the registry.
type Units interface {
	Add(ctx context.Context, serial ups.Serial, name, site string) (registry.Unit, string, error)
	Lookup(serial ups.Serial) (registry.Unit, bool)
	List() []registry.Unit
	Remove(ctx context.Context, serial ups.Serial) error
}

// ReadyCheck names a component and tells whether it is ready.
type ReadyCheck struct {
	Name  string
	Ready func() bool
}

// Config of the API server.
type Config struct {
	AdminToken string
	// Broker tells devices where to connect (shown with new credentials).
	Broker      string
	TopicPrefix string
	Units       Units
	History     store.History
	Ready       []ReadyCheck
	Gatherer    prometheus.Gatherer
	Logger      *slog.Logger
}

// Server serves the API.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New builds the handler tree.
func New(cfg Config) (*Server, error) {
	if cfg.AdminToken == "" || cfg.Units == nil || cfg.History == nil {
		return nil, errors.New("api: AdminToken, Units and History are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "api"), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	s.mux.Handle("POST /v1/units", s.admin(s.addUnit))
	s.mux.Handle("GET /v1/units", s.admin(s.listUnits))
	s.mux.Handle("GET /v1/units/{serial}", s.admin(s.getUnit))
	s.mux.Handle("DELETE /v1/units/{serial}", s.admin(s.removeUnit))
	s.mux.Handle("GET /v1/units/{serial}/history", s.admin(s.history))
	s.mux.Handle("GET /v1/units/{serial}/latest", s.admin(s.latest))
	// Go runtime profiles (go tool pprof), for the admin only: a CPU
	// profile costs the process while it runs and the others reveal
	// internals.
	s.mux.Handle("GET /debug/pprof/", s.admin(pprof.Index))
	s.mux.Handle("GET /debug/pprof/cmdline", s.admin(pprof.Cmdline))
	s.mux.Handle("GET /debug/pprof/profile", s.admin(pprof.Profile))
	s.mux.Handle("GET /debug/pprof/symbol", s.admin(pprof.Symbol))
	s.mux.Handle("GET /debug/pprof/trace", s.admin(pprof.Trace))
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	s.mux.ServeHTTP(w, r)
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	status := map[string]string{}
	code := http.StatusOK
	for _, c := range s.cfg.Ready {
		if c.Ready() {
			status[c.Name] = "ready"
		} else {
			status[c.Name] = "not ready"
			code = http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, status)
}

func (s *Server) admin(h http.HandlerFunc) http.Handler {
	want := []byte("Bearer " + s.cfg.AdminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="upswatch"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
			return
		}
		h(w, r)
	})
}

type unitJSON struct {
	Serial    ups.Serial `json:"serial"`
	Name      string     `json:"name"`
	Site      string     `json:"site"`
	CreatedAt time.Time  `json:"created_at"`
}

func toJSON(u registry.Unit) unitJSON {
	return unitJSON{Serial: u.Serial, Name: u.Name, Site: u.Site, CreatedAt: u.CreatedAt}
}

// Credentials are the device's MQTT login, returned once at registration.
type Credentials struct {
	Broker         string `json:"broker,omitempty"`
	Username       string `json:"username"`
	Password       string `json:"password"`
	TelemetryTopic string `json:"telemetry_topic"`
	StatusTopic    string `json:"status_topic"`
}

func (s *Server) addUnit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Serial string `json:"serial"`
		Name   string `json:"name"`
		Site   string `json:"site"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body must be a JSON object {serial, name, site}: "+err.Error())
		return
	}
	u, pw, err := s.cfg.Units.Add(r.Context(), ups.Serial(strings.TrimSpace(req.Serial)), req.Name, req.Site)
	switch {
	case errors.Is(err, ups.ErrInvalidSerial):
		writeError(w, http.StatusBadRequest, "invalid_serial", "the serial number must have exactly 12 or 16 digits")
		return
	case errors.Is(err, registry.ErrInvalidName):
		writeError(w, http.StatusBadRequest, "invalid_field", err.Error())
		return
	case errors.Is(err, registry.ErrAlreadyRegistered):
		writeError(w, http.StatusConflict, "already_registered", "this serial number is already registered")
		return
	case err != nil:
		s.internal(w, "add unit", err)
		return
	}
	s.log.Info("unit registered", "serial", u.Serial, "site", u.Site)
	prefix := s.cfg.TopicPrefix + "/" + string(u.Serial) + "/"
	writeJSON(w, http.StatusCreated, struct {
		unitJSON
		MQTT Credentials `json:"mqtt"`
	}{toJSON(u), Credentials{Broker: s.cfg.Broker, Username: string(u.Serial), Password: pw,
		TelemetryTopic: prefix + "telemetry", StatusTopic: prefix + "status"}})
}

func (s *Server) listUnits(w http.ResponseWriter, r *http.Request) {
	site := r.URL.Query().Get("site")
	out := []unitJSON{}
	for _, u := range s.cfg.Units.List() {
		if site == "" || u.Site == site {
			out = append(out, toJSON(u))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"units": out})
}

func (s *Server) unit(w http.ResponseWriter, r *http.Request) (registry.Unit, bool) {
	serial := r.PathValue("serial")
	if !ups.ValidSerial(serial) {
		writeError(w, http.StatusBadRequest, "invalid_serial", "the serial number must have exactly 12 or 16 digits")
		return registry.Unit{}, false
	}
	u, ok := s.cfg.Units.Lookup(ups.Serial(serial))
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no unit with this serial number is registered")
		return registry.Unit{}, false
	}
	return u, true
}

func (s *Server) getUnit(w http.ResponseWriter, r *http.Request) {
	if u, ok := s.unit(w, r); ok {
		writeJSON(w, http.StatusOK, toJSON(u))
	}
}

func (s *Server) removeUnit(w http.ResponseWriter, r *http.Request) {
	u, ok := s.unit(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Units.Remove(r.Context(), u.Serial); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			writeError(w, http.StatusNotFound, "not_found", "no unit with this serial number is registered")
			return
		}
		s.internal(w, "remove unit", err)
		return
	}
	s.log.Info("unit removed", "serial", u.Serial)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	s.log.Error("request failed", "op", what, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error; see the server log")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]string{"code": errCode, "message": msg}})
}
