// Package fcm delivers notifications to Android devices through Firebase
// Cloud Messaging (HTTP v1) with firebase.google.com/go/v4.
//
// Errors are classified into notify outcomes before they are wrapped: the
// firebase predicates (messaging.IsUnregistered...) use a type assertion
// and see nothing through fmt.Errorf("%w").
//
// The firebase client retries a 503 or a network error by itself, up to 4
// times within about 7 s (longer if the server's Retry-After asks for it, up
// to 2 min), inside SendEach; the caller's ctx bounds that. What is still
// failing afterwards comes back as notify.Retry for the pipeline's own
// backoff.
package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/option"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/internal/provider"
)

// Channel is this provider's channel name.
const Channel = "fcm"

// MaxBatch is the most messages firebase SendEach takes in one call.
const MaxBatch = 500

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("fcm: invalid config")

// Config configures the FCM sender.
type Config struct {
	// ProjectID is the Firebase project. Required.
	ProjectID string
	// CredentialsFile is a service account JSON key. Empty means
	// Application Default Credentials, or no authentication at all when
	// Endpoint is set (a local fake; never for the real FCM).
	CredentialsFile string
	// Endpoint is the base URL of an FCM-compatible server, e.g.
	// "http://127.0.0.1:8081" (the client appends "/v1"). Empty means
	// Google's.
	Endpoint string
	// ParallelBatches is how many SendEach calls of one Send run at once;
	// each keeps up to 50 requests in flight (the SDK's worker count), so
	// a 10,000-token storm is not 20 batches in a row. Default 4.
	ParallelBatches int
}

func (c Config) validate() error {
	if c.ProjectID == "" {
		return fmt.Errorf("%w: project_id is required", ErrInvalidConfig)
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
		return fmt.Errorf("%w: endpoint %q must be an http:// or https:// URL", ErrInvalidConfig, c.Endpoint)
	}
	if c.ParallelBatches < 0 {
		return fmt.Errorf("%w: parallel_batches must not be negative", ErrInvalidConfig)
	}
	return nil
}

// Option customises a Sender.
type Option func(*Sender)

// WithRegisterer registers the provider metrics on reg.
func WithRegisterer(reg prometheus.Registerer) Option { return func(s *Sender) { s.reg = reg } }

// WithLogger sets the logger (default: one that discards, as every
// component of ours does until given one).
func WithLogger(l *slog.Logger) Option { return func(s *Sender) { s.log = l } }

// Sender sends through FCM. It is safe for concurrent use.
type Sender struct {
	client   *messaging.Client
	project  string
	parallel int
	reg      prometheus.Registerer
	log      *slog.Logger
	metrics  *provider.Metrics
	now      func() time.Time
}

var _ notify.Sender = (*Sender)(nil)

// New validates cfg and builds the client. It opens no connection.
func New(ctx context.Context, cfg Config, opts ...Option) (*Sender, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Sender{project: cfg.ProjectID, parallel: cfg.ParallelBatches, log: slog.New(slog.DiscardHandler), now: time.Now}
	if s.parallel == 0 {
		s.parallel = 4
	}
	for _, o := range opts {
		o(s)
	}
	var copts []option.ClientOption
	if cfg.Endpoint != "" {
		copts = append(copts, option.WithEndpoint(strings.TrimSuffix(cfg.Endpoint, "/")+"/v1"))
	}
	switch {
	case cfg.CredentialsFile != "":
		copts = append(copts, option.WithCredentialsFile(cfg.CredentialsFile))
	case cfg.Endpoint != "":
		copts = append(copts, option.WithoutAuthentication())
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: cfg.ProjectID}, copts...)
	if err != nil {
		return nil, fmt.Errorf("fcm: new app: %w", err)
	}
	if s.client, err = app.Messaging(ctx); err != nil {
		return nil, fmt.Errorf("fcm: messaging client: %w", err)
	}
	if s.metrics, err = provider.NewMetrics(s.reg); err != nil {
		return nil, fmt.Errorf("fcm: metrics: %w", err)
	}
	return s, nil
}

// Channel returns "fcm".
func (s *Sender) Channel() string { return Channel }

// MaxBatch returns 500, SendEach's limit.
func (s *Sender) MaxBatch() int { return MaxBatch }

// Send delivers m to every token, MaxBatch tokens per SendEach call,
// ParallelBatches calls at a time.
func (s *Sender) Send(ctx context.Context, m notify.Message, tokens []string) []notify.Result {
	results := make([]notify.Result, len(tokens))
	for i, t := range tokens {
		results[i].To = t
	}
	sem := make(chan struct{}, s.parallel)
	var wg sync.WaitGroup
	for start := 0; start < len(tokens); start += MaxBatch {
		batch := results[start:min(start+MaxBatch, len(tokens))]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.sendBatch(ctx, m, batch)
		})
	}
	wg.Wait()
	for _, r := range results {
		s.metrics.Observe(Channel, r.Outcome)
	}
	return results
}

// sendBatch fills results (at most MaxBatch, To already set).
func (s *Sender) sendBatch(ctx context.Context, m notify.Message, results []notify.Result) {
	now := s.now()
	var ttl *time.Duration
	if !m.Expires.IsZero() {
		d := m.Expires.Sub(now).Truncate(time.Second)
		if d <= 0 {
			for i := range results {
				results[i].Outcome, results[i].Err, results[i].ProviderResponse = notify.Failed, notify.ErrExpired, "expired"
			}
			return
		}
		ttl = &d
	}
	priority := "normal"
	if m.Critical {
		priority = "high"
	}
	android := &messaging.AndroidConfig{CollapseKey: m.CollapseKey, Priority: priority, TTL: ttl}
	notification := &messaging.Notification{Title: m.Title, Body: m.Body}

	// An empty token would make SendEach reject the whole batch.
	msgs := make([]*messaging.Message, 0, len(results))
	idx := make([]int, 0, len(results))
	for i, r := range results {
		if r.To == "" {
			results[i].Outcome, results[i].Err, results[i].ProviderResponse = notify.Failed, errors.New("fcm: empty token"), "empty token"
			continue
		}
		msgs = append(msgs, &messaging.Message{Token: r.To, Data: m.Data, Notification: notification, Android: android})
		idx = append(idx, i)
	}
	if len(msgs) == 0 {
		return
	}

	start := time.Now()
	br, err := s.client.SendEach(ctx, msgs)
	s.metrics.ObserveLatency(Channel, time.Since(start))
	if err != nil {
		// Only validation or a cancelled ctx fails the whole call.
		outcome := notify.Failed
		if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			outcome = notify.Retry
		}
		s.log.Warn("fcm batch failed", "messages", len(msgs), "outcome", outcome.String(), "err", err)
		for _, i := range idx {
			results[i].Outcome, results[i].Err, results[i].ProviderResponse = outcome, fmt.Errorf("fcm: send batch: %w", err), "batch error"
		}
		return
	}
	counts := map[notify.Outcome]int{}
	for j, resp := range br.Responses {
		r := &results[idx[j]]
		if resp.Success {
			r.Outcome, r.ProviderResponse = notify.Delivered, "200 "+resp.MessageID
		} else {
			r.Outcome, r.RetryAfter, r.ProviderResponse = classify(resp.Error, now)
			r.Err = fmt.Errorf("fcm: send (%s): %w", r.ProviderResponse, resp.Error)
		}
		counts[r.Outcome]++
	}
	s.log.Debug("fcm batch sent", "messages", len(msgs), "delivered", counts[notify.Delivered],
		"retry", counts[notify.Retry], "failed", counts[notify.Failed], "token_gone", counts[notify.TokenGone])
}

// classify maps one message's error to an outcome. It must see the error
// exactly as firebase returned it.
func classify(err error, now time.Time) (notify.Outcome, time.Duration, string) {
	hr := errorutils.HTTPResponse(err)
	summary, retryAfter := describe(hr, now)
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return notify.Retry, 0, "cancelled"
	case hr == nil:
		// No HTTP response: a transport error the client already retried.
		return notify.Retry, 0, "network error"
	case messaging.IsUnregistered(err):
		return notify.TokenGone, 0, summary
	case messaging.IsInvalidArgument(err):
		// INVALID_ARGUMENT with an FcmError detail is about the token;
		// without the detail it is a malformed request (Failed below).
		return notify.TokenGone, 0, summary
	case messaging.IsQuotaExceeded(err), messaging.IsUnavailable(err), messaging.IsInternal(err),
		hr.StatusCode == http.StatusTooManyRequests, hr.StatusCode >= 500:
		return notify.Retry, retryAfter, summary
	default:
		// SENDER_ID_MISMATCH and THIRD_PARTY_AUTH_ERROR are configuration
		// faults: dropping tokens for them would wipe every device.
		return notify.Failed, 0, summary
	}
}

// describe summarises an FCM error response as "404 NOT_FOUND UNREGISTERED"
// and reads its Retry-After.
func describe(hr *http.Response, now time.Time) (string, time.Duration) {
	if hr == nil {
		return "", 0
	}
	var body struct {
		Error struct {
			Status  string `json:"status"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	if hr.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(hr.Body, 64<<10))
		_ = json.Unmarshal(b, &body) // a non-JSON error body still has a status code
	}
	parts := []string{strconv.Itoa(hr.StatusCode)}
	if body.Error.Status != "" {
		parts = append(parts, body.Error.Status)
	}
	for _, d := range body.Error.Details {
		if strings.HasSuffix(d.Type, "google.firebase.fcm.v1.FcmError") && d.ErrorCode != "" {
			parts = append(parts, d.ErrorCode)
		}
	}
	return strings.Join(parts, " "), provider.RetryAfter(hr.Header, now)
}
