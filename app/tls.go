package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/certs"
	"github.com/upswatch/upswatch/keyring"
	"github.com/upswatch/upswatch/registry"
)

// deviceCredentials rotates passwords (registry) and revokes
// certificates (revocation list) for the API.
type deviceCredentials struct {
	*registry.Registry
	*registry.Revocations
}

// mqttTLS returns the embedded broker's TLS configuration and device CAs
// (nil, nil without mqtt.cert_file).
func (a *App) mqttTLS() (*tls.Config, *x509.CertPool, error) {
	m := a.cfg.MQTT
	if m.CertFile == "" {
		return nil, nil, nil
	}
	rl, err := certs.NewReloader(m.CertFile, m.KeyFile, a.log.With("listener", "mqtt"))
	if err != nil {
		return nil, nil, fmt.Errorf("mqtt.cert_file: %w", err)
	}
	var pool *x509.CertPool
	if m.ClientCA != "" {
		if pool, err = certs.LoadPool(m.ClientCA); err != nil {
			return nil, nil, fmt.Errorf("mqtt.client_ca: %w", err)
		}
	}
	return certs.ServerConfig(rl), pool, nil
}

// httpTLS returns the HTTPS configuration (nil without http.cert_file).
func (a *App) httpTLS() (*tls.Config, error) {
	if a.cfg.HTTP.CertFile == "" {
		return nil, nil
	}
	rl, err := certs.NewReloader(a.cfg.HTTP.CertFile, a.cfg.HTTP.KeyFile, a.log.With("listener", "http"))
	if err != nil {
		return nil, fmt.Errorf("http.cert_file: %w", err)
	}
	return certs.ServerConfig(rl), nil
}

// connectFailures is the limiter of failed MQTT CONNECTs (nil: off).
// It stays in memory, per instance, unlike the console's: it sits on the
// device connection path, where a NATS round trip per CONNECT during a
// reconnect storm (a site's power back, hundreds of units at once) would
// slow every device and load NATS just when it is busiest. A guesser
// spreading over N instances gets N times a budget of a handful a minute.
func (a *App) connectFailures() *access.FailureLimiter {
	m := a.cfg.MQTT
	if m.ConnectFailuresPerUnit == 0 {
		return nil
	}
	return access.NewFailureLimiter(m.ConnectFailuresPerUnit, m.ConnectFailuresPerAddress, m.ConnectFailureRefill)
}

// openLoginLimiter opens the console's limiter of failed sign-ins (5 per
// account, 20 per address, one back every 3 minutes), shared by every
// instance on the NATS through upswatch_login_failures so that spreading
// guesses over instances gains nothing; its counts exported.
func (a *App) openLoginLimiter(ctx context.Context, js jetstream.JetStream, keys *keyring.Keyring, reg prometheus.Registerer) (*access.SharedFailureLimiter, error) {
	l, err := access.OpenSharedFailureLimiter(ctx, js, access.SharedLimiterOptions{
		AccountBurst: 5, AddrBurst: 20, Every: 3 * time.Minute, Replicas: a.cfg.NATS.Replicas,
		Logger: a.log.With("component", "console"), Pseudonym: keys.BlindIndex,
	})
	if err != nil {
		return nil, err
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_console_login_failures_total",
			Help: "Failed console sign-ins."}, func() float64 { f, _, _ := l.Counts(); return float64(f) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_console_logins_throttled_total",
			Help: "Console sign-ins refused unchecked: too many failures for the account or from the address."},
			func() float64 { _, t, _ := l.Counts(); return float64(t) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_console_login_limiter_unavailable_total",
			Help: "Console sign-in limit checks or records answered per instance, the shared bucket unreachable or slow."},
			func() float64 { _, _, u := l.Counts(); return float64(u) }))
	return l, nil
}

// warnPlain logs a warning for a plain-text listener bound to an address
// other hosts can reach: credentials and readings cross the network in
// clear.
func (a *App) warnPlain(key, addr string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return
	}
	a.log.Warn("plain-text listener reachable from the network: passwords and readings travel unencrypted; "+
		"bind it to 127.0.0.1 or configure a certificate", "key", key, "addr", addr)
}
