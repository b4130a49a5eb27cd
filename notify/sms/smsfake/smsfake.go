// Package smsfake is a local Twilio-compatible Messages API for tests and
// staging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP
// Basic auth (account SID, auth token) and a form To/From/Body, answered
// 201 with a Twilio message resource or a Twilio error
// `{"code":21610,"message":...,"more_info":...,"status":400}`.
package smsfake

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/upswatch/upswatch/notify/internal/fakescript"
)

// Request is one message request as the fake decoded it.
type Request struct {
	AccountSID string
	To         string
	From       string
	Body       string
	Header     http.Header
	// Status and Code the fake answered with (Code 0 on success).
	Status int
	Code   int
}

// Reply is a scripted answer; the zero Reply is success.
type Reply struct {
	Status     int
	Code       int // Twilio error code
	Message    string
	RetryAfter string // Retry-After header value; empty for none
}

// Scripted errors as Twilio sends them.
var (
	OptedOut      = Reply{Status: http.StatusBadRequest, Code: 21610, Message: "Attempt to send to unsubscribed recipient"}
	InvalidNumber = Reply{Status: http.StatusBadRequest, Code: 21211, Message: "Invalid 'To' Phone Number"}
	NotMobile     = Reply{Status: http.StatusBadRequest, Code: 21614, Message: "'To' number is not a valid mobile number"}
	ServerError   = Reply{Status: http.StatusInternalServerError, Code: 20500, Message: "Internal Server Error"}
	Unavailable   = Reply{Status: http.StatusServiceUnavailable, Code: 20503, Message: "Service Unavailable"}
)

// TooManyRequests is a 429 with the given Retry-After seconds (0: none).
func TooManyRequests(retryAfterSeconds int) Reply {
	r := Reply{Status: http.StatusTooManyRequests, Code: 20429, Message: "Too Many Requests"}
	if retryAfterSeconds > 0 {
		r.RetryAfter = strconv.Itoa(retryAfterSeconds)
	}
	return r
}

// Server is the fake. Its methods are safe for concurrent use; the
// scripting ones (FailAll, Reset, SetUp, SetDelay, Requests,
// WaitRequests) come from fakescript.
type Server struct {
	*fakescript.Script[Request, Reply]
	srv        *httptest.Server
	accountSID string
	authToken  string
}

// FailTo makes every message to number answer r.
func (s *Server) FailTo(number string, r Reply) { s.FailKey(number, r) }

// New starts a fake on a loopback port that accepts only the given
// credentials.
func New(accountSID, authToken string) *Server {
	s := &Server{Script: fakescript.New[Request, Reply]("smsfake"), accountSID: accountSID, authToken: authToken}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// Handler serves the fake's API in the caller's goroutine, for a client
// whose transport calls it directly (no network: a synctest bubble).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.handle) }

// URL is the base URL to use as the client's endpoint.
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// SetDown makes every request answer 503 (with Retry-After retryAfter when
// not empty) until SetUp.
func (s *Server) SetDown(retryAfter string) {
	r := Unavailable
	r.RetryAfter = retryAfter
	s.Down(r)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/2010-04-01/Accounts/")
	sid, ok2 := strings.CutSuffix(rest, "/Messages.json")
	if !ok || !ok2 || sid == "" || strings.Contains(sid, "/") {
		writeError(w, Reply{Status: http.StatusNotFound, Code: 20404, Message: "The requested resource was not found"})
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, Reply{Status: http.StatusMethodNotAllowed, Code: 20004, Message: "Method not allowed"})
		return
	}
	user, pass, hasAuth := r.BasicAuth()
	if !hasAuth || sid != s.accountSID || !equal(user, s.accountSID) || !equal(pass, s.authToken) {
		writeError(w, Reply{Status: http.StatusUnauthorized, Code: 20003, Message: "Authenticate"})
		return
	}
	req := Request{AccountSID: sid, Header: r.Header.Clone()}
	reply, valid := decode(r, &req)

	scripted, ok, delay := s.Decide(req.To)
	if valid && ok {
		reply = scripted
	}
	fakescript.Wait(r.Context(), delay)
	req.Status, req.Code = reply.Status, reply.Code
	if req.Status == 0 {
		req.Status = http.StatusCreated
	}
	s.Record(req)
	if reply.Status != 0 {
		writeError(w, reply)
		return
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	msgSID := "SM" + hex.EncodeToString(id[:])
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"sid": msgSID, "account_sid": sid, "to": req.To, "from": req.From, "body": req.Body,
		"status": "queued", "direction": "outbound-api", "api_version": "2010-04-01",
		"date_created": time.Now().UTC().Format(time.RFC1123Z),
		"uri":          "/2010-04-01/Accounts/" + sid + "/Messages/" + msgSID + ".json",
	})
}

// decode reads the form as Twilio does and checks the required fields.
func decode(r *http.Request, req *Request) (Reply, bool) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return Reply{Status: http.StatusBadRequest, Code: 20001, Message: "Content-Type must be application/x-www-form-urlencoded"}, false
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return Reply{Status: http.StatusBadRequest, Code: 20001, Message: "Invalid form body"}, false
	}
	req.To, req.From, req.Body = r.PostForm.Get("To"), r.PostForm.Get("From"), r.PostForm.Get("Body")
	switch {
	case req.To == "":
		return Reply{Status: http.StatusBadRequest, Code: 21604, Message: "A 'To' phone number is required."}, false
	case req.From == "":
		return Reply{Status: http.StatusBadRequest, Code: 21603, Message: "A 'From' phone number is required."}, false
	case req.Body == "":
		return Reply{Status: http.StatusBadRequest, Code: 21602, Message: "Message body is required."}, false
	case len([]rune(req.Body)) > 1600:
		return Reply{Status: http.StatusBadRequest, Code: 21617, Message: "The concatenated message body exceeds the 1600 character limit."}, false
	}
	return Reply{}, true
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func writeError(w http.ResponseWriter, r Reply) {
	if r.RetryAfter != "" {
		w.Header().Set("Retry-After", r.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(r.Status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"code": r.Code, "message": r.Message, "status": r.Status,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", r.Code),
	})
}
