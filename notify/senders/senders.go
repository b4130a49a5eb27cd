// Package senders builds the notification providers from each one's own
// configuration type; the app translates its configuration file into
// Config, so the providers and the pipeline know nothing of that file.
package senders

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/apns"
	"github.com/upswatch/upswatch/notify/fcm"
	"github.com/upswatch/upswatch/notify/sms"
)

// Config says which providers to build; a nil or empty one is off.
type Config struct {
	FCM  *fcm.Config
	APNS *apns.Config
	// SMS has one entry per sending number, each with its own rate
	// budget.
	SMS []sms.Config
}

// Senders are the providers built.
type Senders struct {
	FCM  notify.Sender
	APNS notify.Sender
	// APNSTopic is the app's bundle id APNs notifications go to.
	APNSTopic string
	SMS       []notify.Sender
}

// New builds the providers cfg turns on (none: dev mode). It opens no
// connection. log nil discards.
func New(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (Senders, error) {
	var s Senders
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.FCM != nil {
		f, err := fcm.New(ctx, *cfg.FCM, fcm.WithLogger(log), fcm.WithRegisterer(reg))
		if err != nil {
			return Senders{}, err
		}
		s.FCM = f
	}
	if cfg.APNS != nil {
		a, err := apns.New(*cfg.APNS, apns.WithLogger(log), apns.WithRegisterer(reg))
		if err != nil {
			return Senders{}, err
		}
		s.APNS, s.APNSTopic = a, cfg.APNS.Topic
	}
	for _, c := range cfg.SMS {
		snd, err := sms.New(c, sms.WithLogger(log), sms.WithRegisterer(reg))
		if err != nil {
			return Senders{}, err
		}
		s.SMS = append(s.SMS, snd)
	}
	return s, nil
}
