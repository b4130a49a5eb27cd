// Package apns delivers notifications to iOS devices through the Apple Push
// Notification service with github.com/sideshow/apns2, token (.p8) auth.
package apns

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/internal/provider"
)

// Channel is this provider's channel name.
const Channel = "apns"

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("apns: invalid config")

// APNs limits apns-collapse-id to 64 bytes.
const maxCollapseID = 64

// Config configures the APNS sender.
type Config struct {
	// KeyFile is the .p8 token-auth key (PKCS#8 PEM). Key, if set, is used
	// instead (key material held elsewhere, e.g. a secret store).
	KeyFile string
	Key     []byte
	// KeyID and TeamID identify the key in the Apple developer account.
	KeyID  string
	TeamID string
	// Topic is the app's bundle id.
	Topic string
	// Endpoint is the APNs host; empty means production
	// (https://api.push.apple.com).
	Endpoint string
	// CAFile is a PEM bundle trusted instead of the system roots, for a
	// staging server or a fake.
	CAFile string
	// Concurrency bounds the pushes in flight per Send; APNs multiplexes
	// them over one HTTP/2 connection. Default 32.
	Concurrency int
}

func (c Config) validate() error {
	var missing []string
	if c.KeyFile == "" && len(c.Key) == 0 {
		missing = append(missing, "key_file")
	}
	for _, f := range []struct{ name, v string }{{"key_id", c.KeyID}, {"team_id", c.TeamID}, {"topic", c.Topic}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s required", ErrInvalidConfig, strings.Join(missing, ", "))
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "https://") {
		return fmt.Errorf("%w: endpoint %q must be an https:// URL (APNs is HTTP/2 over TLS)", ErrInvalidConfig, c.Endpoint)
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("%w: concurrency must not be negative", ErrInvalidConfig)
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

// Sender sends through APNs. It is safe for concurrent use.
type Sender struct {
	client      *apns2.Client
	topic       string
	concurrency int
	reg         prometheus.Registerer
	log         *slog.Logger
	metrics     *provider.Metrics
	now         func() time.Time
}

var _ notify.Sender = (*Sender)(nil)

// New validates cfg, loads the key and CA file and builds the client. It
// opens no connection.
func New(cfg Config, opts ...Option) (*Sender, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Sender{topic: cfg.Topic, concurrency: cfg.Concurrency, log: slog.New(slog.DiscardHandler), now: time.Now}
	if s.concurrency == 0 {
		s.concurrency = 32
	}
	for _, o := range opts {
		o(s)
	}

	var key *ecdsa.PrivateKey
	var err error
	if len(cfg.Key) > 0 {
		key, err = token.AuthKeyFromBytes(cfg.Key)
	} else {
		key, err = token.AuthKeyFromFile(cfg.KeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: auth key: %w", ErrInvalidConfig, err)
	}
	tok := &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
	// apns2 ignores a signing failure and sends an empty bearer; fail here.
	if _, err := tok.Generate(); err != nil {
		return nil, fmt.Errorf("%w: sign provider token: %w", ErrInvalidConfig, err)
	}

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pemBytes, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca_file: %w", ErrInvalidConfig, err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%w: ca_file %s holds no PEM certificate", ErrInvalidConfig, cfg.CAFile)
		}
		tlsConf.RootCAs = roots
	}
	s.client = apns2.NewTokenClient(tok)
	s.client.Host = apns2.HostProduction
	if cfg.Endpoint != "" {
		s.client.Host = strings.TrimSuffix(cfg.Endpoint, "/")
	}
	s.client.HTTPClient = &http.Client{
		Transport: &retryAfterTransport{base: &http2.Transport{
			TLSClientConfig: tlsConf,
			ReadIdleTimeout: apns2.ReadIdleTimeout,
		}},
		Timeout: apns2.HTTPClientTimeout,
	}
	if s.metrics, err = provider.NewMetrics(s.reg); err != nil {
		return nil, fmt.Errorf("apns: metrics: %w", err)
	}
	return s, nil
}

// Channel returns "apns".
func (s *Sender) Channel() string { return Channel }

// MaxBatch is a soft bound: APNs has no batch call, Send pushes one request
// per token, Concurrency at a time.
func (s *Sender) MaxBatch() int { return 1000 }

// Close drops idle connections to APNs.
func (s *Sender) Close() { s.client.CloseIdleConnections() }

// Send pushes m to every device token.
func (s *Sender) Send(ctx context.Context, m notify.Message, tokens []string) []notify.Result {
	results := make([]notify.Result, len(tokens))
	for i, t := range tokens {
		results[i].To = t
	}
	now := s.now()
	if !m.Expires.IsZero() && !m.Expires.After(now) {
		for i := range results {
			results[i].Outcome, results[i].Err, results[i].ProviderResponse = notify.Failed, notify.ErrExpired, "expired"
			s.metrics.Observe(Channel, notify.Failed)
		}
		return results
	}
	body, err := buildPayload(m)
	if err != nil {
		for i := range results {
			results[i].Outcome, results[i].Err, results[i].ProviderResponse = notify.Failed, err, "bad payload"
			s.metrics.Observe(Channel, notify.Failed)
		}
		return results
	}
	priority := apns2.PriorityLow
	if m.Critical {
		priority = apns2.PriorityHigh
	}
	tmpl := apns2.Notification{
		Topic:      s.topic,
		CollapseID: collapseID(m.CollapseKey),
		Priority:   priority,
		Expiration: m.Expires,
		PushType:   apns2.PushTypeAlert,
		Payload:    body,
	}

	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
	for i := range results {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.push(ctx, tmpl, &results[i])
		})
	}
	wg.Wait()
	return results
}

func (s *Sender) push(ctx context.Context, n apns2.Notification, r *notify.Result) {
	defer func() { s.metrics.Observe(Channel, r.Outcome) }()
	if r.To == "" {
		r.Outcome, r.Err, r.ProviderResponse = notify.Failed, errors.New("apns: empty device token"), "empty token"
		return
	}
	n.DeviceToken = r.To
	capture := &retryAfterCapture{}
	start := time.Now()
	resp, err := s.client.PushWithContext(context.WithValue(ctx, retryAfterKey{}, capture), &n)
	s.metrics.ObserveLatency(Channel, time.Since(start))
	if err != nil {
		// The client's error is a *url.Error whose URL holds the device
		// token: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		r.Outcome, r.ProviderResponse = notify.Retry, "network error"
		if ctx.Err() != nil {
			r.ProviderResponse = "cancelled"
		}
		r.Err = fmt.Errorf("apns: push: %w", err)
		return
	}
	r.Outcome, r.ProviderResponse = classify(resp)
	if r.Outcome == notify.Retry {
		r.RetryAfter = provider.RetryAfter(capture.header, s.now())
	}
	if r.Outcome != notify.Delivered {
		r.Err = fmt.Errorf("apns: push rejected: %s", r.ProviderResponse)
	}
}

// classify maps an APNs answer to an outcome and an audit summary.
func classify(resp *apns2.Response) (notify.Outcome, string) {
	summary := strconv.Itoa(resp.StatusCode)
	if resp.Reason != "" {
		summary += " " + resp.Reason
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return notify.Delivered, summary + " " + resp.ApnsID
	case resp.StatusCode == http.StatusGone,
		resp.Reason == apns2.ReasonUnregistered,
		resp.Reason == apns2.ReasonBadDeviceToken,
		resp.Reason == apns2.ReasonDeviceTokenNotForTopic:
		return notify.TokenGone, summary
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500,
		// apns2 renews the provider token before it expires; a clock skew
		// can still make APNs refuse it, and the next try has a new one.
		resp.Reason == apns2.ReasonExpiredProviderToken:
		return notify.Retry, summary
	default:
		return notify.Failed, summary
	}
}

// buildPayload renders the aps dictionary once per Send.
func buildPayload(m notify.Message) ([]byte, error) {
	p := payload.NewPayload().AlertTitle(m.Title).AlertBody(m.Body).Sound("default")
	if m.Critical {
		// time-sensitive breaks through Focus without Apple's critical-alert
		// entitlement.
		p.InterruptionLevel(payload.InterruptionLevelTimeSensitive)
	} else {
		p.InterruptionLevel(payload.InterruptionLevelActive)
	}
	if m.CollapseKey != "" {
		// Groups one unit's alerts in Notification Center.
		p.ThreadID(m.CollapseKey)
	}
	for k, v := range m.Data {
		if k == "aps" {
			continue
		}
		p.Custom(k, v)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("apns: encode payload: %w", err)
	}
	return b, nil
}

// collapseID keeps a collapse key within APNs' 64 bytes; a longer key is
// replaced by its hash, which still collapses equal keys.
func collapseID(key string) string {
	if len(key) <= maxCollapseID {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// apns2.Response drops the headers, so Retry-After is captured by the
// transport into a per-push holder carried in the request context.
type retryAfterKey struct{}

type retryAfterCapture struct{ header http.Header }

type retryAfterTransport struct{ base *http2.Transport }

func (t *retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if c, ok := req.Context().Value(retryAfterKey{}).(*retryAfterCapture); ok && resp != nil {
		c.header = resp.Header
	}
	return resp, err
}

// CloseIdleConnections lets apns2.Client.CloseIdleConnections reach the
// HTTP/2 transport.
func (t *retryAfterTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }
