package app

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/access"
	"github.com/upswatch/upswatch/api"
	"github.com/upswatch/upswatch/battery"
	"github.com/upswatch/upswatch/notify/pipeline"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules/engine"
	"github.com/upswatch/upswatch/store"
	"github.com/upswatch/upswatch/web"
)

// mountConsole serves the web console from the API's server: sign-in
// (passwords, invitations and sessions in NATS KV, so any instance serves
// anyone) and the pages.
func (a *App) mountConsole(ctx context.Context, js jetstream.JetStream, srv *api.Server, units *registry.Registry,
	hist store.History, alerts *engine.Alerts, accounts *recipients.Store, notifier *pipeline.Pipeline, acts web.Actions) error {
	logins, err := access.Open(ctx, js, access.Options{Replicas: a.cfg.NATS.Replicas})
	if err != nil {
		return err
	}
	console, err := web.New(web.Config{
		AdminToken: a.token, Units: units, History: hist, Alerts: alerts, Accounts: accounts,
		Access: logins, Notifier: notifier, Actions: acts, Logger: a.log, Limiter: a.loginLimiter,
		Batteries: battery.NewStore(js, nil),
	})
	if err != nil {
		return err
	}
	srv.HandleConsole(console, console.SessionPrincipal, logins)
	return nil
}
