// Package fakescript is the recording and scripting state the provider
// fakes (fcmfake, apnsfake, smsfake) share: the requests they received,
// and the replies a test scripted for one recipient, for everyone, or
// while the provider is "down", plus an answer delay. Each fake keeps only
// its wire protocol.
package fakescript

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Script records requests of type Req and hands out scripted replies of
// type Reply. Its methods are safe for concurrent use.
type Script[Req, Reply any] struct {
	name string

	mu      sync.Mutex
	reqs    []Req
	changed chan struct{} // closed and replaced on every recorded request
	perKey  map[string]Reply
	global  *Reply
	down    *Reply
	delay   time.Duration
}

// New returns an empty script; name prefixes its errors ("fcmfake").
func New[Req, Reply any](name string) *Script[Req, Reply] {
	return &Script[Req, Reply]{name: name, changed: make(chan struct{}), perKey: map[string]Reply{}}
}

// FailKey makes every request to one recipient (token, number) answer r.
func (s *Script[Req, Reply]) FailKey(key string, r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perKey[key] = r
}

// FailAll makes every request answer r (per-recipient scripts take
// precedence).
func (s *Script[Req, Reply]) FailAll(r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.global = &r
}

// Reset clears every scripted reply, the delay and the down state; the
// recorded requests are kept.
func (s *Script[Req, Reply]) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perKey = map[string]Reply{}
	s.global, s.down, s.delay = nil, nil, 0
}

// Down makes every request answer r until SetUp (it overrides every
// other script).
func (s *Script[Req, Reply]) Down(r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = &r
}

// SetUp ends Down.
func (s *Script[Req, Reply]) SetUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = nil
}

// SetDelay delays every answer by d (or until the client gives up).
func (s *Script[Req, Reply]) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Decide returns the reply scripted for a request to key (scripted false:
// none, answer success) and the delay to wait before answering.
func (s *Script[Req, Reply]) Decide(key string) (reply Reply, scripted bool, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r, ok := s.perKey[key]; {
	case s.down != nil:
		reply, scripted = *s.down, true
	case ok:
		reply, scripted = r, true
	case s.global != nil:
		reply, scripted = *s.global, true
	}
	return reply, scripted, s.delay
}

// Wait sleeps d, or until ctx (the client's request) ends.
func Wait(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Record appends a received request and wakes WaitRequests.
func (s *Script[Req, Reply]) Record(req Req) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Requests returns a copy of every request received so far, in arrival
// order.
func (s *Script[Req, Reply]) Requests() []Req {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Req(nil), s.reqs...)
}

// WaitRequests blocks until at least n requests were received or timeout
// passes, and returns the requests received so far; the error says which.
func (s *Script[Req, Reply]) WaitRequests(n int, timeout time.Duration) ([]Req, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, ch := len(s.reqs), s.changed
		if got >= n {
			out := append([]Req(nil), s.reqs...)
			s.mu.Unlock()
			return out, nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return s.Requests(), fmt.Errorf("%s: %d requests after %v, want %d", s.name, got, timeout, n)
		}
	}
}
