// Package api is upswatch's HTTP interface: the admin and history API
// under /v1, health (/healthz, /readyz), Prometheus /metrics and, behind
// the admin token, Go runtime profiles under /debug/pprof/.
//
// Errors are always {"error":{"code":"...","message":"..."}} with a
// stable code.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
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
	// Catalog checks registrations by owners (nil: serial format only).
	Catalog Catalog
	// RatePerSecond and RateBurst limit each bearer token (0: no limit).
	RatePerSecond float64
	RateBurst     int
	// RotateKeys rotates the keyring and reseals every personal record,
	// returning the new key id and how many records it resealed (nil:
	// the endpoint answers 501).
	RotateKeys func(ctx context.Context) (string, int, error)
}

// Server serves the API.
type Server struct {
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	limit *limiter
	// authn resolves account tokens (set by HandleNotify).
	authn Authenticator
	// owners records who owns a unit (set by HandleNotify).
	owners Accounts
	// routes lists every pattern registered, for the OpenAPI test.
	routes []string
	// sessions resolves a console session cookie (set by HandleConsole).
	sessions func(*http.Request) (Principal, bool)
	// logins holds console passwords and invitations (set by
	// HandleConsole).
	logins Logins
	// actions holds acknowledgements and silences (set by
	// HandleAlertActions).
	actions AlertActions
	// heartbeat is the interval of /v1/events keep-alives (0: 15 s).
	heartbeat time.Duration
}

// New builds the handler tree.
func New(cfg Config) (*Server, error) {
	if cfg.AdminToken == "" || cfg.Units == nil || cfg.History == nil {
		return nil, errors.New("api: AdminToken, Units and History are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "api"), mux: http.NewServeMux(),
		limit: newLimiter(cfg.RatePerSecond, cfg.RateBurst)}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	s.mux.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	s.handle("POST /v1/units", s.auth(s.addUnit))
	s.handle("GET /v1/units", s.auth(s.listUnits))
	s.handle("GET /v1/units/{serial}", s.auth(s.getUnit))
	s.handle("DELETE /v1/units/{serial}", s.auth(s.removeUnit))
	s.handle("GET /v1/units/{serial}/history", s.auth(s.history))
	s.handle("GET /v1/units/{serial}/latest", s.auth(s.latest))
	s.handle("POST /v1/admin/keys/rotate", s.admin(s.rotateKeys))
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

// handle registers an API route and remembers its pattern.
func (s *Server) handle(pattern string, h http.Handler) {
	s.routes = append(s.routes, pattern)
	s.mux.Handle(pattern, h)
}

// Routes lists the patterns of the /v1 API routes registered so far.
func (s *Server) Routes() []string { return slices.Clone(s.routes) }

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

type unitJSON struct {
	Serial    ups.Serial `json:"serial"`
	Name      string     `json:"name"`
	Site      string     `json:"site"`
	CreatedAt time.Time  `json:"created_at"`
}

func toJSON(u registry.Unit) unitJSON {
	return unitJSON{Serial: u.Serial, Name: u.Name, Site: u.Site, CreatedAt: u.CreatedAt}
}

// listUnits answers GET /v1/units?site=&limit=&cursor=: the units the
// caller may see, by serial; next_cursor is set when there are more.
func (s *Server) listUnits(w http.ResponseWriter, r *http.Request) {
	pg, ok := parsePage(w, r)
	if !ok {
		return
	}
	p := principalOf(r)
	site := r.URL.Query().Get("site")
	out := []unitJSON{}
	next := ""
	for _, u := range s.cfg.Units.List() {
		if (site != "" && u.Site != site) || !p.CanSee(u) || string(u.Serial) <= pg.cursor {
			continue
		}
		if len(out) == pg.limit {
			next = string(out[len(out)-1].Serial)
			break
		}
		out = append(out, toJSON(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"units": out, "next_cursor": next})
}

func (s *Server) unit(w http.ResponseWriter, r *http.Request) (registry.Unit, bool) {
	serial := r.PathValue("serial")
	if !ups.ValidSerial(serial) {
		writeError(w, http.StatusBadRequest, "invalid_serial", "the serial number must have exactly 12 or 16 digits")
		return registry.Unit{}, false
	}
	u, ok := s.cfg.Units.Lookup(ups.Serial(serial))
	// A unit the caller may not see is as good as absent: its existence
	// is not told.
	if !ok || !principalOf(r).CanSee(u) {
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
	if !principalOf(r).CanChange(u) {
		forbidden(w)
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
	if s.owners != nil {
		for _, id := range s.owners.OwnersOf(u.Serial) {
			if _, err := s.owners.SetUnit(r.Context(), id, u.Serial, false); err != nil {
				s.log.Warn("ownership not removed", "serial", u.Serial, "account", id, "err", err)
			}
		}
	}
	s.log.Info("unit removed", "serial", u.Serial)
	w.WriteHeader(http.StatusNoContent)
}

// rotateKeys answers POST /v1/admin/keys/rotate: a new primary key in the
// keyring file, and every personal record sealed again under it.
func (s *Server) rotateKeys(w http.ResponseWriter, r *http.Request) {
	if s.cfg.RotateKeys == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this server has no keyring to rotate")
		return
	}
	id, n, err := s.cfg.RotateKeys(r.Context())
	if err != nil {
		s.internal(w, "rotate keys", err)
		return
	}
	s.log.Info("keyring rotated", "primary", id, "resealed", n)
	writeJSON(w, http.StatusOK, map[string]any{"primary_key": id, "resealed": n})
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
