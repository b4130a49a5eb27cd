// Package apnsfake is a local Apple Push Notification service for tests and
// staging: HTTP/2 over TLS, `POST /3/device/{token}` with apns-* headers and
// a token-auth JWT in `authorization: bearer`, answered 200 with an apns-id
// or `{"reason":"..."}` as APNs does.
//
// Clients trust it through CACertPEM or WriteCAFile (the server certificate
// is self-signed for 127.0.0.1).
package apnsfake

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/upswatch/upswatch/notify/internal/fakescript"
)

// Request is one push as the fake decoded it.
type Request struct {
	Token      string
	Topic      string
	PushType   string
	Priority   string // apns-priority header: "10", "5" or ""
	CollapseID string
	Expiration string // apns-expiration header: unix seconds or ""
	// From the JSON payload.
	Title             string
	Body              string
	InterruptionLevel string
	Sound             string
	Custom            map[string]any // top-level keys other than "aps"
	// From the bearer JWT.
	KeyID  string
	TeamID string
	Header http.Header
	// Status and Reason the fake answered with.
	Status int
	Reason string
}

// Reply is a scripted answer; the zero Reply is success.
type Reply struct {
	Status     int
	Reason     string
	RetryAfter string // Retry-After header value; empty for none
}

// Scripted errors as APNs sends them.
var (
	Unregistered           = Reply{Status: http.StatusGone, Reason: "Unregistered"}
	BadDeviceToken         = Reply{Status: http.StatusBadRequest, Reason: "BadDeviceToken"}
	DeviceTokenNotForTopic = Reply{Status: http.StatusBadRequest, Reason: "DeviceTokenNotForTopic"}
	PayloadTooLarge        = Reply{Status: http.StatusRequestEntityTooLarge, Reason: "PayloadTooLarge"}
	InternalServerError    = Reply{Status: http.StatusInternalServerError, Reason: "InternalServerError"}
	ServiceUnavailable     = Reply{Status: http.StatusServiceUnavailable, Reason: "ServiceUnavailable"}
)

// TooManyRequests is a 429 with the given Retry-After seconds (0: none).
func TooManyRequests(retryAfterSeconds int) Reply {
	r := Reply{Status: http.StatusTooManyRequests, Reason: "TooManyRequests"}
	if retryAfterSeconds > 0 {
		r.RetryAfter = strconv.Itoa(retryAfterSeconds)
	}
	return r
}

// Server is the fake. Its methods are safe for concurrent use.
//
// The scripting methods (FailAll, Reset, SetUp, SetDelay, Requests,
// WaitRequests) come from fakescript.
type Server struct {
	*fakescript.Script[Request, Reply]
	srv *httptest.Server

	mu      sync.Mutex
	authKey *ecdsa.PublicKey
}

// FailToken makes every push to token answer r.
func (s *Server) FailToken(token string, r Reply) { s.FailKey(token, r) }

// New starts a fake on a loopback port, HTTP/2 over TLS.
func New() *Server {
	s := &Server{Script: fakescript.New[Request, Reply]("apnsfake")}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	return s
}

// URL is the base URL to use as the client's host.
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// CACertPEM is the server's self-signed certificate, PEM-encoded, to trust.
func (s *Server) CACertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// WriteCAFile writes CACertPEM into dir and returns the file's path.
func (s *Server) WriteCAFile(dir string) (string, error) {
	p := filepath.Join(dir, "apnsfake-ca.pem")
	if err := os.WriteFile(p, s.CACertPEM(), 0o600); err != nil {
		return "", fmt.Errorf("apnsfake: write CA file: %w", err)
	}
	return p, nil
}

// VerifyWith makes the fake check every JWT's ES256 signature against pub,
// answering 403 InvalidProviderToken on mismatch. Without it the fake only
// checks that a well-formed ES256 JWT with kid and iss is present.
func (s *Server) VerifyWith(pub *ecdsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authKey = pub
}

// SetDown makes every push answer 503 ServiceUnavailable (with Retry-After
// retryAfter when not empty) until SetUp.
func (s *Server) SetDown(retryAfter string) {
	r := ServiceUnavailable
	r.RetryAfter = retryAfter
	s.Down(r)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	switch {
	case r.ProtoMajor != 2:
		// APNs speaks HTTP/2 only.
		writeReply(w, Reply{Status: http.StatusBadRequest, Reason: "BadPath"}, "")
		return
	case !ok:
		writeReply(w, Reply{Status: http.StatusNotFound, Reason: "BadPath"}, "")
		return
	case r.Method != http.MethodPost:
		writeReply(w, Reply{Status: http.StatusMethodNotAllowed, Reason: "MethodNotAllowed"}, "")
		return
	}
	req := Request{Token: token, Header: r.Header.Clone()}

	s.mu.Lock()
	pub := s.authKey
	s.mu.Unlock()
	reply, valid := decode(r, &req, pub)

	scripted, ok, delay := s.Decide(token)
	if valid && ok {
		reply = scripted
	}
	fakescript.Wait(r.Context(), delay)
	req.Status, req.Reason = reply.Status, reply.Reason
	if req.Status == 0 {
		req.Status = http.StatusOK
	}
	s.Record(req)
	writeReply(w, reply, r.Header.Get("apns-id"))
}

// decode checks headers, JWT and payload as APNs does and fills req.
func decode(r *http.Request, req *Request, pub *ecdsa.PublicKey) (Reply, bool) {
	bad := func(status int, reason string) (Reply, bool) { return Reply{Status: status, Reason: reason}, false }
	if req.Token == "" || strings.Contains(req.Token, "/") {
		return bad(http.StatusBadRequest, "MissingDeviceToken")
	}
	auth := r.Header.Get("authorization")
	jwt, ok := strings.CutPrefix(auth, "bearer ")
	if !ok || jwt == "" {
		return bad(http.StatusForbidden, "MissingProviderToken")
	}
	kid, iss, err := parseJWT(jwt, pub)
	if err != nil {
		return bad(http.StatusForbidden, "InvalidProviderToken")
	}
	req.KeyID, req.TeamID = kid, iss

	req.Topic = r.Header.Get("apns-topic")
	if req.Topic == "" {
		return bad(http.StatusBadRequest, "MissingTopic")
	}
	req.PushType = r.Header.Get("apns-push-type")
	switch req.PushType {
	case "alert", "background", "voip", "complication", "fileprovider", "mdm", "liveactivity", "location", "pushtotalk":
	default:
		return bad(http.StatusBadRequest, "InvalidPushType")
	}
	req.Priority = r.Header.Get("apns-priority")
	switch req.Priority {
	case "", "1", "5", "10":
	default:
		return bad(http.StatusBadRequest, "BadPriority")
	}
	req.CollapseID = r.Header.Get("apns-collapse-id")
	if len(req.CollapseID) > 64 {
		return bad(http.StatusBadRequest, "BadCollapseId")
	}
	req.Expiration = r.Header.Get("apns-expiration")
	if req.Expiration != "" {
		if _, err := strconv.ParseInt(req.Expiration, 10, 64); err != nil {
			return bad(http.StatusBadRequest, "BadExpirationDate")
		}
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
	if err != nil {
		return bad(http.StatusBadRequest, "PayloadEmpty")
	}
	if len(body) > 4096 {
		return bad(http.StatusRequestEntityTooLarge, "PayloadTooLarge")
	}
	var payload map[string]json.RawMessage
	if len(body) == 0 || json.Unmarshal(body, &payload) != nil || payload["aps"] == nil {
		return bad(http.StatusBadRequest, "PayloadEmpty")
	}
	var aps struct {
		Alert             json.RawMessage `json:"alert"`
		Sound             any             `json:"sound"`
		InterruptionLevel string          `json:"interruption-level"`
	}
	if err := json.Unmarshal(payload["aps"], &aps); err != nil {
		return bad(http.StatusBadRequest, "PayloadEmpty")
	}
	var alert struct{ Title, Body string }
	if len(aps.Alert) > 0 && json.Unmarshal(aps.Alert, &alert) != nil {
		var plain string // "alert" may also be a bare string
		_ = json.Unmarshal(aps.Alert, &plain)
		alert.Body = plain
	}
	req.Title, req.Body, req.InterruptionLevel = alert.Title, alert.Body, aps.InterruptionLevel
	if snd, ok := aps.Sound.(string); ok {
		req.Sound = snd
	}
	for k, v := range payload {
		if k == "aps" {
			continue
		}
		var val any
		_ = json.Unmarshal(v, &val)
		if req.Custom == nil {
			req.Custom = map[string]any{}
		}
		req.Custom[k] = val
	}
	return Reply{}, true
}

// parseJWT checks an APNs provider token: ES256, with kid and iss, signed by
// pub when pub is not nil.
func parseJWT(tok string, pub *ecdsa.PublicKey) (kid, iss string, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", "", fmt.Errorf("jwt has %d parts", len(parts))
	}
	var header struct{ Alg, Kid string }
	var claims struct {
		Iss string `json:"iss"`
		Iat int64  `json:"iat"`
	}
	for i, v := range []any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return "", "", err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return "", "", err
		}
	}
	if header.Alg != "ES256" || header.Kid == "" || claims.Iss == "" || claims.Iat == 0 {
		return "", "", fmt.Errorf("jwt header/claims incomplete")
	}
	if pub != nil {
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || len(sig) != 64 {
			return "", "", fmt.Errorf("bad ES256 signature encoding")
		}
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, digest[:], r, s) {
			return "", "", fmt.Errorf("signature mismatch")
		}
	}
	return header.Kid, claims.Iss, nil
}

func writeReply(w http.ResponseWriter, r Reply, apnsID string) {
	if apnsID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		h := hex.EncodeToString(b[:])
		apnsID = strings.ToUpper(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
	}
	w.Header().Set("apns-id", apnsID)
	if r.Status == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.RetryAfter != "" {
		w.Header().Set("Retry-After", r.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(r.Status)
	body := map[string]any{"reason": r.Reason}
	if r.Status == http.StatusGone {
		// APNs says since when the token has been invalid, in ms.
		body["timestamp"] = time.Now().UnixMilli()
	}
	_ = json.NewEncoder(w).Encode(body)
}
