// Package agent is upswatch-agent: it reads UPS from upsd (Network UPS
// Tools) and publishes them to upswatch per the device contract.
//
// One poller reads every unit from upsd each `poll`. Each unit has its
// own MQTT session (username = serial, its own last will) and a sender
// that publishes the full reading every `interval` and at once when
// ups.status changes, buffers on disk what the broker does not
// acknowledge, and replays the buffer oldest first as JSON arrays before
// any live reading. After `stale_after` failed or stale polls in a row a
// unit is announced `offline` (retained), and `online` again when data
// flows.
//
// The package imports none of upswatch's server packages: the agent is a
// small binary for a Raspberry Pi beside the UPS.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/upswatch/upswatch/agent/buffer"
	"github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/agent/nut"
)

// Agent is one running upswatch-agent.
type Agent struct {
	cfg config.Config
	log *slog.Logger

	mu    sync.Mutex
	units []*unit
	ready chan struct{}
}

// New validates the configuration; Run starts everything.
func New(cfg config.Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, log: log, ready: make(chan struct{})}, nil
}

// Ready is closed once every unit's serial is known and its sender runs.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// NUTOptions turns the nut section into client options.
func NUTOptions(c config.NUT, timeout time.Duration) (nut.Options, error) {
	o := nut.Options{Username: c.Username, Password: c.Password, TLS: nut.TLSMode(c.TLS), Timeout: timeout}
	if c.CAFile != "" {
		pool, err := loadCA(c.CAFile)
		if err != nil {
			return o, fmt.Errorf("nut.ca_file: %w", err)
		}
		o.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return o, nil
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// pollTimeout bounds one upsd exchange: the poll period, at least 1 s
// and at most 10 s; an exchange that takes longer is a failed poll.
func (a *Agent) pollTimeout() time.Duration {
	return min(max(a.cfg.Poll, time.Second), 10*time.Second)
}

// Run reads and publishes until ctx is done, then disconnects cleanly
// (the last will is not sent on a clean stop; the units are announced
// offline first).
func (a *Agent) Run(ctx context.Context) error {
	nopts, err := NUTOptions(a.cfg.NUT, a.pollTimeout())
	if err != nil {
		return err
	}
	tlsCfg, err := BrokerTLS(a.cfg.Broker)
	if err != nil {
		return err
	}
	p := &poller{cfg: a.cfg, opts: nopts, log: a.log}
	defer p.close()

	serials, err := a.resolveSerials(ctx, p)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for upsd
		}
		return err
	}
	var units []*unit
	defer func() {
		for _, u := range units {
			u.buf.Close()
		}
	}()
	for i, uc := range a.cfg.Units {
		buf, err := buffer.Open(buffer.Options{
			Dir: filepath.Join(a.cfg.Buffer.Dir, serials[i]), MaxBytes: a.cfg.Buffer.MaxBytes,
			MaxAge: a.cfg.Buffer.MaxAge, Logger: a.log.With("serial", serials[i]),
		})
		if err != nil {
			return fmt.Errorf("unit %s: %w", uc.UPS, err)
		}
		units = append(units, newUnit(a.cfg, uc, serials[i], buf, tlsCfg, a.log))
		if certFile, keyFile := a.cfg.Certificate(uc); certFile != "" {
			a.logCertificate(uc.UPS, serials[i], certFile, keyFile)
		}
	}
	a.mu.Lock()
	a.units = units
	a.mu.Unlock()

	var wg sync.WaitGroup
	sctx, stopSenders := context.WithCancel(context.WithoutCancel(ctx))
	for _, u := range units {
		wg.Add(1)
		go func() { defer wg.Done(); u.run(sctx) }()
	}
	close(a.ready)
	a.log.Info("upswatch-agent running", "units", len(units), "nut", a.cfg.NUT.Addr, "broker", a.cfg.Broker.URL,
		"poll", a.cfg.Poll, "interval", a.cfg.Interval)
	p.run(ctx, units)
	stopSenders()
	wg.Wait()
	a.log.Info("upswatch-agent stopped")
	return nil
}

// certWarning: a client certificate expiring sooner than this is worth a
// warning at start.
const certWarning = 30 * 24 * time.Hour

// logCertificate says which client certificate a unit presents, and
// warns of what will make the broker refuse it.
func (a *Agent) logCertificate(ups, serial, certFile, keyFile string) {
	log := a.log.With("ups", ups, "serial", serial, "cert_file", certFile)
	cert, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		log.Error("cannot read the unit's client certificate; the broker will refuse the unit", "err", err)
		return
	}
	now := time.Now()
	switch p := cert.Problem(serial, now); {
	case p != "":
		log.Error("the broker will refuse the unit's client certificate", "problem", p)
	case cert.Leaf.NotAfter.Sub(now) < certWarning:
		log.Warn("the unit's client certificate expires soon; renew it (the agent reads the new files at the next connection)",
			"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	default:
		log.Info("client certificate", "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	}
}

// resolveSerials returns each unit's serial: configured, or read from
// upsd (ups.serial, then device.serial) when it has 12 or 16 digits. It
// waits for upsd while a serial must be read from it.
func (a *Agent) resolveSerials(ctx context.Context, p *poller) ([]string, error) {
	serials := make([]string, len(a.cfg.Units))
	missing := 0
	for i, u := range a.cfg.Units {
		serials[i] = u.Serial
		if u.Serial == "" {
			missing++
		}
	}
	for wait := time.Duration(0); missing > 0; wait = min(max(2*wait, a.cfg.Poll), time.Minute) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		for i, u := range a.cfg.Units {
			if serials[i] != "" {
				continue
			}
			s, err := p.serialOf(ctx, u.UPS)
			if err != nil {
				a.log.Warn("cannot read the UPS's serial yet", "ups", u.UPS, "err", err)
				continue
			}
			serials[i] = s
			missing--
		}
	}
	seen := map[string]string{}
	for i, s := range serials {
		if other, dup := seen[s]; dup {
			return nil, fmt.Errorf("units %s and %s have the same serial %s; set units[].serial", other, a.cfg.Units[i].UPS, s)
		}
		seen[s] = a.cfg.Units[i].UPS
	}
	return serials, nil
}

// ErrNoSerial: the UPS reports no serial upswatch accepts.
var ErrNoSerial = errors.New("the UPS reports no 12 or 16 digit ups.serial or device.serial; set units[].serial")

// SerialFromVars picks the serial a UPS reports itself.
func SerialFromVars(vars []nut.Var) (string, error) {
	for _, name := range []string{"ups.serial", "device.serial"} {
		for _, v := range vars {
			if v.Name == name && config.ValidSerial(strings.TrimSpace(v.Value)) {
				return strings.TrimSpace(v.Value), nil
			}
		}
	}
	return "", ErrNoSerial
}

// UnitStats are a unit's counters.
type UnitStats struct {
	UPS, Serial   string
	Published     int64 // readings acknowledged by the broker (live and replayed)
	Replayed      int64 // of which from the buffer
	Buffer        buffer.Stats
	Online        bool // as last announced
	FailedPolls   int  // in a row
	ReadingsTaken int64
	// BrokerError: why the last connection to the broker failed (a
	// refused certificate or password, or the network); empty once
	// connected.
	BrokerError string
}

// Stats returns every unit's counters (empty before Ready).
func (a *Agent) Stats() []UnitStats {
	a.mu.Lock()
	units := a.units
	a.mu.Unlock()
	out := make([]UnitStats, 0, len(units))
	for _, u := range units {
		out = append(out, u.stats())
	}
	return out
}
