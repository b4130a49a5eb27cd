package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// retryPolicy says how a failed component is run again.
type retryPolicy struct {
	// Initial and Max bound the wait before each new run (doubling).
	Initial, Max time.Duration
	// Healthy: a run that lasted this long ends a failure streak (the
	// backoff starts over).
	Healthy time.Duration
	// GiveUpAfter: a failure streak this long cannot heal by retrying;
	// upswatch stops with an error so that its supervisor restarts it.
	GiveUpAfter time.Duration
}

var defaultRetry = retryPolicy{Initial: time.Second, Max: 30 * time.Second, Healthy: time.Minute, GiveUpAfter: 5 * time.Minute}

// supervisor runs the background components: one that fails is logged,
// reported not ready and run again with backoff; one that keeps failing
// stops the daemon (fatal).
type supervisor struct {
	log      *slog.Logger
	policy   retryPolicy
	restarts *prometheus.CounterVec

	fatalOnce sync.Once
	fatal     chan error // receives the first give-up

	mu      sync.Mutex
	failing map[string]error
}

func newSupervisor(log *slog.Logger, policy retryPolicy, reg prometheus.Registerer) (*supervisor, error) {
	s := &supervisor{log: log, policy: policy, fatal: make(chan error, 1), failing: map[string]error{},
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "upswatch_component_restarts_total",
			Help: "Runs of a component started again after it failed."}, []string{"component"})}
	if err := reg.Register(s.restarts); err != nil {
		return nil, fmt.Errorf("supervisor metrics: %w", err)
	}
	return s, nil
}

// Fatal receives the error of a component that could not heal.
func (s *supervisor) Fatal() <-chan error { return s.fatal }

// OK reports whether name is not between a failure and its next run.
func (s *supervisor) OK(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failing[name] == nil
}

// giveUp stops the daemon with err (the first one given wins).
func (s *supervisor) giveUp(err error) {
	s.fatalOnce.Do(func() { s.fatal <- err })
}

// check is a readiness check of a supervised component: not failing, and
// ready by its own account.
func (s *supervisor) check(name string, ready func() bool) func() bool {
	return func() bool { return s.OK(name) && ready() }
}

func (s *supervisor) setFailing(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.failing, name)
	} else {
		s.failing[name] = err
	}
}

// run runs fn until ctx is done. A return before that, with an error or
// without, is a failure: fn runs again after a backoff, until failures
// have lasted GiveUpAfter.
func (s *supervisor) run(ctx context.Context, name string, fn func(context.Context) error) {
	backoff := s.policy.Initial
	var streak time.Time // start of the current failure streak
	for {
		began := time.Now()
		err := fn(ctx)
		if ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("component stopped with an error", "component", name, "err", err)
			}
			return
		}
		if err == nil {
			err = errors.New("stopped on its own")
		}
		if time.Since(began) >= s.policy.Healthy || streak.IsZero() {
			streak, backoff = began, s.policy.Initial
		}
		s.setFailing(name, err)
		if failing := time.Since(streak); failing >= s.policy.GiveUpAfter {
			s.log.Error("component keeps failing; stopping upswatch", "component", name,
				"failing_for", failing.Round(time.Second).String(), "err", err)
			s.giveUp(fmt.Errorf("%s failing for %s, not retried further: %w", name, failing.Round(time.Second), err))
			return
		}
		s.log.Error("component failed; retrying", "component", name, "retry_in", backoff.String(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, s.policy.Max)
		s.restarts.WithLabelValues(name).Inc()
		s.setFailing(name, nil)
	}
}
