package api

import (
	"context"
	"net/http"
	"time"

	"github.com/upswatch/upswatch/access"
)

// Logins is what the API needs of the console's sign-in store.
type Logins interface {
	NewInvite(ctx context.Context, accountID string) (string, access.Invite, error)
	Forget(ctx context.Context, accountID string) error
}

// HandleConsole mounts the web console at / (every path the API does not
// claim), lets the API accept its session cookie (sessions resolves it),
// and adds, for the admin:
//
//	POST /v1/accounts/{id}/invite   a one-time link where the person sets a password
//
// Deleting an account then also erases its password. Call it after
// HandleNotify and before serving.
func (s *Server) HandleConsole(console http.Handler, sessions func(*http.Request) (Principal, bool), logins Logins) {
	s.sessions = sessions
	s.logins = logins
	s.handle("POST /v1/accounts/{id}/invite", s.admin(s.invite))
	s.mux.Handle("/", console)
}

// invite answers POST /v1/accounts/{id}/invite with the link (on this
// server's address as the caller reached it) and its expiry.
func (s *Server) invite(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if s.owners == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this server has no accounts")
		return
	}
	if _, ok := s.owners.Lookup(id); !ok {
		accountNotFound(w)
		return
	}
	tok, inv, err := s.logins.NewInvite(r.Context(), id)
	if err != nil {
		s.internal(w, "create invitation", err)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	s.log.Info("invitation issued", "account", id, "expires", inv.Expires)
	writeJSON(w, http.StatusCreated, map[string]any{
		"url":        scheme + "://" + r.Host + "/invite/" + tok,
		"expires_at": inv.Expires.Format(time.RFC3339),
	})
}

// Handler is the server as it should be served: state-changing requests
// from other sites refused (the console signs people in with a cookie),
// no content sniffing, no framing, and, over TLS, HSTS. The console sets
// its own, stricter, Content-Security-Policy over this one.
func (s *Server) Handler() http.Handler {
	h := http.NewCrossOriginProtection().Handler(s)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Content-Security-Policy", "frame-ancestors 'none'")
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		h.ServeHTTP(w, r)
	})
}
