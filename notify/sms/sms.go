// Package sms delivers notifications by SMS through a Twilio-compatible
// REST API (`POST {endpoint}/2010-04-01/Accounts/{sid}/Messages.json`, HTTP
// Basic auth, form To/From/Body), paced by a token bucket counted in
// segments, since carriers and Twilio rate-limit a sender per segment.
//
// Phone numbers and the auth token never appear in errors or logs; Mask
// keeps the last two digits for humans.
package sms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/internal/provider"
)

// Channel is this provider's channel name.
const Channel = "sms"

// DefaultEndpoint is Twilio's API.
const DefaultEndpoint = "https://api.twilio.com"

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("sms: invalid config")

// Twilio error codes that mean the number will never receive our SMS.
const (
	codeInvalidNumber = 21211 // invalid 'To' number
	codeOptedOut      = 21610 // recipient replied STOP
	codeNotMobile     = 21614 // 'To' is not a mobile number
	codeTooMany       = 20429
)

// Config configures the SMS sender.
type Config struct {
	// Endpoint is the API base URL; empty means DefaultEndpoint.
	Endpoint   string
	AccountSID string
	// AuthToken is a secret: it goes only into the Authorization header.
	AuthToken string
	// From is the sender number (E.164) or alphanumeric sender id. The
	// token bucket belongs to this sender.
	From string
	// SegmentsPerSecond is the sender's sustained rate (Twilio: 1 for a
	// long code, up to 100 for a short code). Default 1.
	SegmentsPerSecond float64
	// Burst is how many segments may go at once after a quiet period.
	// Default 1. A message longer than Burst waits for its segments in
	// Burst-sized steps.
	Burst int
	// Concurrency bounds the requests in flight per Send. Default 4.
	Concurrency int
	// Timeout bounds one HTTP request. Default 15 s.
	Timeout time.Duration
}

func (c Config) validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"account_sid", c.AccountSID}, {"auth_token", c.AuthToken}, {"from", c.From}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("%w: %s required", ErrInvalidConfig, strings.Join(missing, ", "))
	case c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://"):
		return fmt.Errorf("%w: endpoint %q must be an http:// or https:// URL", ErrInvalidConfig, c.Endpoint)
	case strings.ContainsAny(c.AccountSID, "/?#"):
		return fmt.Errorf("%w: account_sid must not contain '/', '?' or '#'", ErrInvalidConfig)
	case c.SegmentsPerSecond < 0 || c.Burst < 0 || c.Concurrency < 0 || c.Timeout < 0:
		return fmt.Errorf("%w: segments_per_second, burst, concurrency and timeout must not be negative", ErrInvalidConfig)
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

// WithHTTPClient replaces the HTTP client (its Timeout wins over Config's).
func WithHTTPClient(c *http.Client) Option { return func(s *Sender) { s.http = c } }

// Sender sends SMS through one sender number. It is safe for concurrent
// use; concurrent Sends share the sender's token bucket.
type Sender struct {
	messagesURL string
	accountSID  string
	authToken   string
	from        string
	concurrency int
	limiter     *rate.Limiter
	http        *http.Client
	reg         prometheus.Registerer
	log         *slog.Logger
	metrics     *provider.Metrics
}

var _ notify.Sender = (*Sender)(nil)

// New validates cfg and builds the sender. It opens no connection.
func New(cfg Config, opts ...Option) (*Sender, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if cfg.SegmentsPerSecond == 0 {
		cfg.SegmentsPerSecond = 1
	}
	if cfg.Burst == 0 {
		cfg.Burst = 1
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 4
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	s := &Sender{
		messagesURL: strings.TrimSuffix(cfg.Endpoint, "/") + "/2010-04-01/Accounts/" + url.PathEscape(cfg.AccountSID) + "/Messages.json",
		accountSID:  cfg.AccountSID,
		authToken:   cfg.AuthToken,
		from:        cfg.From,
		concurrency: cfg.Concurrency,
		limiter:     rate.NewLimiter(rate.Limit(cfg.SegmentsPerSecond), cfg.Burst),
		http:        &http.Client{Timeout: cfg.Timeout},
		log:         slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(s)
	}
	var err error
	if s.metrics, err = provider.NewMetrics(s.reg); err != nil {
		return nil, fmt.Errorf("sms: metrics: %w", err)
	}
	return s, nil
}

// Channel returns "sms".
func (s *Sender) Channel() string { return Channel }

// MaxBatch is a soft bound: one request per number; at a few segments per
// second a larger batch would only hold the caller longer.
func (s *Sender) MaxBatch() int { return 100 }

// Send texts m.Body to every number, waiting on the token bucket for each
// message's segments. The body is sent as given: render it with FitGSM
// first to keep it in GSM-7. A number whose turn would come after ctx's
// deadline gets Retry with RetryAfter set to the wait, without sending.
func (s *Sender) Send(ctx context.Context, m notify.Message, numbers []string) []notify.Result {
	results := make([]notify.Result, len(numbers))
	for i, n := range numbers {
		results[i].To = n
	}
	segments, _ := Segments(m.Body)
	failAll := func(err error, resp string) []notify.Result {
		for i := range results {
			results[i].Outcome, results[i].Err, results[i].ProviderResponse = notify.Failed, err, resp
			s.metrics.Observe(Channel, notify.Failed)
		}
		return results
	}
	switch {
	case !m.Expires.IsZero() && !m.Expires.After(time.Now()):
		return failAll(notify.ErrExpired, "expired")
	case segments == 0:
		return failAll(errors.New("sms: empty body"), "empty body")
	}

	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
	for i := range results {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.sendOne(ctx, m.Body, segments, &results[i])
			s.metrics.Observe(Channel, results[i].Outcome)
		})
	}
	wg.Wait()
	return results
}

func (s *Sender) sendOne(ctx context.Context, body string, segments int, r *notify.Result) {
	if r.To == "" {
		r.Outcome, r.Err, r.ProviderResponse = notify.Failed, errors.New("sms: empty number"), "empty number"
		return
	}
	if wait, err := s.take(ctx, segments); err != nil {
		r.Outcome, r.RetryAfter, r.ProviderResponse = notify.Retry, wait, "rate limited locally"
		r.Err = fmt.Errorf("sms: wait for %d segments: %w", segments, err)
		return
	}
	form := url.Values{"To": {r.To}, "From": {s.from}, "Body": {body}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.messagesURL, strings.NewReader(form.Encode()))
	if err != nil {
		r.Outcome, r.Err, r.ProviderResponse = notify.Failed, fmt.Errorf("sms: build request: %w", err), "bad request"
		return
	}
	req.SetBasicAuth(s.accountSID, s.authToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	start := time.Now()
	resp, err := s.http.Do(req)
	s.metrics.ObserveLatency(Channel, time.Since(start))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL adds nothing; keep errors short
		}
		r.Outcome, r.ProviderResponse, r.Err = notify.Retry, "network error", fmt.Errorf("sms: post message: %w", err)
		s.log.Warn("sms send failed", "to", Mask(r.To), "outcome", r.Outcome.String(), "err", r.Err)
		return
	}
	defer resp.Body.Close()
	s.classify(resp, r)
	if r.Outcome != notify.Delivered {
		s.log.Warn("sms send failed", "to", Mask(r.To), "outcome", r.Outcome.String(), "provider_response", r.ProviderResponse)
	}
}

// twilioResponse covers both the message resource and the error body.
type twilioResponse struct {
	SID     string `json:"sid"`
	Status  any    `json:"status"` // "queued" on success, the HTTP status (a number) on error
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (s *Sender) classify(resp *http.Response, r *notify.Result) {
	var tr twilioResponse
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = json.Unmarshal(b, &tr) // a proxy's HTML error page still has a status code

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		status, _ := tr.Status.(string)
		r.Outcome, r.ProviderResponse = notify.Delivered, strings.TrimSpace(fmt.Sprintf("%d %s %s", resp.StatusCode, tr.SID, status))
		return
	}
	r.ProviderResponse = strconv.Itoa(resp.StatusCode)
	if tr.Code != 0 {
		r.ProviderResponse += " " + strconv.Itoa(tr.Code)
	}
	switch {
	case tr.Code == codeOptedOut, tr.Code == codeInvalidNumber, tr.Code == codeNotMobile:
		r.Outcome = notify.TokenGone
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500, tr.Code == codeTooMany:
		r.Outcome = notify.Retry
		r.RetryAfter = provider.RetryAfter(resp.Header, time.Now())
	default:
		r.Outcome = notify.Failed
	}
	// Twilio's messages quote the number ("The 'To' number +84... is not
	// valid"): mask every digit run before it reaches an error.
	r.Err = fmt.Errorf("sms: provider error %s: %s", r.ProviderResponse, maskNumbers(tr.Message))
}

// take waits until the bucket holds n segments, in steps of at most Burst.
// On failure (ctx done, or its deadline too close) it returns the wait that
// was still needed, with every reservation not yet waited for given back.
func (s *Sender) take(ctx context.Context, n int) (time.Duration, error) {
	for n > 0 {
		k := min(n, s.limiter.Burst())
		now := time.Now()
		res := s.limiter.ReserveN(now, k)
		if !res.OK() {
			return 0, fmt.Errorf("bucket cannot hold %d segments", k)
		}
		if d := res.DelayFrom(now); d > 0 {
			if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
				res.CancelAt(now)
				return d, context.DeadlineExceeded
			}
			if err := sleepCtx(ctx, d); err != nil {
				res.CancelAt(time.Now())
				return d, err
			}
		}
		n -= k
	}
	return 0, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Mask hides a phone number for logs: every digit but the last two becomes
// '*' ("+84912345678" -> "+*********78").
func Mask(number string) string {
	digits := 0
	for _, c := range number {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	var b strings.Builder
	b.Grow(len(number))
	seen := 0
	for _, c := range number {
		if c >= '0' && c <= '9' {
			seen++
			if seen <= digits-2 {
				c = '*'
			}
		}
		b.WriteRune(c)
	}
	return b.String()
}

// A phone number inside provider text: 6 or more digits, maybe with a
// leading + and separators.
var numberRun = regexp.MustCompile(`\+?\d[\d \-().]{4,}\d`)

func maskNumbers(s string) string { return numberRun.ReplaceAllStringFunc(s, Mask) }
