// Package influx is the InfluxDB history backend: store.History on
// InfluxDB 2.x, or 1.8+ through its v2 compatibility API (bucket
// "database/retention-policy", token "user:password" or empty).
//
// Schema, one point per reading and measurement, keyed by (serial, time)
// at millisecond precision so a redelivered reading overwrites itself:
//
//	ups_reading,serial=<serial> <numeric NUT variable>=<float>...,status="<ups.status>" <ms>
//	ups_text,serial=<serial> <text NUT variable>="<value>"... <ms>
//	ups_presence,serial=<serial> state="online"|"offline" <ms>
//
// Writes go through the client's blocking write API, one HTTP request
// per chunk of Config.BatchSize points, so WriteReadings returns only
// after InfluxDB accepted every chunk. Errors are classified:
//
//   - bad data (HTTP 400/422: a field type conflict, a partial write,
//     points beyond retention) is dropped and counted in
//     upswatch_store_dropped_total{backend="influx",reason}; the
//     rest of the batch is written and WriteReadings returns nil, so one
//     bad point cannot wedge the stream;
//   - 401/403 (bad token) and 404 (no such bucket) are configuration
//     problems: returned as errors and logged loudly;
//   - 429, 5xx, timeouts and network errors wrap store.ErrUnavailable.
package influx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/ups"
)

// Defaults for Config.
const (
	DefaultBatchSize = 5000
	DefaultTimeout   = 10 * time.Second
)

// Config configures a Store.
type Config struct {
	// URL of the server, e.g. http://influxdb:8086.
	URL string
	// Token: a 2.x API token, or "user:password" for 1.8 with auth
	// enabled, or empty. Secret: never logged.
	Token string
	// Org is required by 2.x, ignored by 1.8.
	Org string
	// Bucket: a 2.x bucket name, or "database/retention-policy" on 1.8
	// ("database" alone uses the default policy).
	Bucket string
	// BatchSize is the most points one HTTP write carries;
	// DefaultBatchSize when zero.
	BatchSize int
	// Timeout bounds every HTTP request; DefaultTimeout when zero.
	Timeout time.Duration
	// Logger; one that discards when nil.
	Logger *slog.Logger
	// Registerer for the store's metrics; none registered when nil.
	Registerer prometheus.Registerer
}

// Store is the InfluxDB history store. It is safe for concurrent use.
type Store struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	http   *http.Client
	client influxdb2.Client
	write  api.WriteAPIBlocking
	query  api.QueryAPI
	// v1 is set when the server said it is InfluxDB 1.x: deletes then go
	// through InfluxQL, which 1.8 has and its v2 API lacks.
	v1      bool
	version string

	encoders sync.Pool // *encoder
	texts    textCache
	now      func() time.Time // the text cache's clock (tests set it)
}

var _ store.History = (*Store)(nil)

// New validates cfg, connects to the server and asks its version (GET
// /ping). It fails, wrapping store.ErrUnavailable, when the server does
// not answer within cfg.Timeout: a daemon misconfigured with a wrong URL
// should say so at start, not on its first write.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("influx store: %w", err)
	}
	hc := &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          16,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout,
			ForceAttemptHTTP2:     true,
		},
	}
	opts := influxdb2.DefaultOptions().
		SetHTTPClient(hc).
		SetPrecision(time.Millisecond).
		SetBatchSize(uint(cfg.BatchSize)).
		SetMaxRetries(0).
		SetApplicationName("upswatch")
	client := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	s := &Store{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "store", "backend", "influx"),
		m:      m,
		http:   hc,
		client: client,
		write:  client.WriteAPIBlocking(cfg.Org, cfg.Bucket),
		query:  client.QueryAPI(cfg.Org),
	}
	s.now = time.Now
	s.encoders.New = func() any { return &encoder{drop: s.countDropped, texts: map[ups.Serial]textMark{}} }
	if err := s.ping(ctx); err != nil {
		client.Close()
		return nil, err
	}
	if !s.v1 && cfg.Org == "" {
		client.Close()
		return nil, fmt.Errorf("influx store: server %s is InfluxDB %s: org is required", cfg.URL, s.version)
	}
	s.log.Info("influx store ready", "url", cfg.URL, "bucket", cfg.Bucket, "server_version", s.version)
	return s, nil
}

func (c *Config) validate() error {
	if c.URL == "" {
		return errors.New("influx store: url is required")
	}
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return fmt.Errorf("influx store: url %q must start with http:// or https://", c.URL)
	}
	c.URL = strings.TrimRight(c.URL, "/")
	if c.Bucket == "" {
		return errors.New("influx store: bucket is required")
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("influx store: batch size %d must not be negative", c.BatchSize)
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Timeout < 0 {
		return fmt.Errorf("influx store: timeout %v must not be negative", c.Timeout)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ping learns the server's version from /ping's X-Influxdb-Version
// header: "1.8.10" on 1.x, "v2.7.x" or "2.7.x" on 2.x.
func (s *Store) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL+"/ping", nil)
	if err != nil {
		return fmt.Errorf("influx store: ping: %w", err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("influx store: ping %s: %w: %w", s.cfg.URL, store.ErrUnavailable, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("influx store: ping %s: %w: %s", s.cfg.URL, store.ErrUnavailable, resp.Status)
	}
	s.version = resp.Header.Get("X-Influxdb-Version")
	s.v1 = strings.HasPrefix(strings.TrimPrefix(s.version, "v"), "1.")
	return nil
}

// Close releases idle connections.
func (s *Store) Close() error {
	s.client.Close()
	s.http.CloseIdleConnections()
	return nil
}

func (s *Store) countDropped(reason string, n int) {
	s.m.Dropped.WithLabelValues(reason).Add(float64(n))
}
