package agent

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/upswatch/upswatch/agent/config"
	"github.com/upswatch/upswatch/agent/nut"
)

// poller reads every unit from upsd over one connection, reconnecting
// when it breaks.
type poller struct {
	cfg    config.Config
	opts   nut.Options
	log    *slog.Logger
	client *nut.Client
	down   bool // upsd unreachable at the last attempt (logged once)
	seen   bool // connected at least once
}

func (p *poller) conn(ctx context.Context) (*nut.Client, error) {
	if p.client != nil {
		return p.client, nil
	}
	c, err := nut.Dial(ctx, p.cfg.NUT.Addr, p.opts)
	if err != nil {
		if !p.down {
			p.log.Warn("upsd unreachable", "addr", p.cfg.NUT.Addr, "err", err)
		}
		p.down = true
		return nil, err
	}
	if p.down || !p.seen {
		// Once, and after each outage: with nut.tls auto an operator
		// learns here whether the session is encrypted.
		p.log.Info("connected to upsd", "addr", p.cfg.NUT.Addr, "tls", c.TLS())
	}
	p.down, p.seen = false, true
	p.client = c
	return c, nil
}

func (p *poller) close() {
	if p.client != nil {
		p.client.Close()
		p.client = nil
	}
}

// read lists one UPS's variables. A broken connection is dropped so the
// next read reconnects; an ERR answer (stale data, unknown UPS) keeps it.
func (p *poller) read(ctx context.Context, ups string) ([]nut.Var, error) {
	c, err := p.conn(ctx)
	if err != nil {
		return nil, err
	}
	vars, err := c.ListVars(ctx, ups)
	if err != nil {
		var nerr *nut.Error
		if !asNUTError(err, &nerr) {
			p.close()
		}
		return nil, err
	}
	return vars, nil
}

func (p *poller) serialOf(ctx context.Context, ups string) (string, error) {
	vars, err := p.read(ctx, ups)
	if err != nil {
		return "", err
	}
	return SerialFromVars(vars)
}

// run polls every unit each cfg.Poll until ctx is done.
func (p *poller) run(ctx context.Context, units []*unit) {
	t := time.NewTicker(p.cfg.Poll)
	defer t.Stop()
	for {
		for _, u := range units {
			if ctx.Err() != nil {
				return
			}
			at := time.Now()
			vars, err := p.read(ctx, u.cfg.UPS)
			u.observe(at, vars, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func asNUTError(err error, target **nut.Error) bool { return errors.As(err, target) }
