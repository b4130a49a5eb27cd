// Package ready is the readiness signal of a component whose Run may be
// called again after it failed: Run raises it once set up and lowers it
// when it returns, so whoever runs it again sees it not ready until the new
// run has set up.
package ready

import "sync"

// Signal is lowered at first. The zero value is ready to use.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
	up bool
}

func (s *Signal) chanLocked() chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// C is closed while the signal is raised. After Down, C returns a new
// channel; a channel once closed stays closed.
func (s *Signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chanLocked()
}

// Up raises the signal; raising it again is a no-op.
func (s *Signal) Up() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		close(s.chanLocked())
		s.up = true
	}
}

// Down lowers the signal; lowering it again is a no-op.
func (s *Signal) Down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up {
		s.ch = make(chan struct{})
		s.up = false
	}
}

// Now reports whether the signal is raised.
func (s *Signal) Now() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}
