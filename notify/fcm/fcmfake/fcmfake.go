// Package fcmfake is a local FCM HTTP v1 server for tests and staging.
//
// It speaks the wire protocol firebase.google.com/go/v4 uses for SendEach:
// one `POST /v1/projects/{project}/messages:send` per message, a JSON body
// `{"message":{"token":...,"notification":{...},"android":{...}}}`, answered
// with `{"name":"projects/{project}/messages/{id}"}` or a Google API error
// `{"error":{"code":..,"status":..,"message":..,"details":[FcmError]}}`.
// Point the client at it with option.WithEndpoint(URL+"/v1") and
// option.WithoutAuthentication().
package fcmfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/upswatch/upswatch/notify/internal/fakescript"
)

// Request is one send request as the fake decoded it.
type Request struct {
	Project      string
	Token        string
	Title        string
	Body         string
	Data         map[string]string
	Priority     string // android.priority: "high" or "normal"
	CollapseKey  string // android.collapse_key
	TTL          string // android.ttl as on the wire, e.g. "3600s"
	ValidateOnly bool
	Header       http.Header
	// Status is the HTTP status the fake answered with.
	Status int
}

// Reply is a scripted answer. The zero Reply is success.
type Reply struct {
	Status       int    // HTTP status, e.g. 404
	ErrorStatus  string // google.rpc status, e.g. "NOT_FOUND"
	Message      string
	FcmErrorCode string // FcmError detail errorCode, e.g. "UNREGISTERED"; empty for none
	RetryAfter   string // Retry-After header value; empty for none
}

// Scripted errors as FCM really sends them.
var (
	Unregistered = Reply{Status: http.StatusNotFound, ErrorStatus: "NOT_FOUND",
		Message: "Requested entity was not found.", FcmErrorCode: "UNREGISTERED"}
	InvalidArgument = Reply{Status: http.StatusBadRequest, ErrorStatus: "INVALID_ARGUMENT",
		Message: "The registration token is not a valid FCM registration token", FcmErrorCode: "INVALID_ARGUMENT"}
	// InvalidArgumentNoDetail is a malformed request, not a bad token.
	InvalidArgumentNoDetail = Reply{Status: http.StatusBadRequest, ErrorStatus: "INVALID_ARGUMENT",
		Message: "Invalid JSON payload received."}
	SenderIDMismatch = Reply{Status: http.StatusForbidden, ErrorStatus: "PERMISSION_DENIED",
		Message: "SenderId mismatch", FcmErrorCode: "SENDER_ID_MISMATCH"}
	Internal = Reply{Status: http.StatusInternalServerError, ErrorStatus: "INTERNAL",
		Message: "Internal error encountered.", FcmErrorCode: "INTERNAL"}
	Unavailable = Reply{Status: http.StatusServiceUnavailable, ErrorStatus: "UNAVAILABLE",
		Message: "The service is currently unavailable.", FcmErrorCode: "UNAVAILABLE"}
)

// QuotaExceeded is a 429 with the given Retry-After seconds.
func QuotaExceeded(retryAfterSeconds int) Reply {
	return Reply{Status: http.StatusTooManyRequests, ErrorStatus: "RESOURCE_EXHAUSTED",
		Message: "Quota exceeded for quota metric 'Send requests'", FcmErrorCode: "QUOTA_EXCEEDED",
		RetryAfter: strconv.Itoa(retryAfterSeconds)}
}

// Server is the fake. Its methods are safe for concurrent use.
//
// The scripting methods (FailAll, Reset, SetUp, SetDelay, Requests,
// WaitRequests) come from fakescript.
type Server struct {
	*fakescript.Script[Request, Reply]
	srv    *httptest.Server
	nextID atomic.Int64 // message ids handed out
}

// FailToken makes every request to token answer r.
func (s *Server) FailToken(token string, r Reply) { s.FailKey(token, r) }

// New starts a fake on a loopback port.
func New() *Server {
	s := &Server{Script: fakescript.New[Request, Reply]("fcmfake")}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// URL is the server's base URL; the client endpoint is URL()+"/v1".
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// SetDown makes every request answer 503 UNAVAILABLE (with Retry-After
// retryAfter when not empty) until SetUp is called. FCM's client retries a
// 503 itself, up to 4 times over about 7 s unless Retry-After exceeds 2 min.
func (s *Server) SetDown(retryAfter string) {
	r := Unavailable
	r.RetryAfter = retryAfter
	s.Down(r)
}

// wireRequest is the FCM HTTP v1 request body.
type wireRequest struct {
	ValidateOnly bool `json:"validate_only"`
	Message      *struct {
		Token        string            `json:"token"`
		Topic        string            `json:"topic"`
		Condition    string            `json:"condition"`
		Data         map[string]string `json:"data"`
		Notification *struct {
			Title string `json:"title"`
			Body  string `json:"body"`
		} `json:"notification"`
		Android *struct {
			CollapseKey string `json:"collapse_key"`
			Priority    string `json:"priority"`
			TTL         string `json:"ttl"`
		} `json:"android"`
	} `json:"message"`
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	project, ok := parsePath(r.URL.Path)
	if r.Method != http.MethodPost || !ok {
		writeError(w, Reply{Status: http.StatusNotFound, ErrorStatus: "NOT_FOUND",
			Message: "fcmfake: want POST /v1/projects/{project}/messages:send"})
		return
	}
	req := Request{Project: project, Header: r.Header.Clone()}
	reply, valid := s.decode(r, &req)

	scripted, ok, delay := s.Decide(req.Token)
	if valid && ok {
		reply = scripted
	}
	id := int(s.nextID.Add(1))
	fakescript.Wait(r.Context(), delay)

	if reply.Status == 0 {
		req.Status = http.StatusOK
	} else {
		req.Status = reply.Status
	}
	s.Record(req)

	if reply.Status != 0 {
		writeError(w, reply)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	fmt.Fprintf(w, `{"name":"projects/%s/messages/%d"}`, project, id)
}

// decode fills req from the body; on a malformed request it returns the
// INVALID_ARGUMENT reply FCM would give and false.
func (s *Server) decode(r *http.Request, req *Request) (Reply, bool) {
	bad := func(msg string) (Reply, bool) {
		rep := InvalidArgumentNoDetail
		rep.Message = msg
		return rep, false
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return bad("fcmfake: content type " + ct + ", want application/json")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return bad("fcmfake: read body: " + err.Error())
	}
	var wr wireRequest
	if err := json.Unmarshal(body, &wr); err != nil {
		return bad("fcmfake: invalid JSON payload: " + err.Error())
	}
	if wr.Message == nil {
		return bad("fcmfake: message missing")
	}
	m := wr.Message
	if m.Token == "" {
		return bad("fcmfake: only token targets are supported")
	}
	req.ValidateOnly = wr.ValidateOnly
	req.Token = m.Token
	req.Data = m.Data
	if m.Notification != nil {
		req.Title, req.Body = m.Notification.Title, m.Notification.Body
	}
	if m.Android != nil {
		req.Priority, req.CollapseKey, req.TTL = m.Android.Priority, m.Android.CollapseKey, m.Android.TTL
		if req.TTL != "" && !strings.HasSuffix(req.TTL, "s") {
			return bad("fcmfake: android.ttl must be a duration in seconds like \"3.5s\"")
		}
	}
	return Reply{}, true
}

func parsePath(p string) (project string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v1/projects/")
	if !ok {
		return "", false
	}
	project, ok = strings.CutSuffix(rest, "/messages:send")
	return project, ok && project != "" && !strings.Contains(project, "/")
}

func writeError(w http.ResponseWriter, r Reply) {
	type detail struct {
		Type      string `json:"@type"`
		ErrorCode string `json:"errorCode"`
	}
	var body struct {
		Error struct {
			Code    int      `json:"code"`
			Message string   `json:"message"`
			Status  string   `json:"status"`
			Details []detail `json:"details,omitempty"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message, body.Error.Status = r.Status, r.Message, r.ErrorStatus
	if r.FcmErrorCode != "" {
		body.Error.Details = []detail{{Type: "type.googleapis.com/google.firebase.fcm.v1.FcmError", ErrorCode: r.FcmErrorCode}}
	}
	if r.RetryAfter != "" {
		w.Header().Set("Retry-After", r.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(r.Status)
	_ = json.NewEncoder(w).Encode(body)
}
