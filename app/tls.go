package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/certs"
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
func (a *App) connectFailures() *access.FailureLimiter {
	m := a.cfg.MQTT
	if m.ConnectFailuresPerUnit == 0 {
		return nil
	}
	return access.NewFailureLimiter(m.ConnectFailuresPerUnit, m.ConnectFailuresPerAddress, m.ConnectFailureRefill)
}

// loginLimiter is the console's limiter of failed sign-ins (5 per
// account, 20 per address, one back every 3 minutes), its counts
// exported.
func loginLimiter(reg prometheus.Registerer) *access.FailureLimiter {
	l := access.NewFailureLimiter(5, 20, 3*time.Minute)
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_console_login_failures_total",
			Help: "Failed console sign-ins."}, func() float64 { f, _ := l.Counts(); return float64(f) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "upswatch_console_logins_throttled_total",
			Help: "Console sign-ins refused unchecked: too many failures for the account or from the address."},
			func() float64 { _, t := l.Counts(); return float64(t) }))
	return l
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
