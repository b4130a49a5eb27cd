package app

import (
	"strings"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/notify/apns"
	"github.com/upswatch/upswatch/notify/fcm"
	"github.com/upswatch/upswatch/notify/senders"
	"github.com/upswatch/upswatch/notify/sms"
)

// sendersConfig translates the notify section of the configuration into
// each provider's own configuration: a provider is on when its key field
// (fcm.project_id, apns.key_file, sms.account_sid) is set, and SMS has
// one sender per number of sms.from (comma separated).
func sendersConfig(cfg config.Notify) senders.Config {
	var sc senders.Config
	if cfg.FCM.ProjectID != "" {
		sc.FCM = &fcm.Config{ProjectID: cfg.FCM.ProjectID, CredentialsFile: cfg.FCM.CredentialsFile,
			Endpoint: cfg.FCM.Endpoint, ParallelBatches: cfg.FCM.ParallelBatches}
	}
	if cfg.APNS.KeyFile != "" {
		sc.APNS = &apns.Config{KeyFile: cfg.APNS.KeyFile, KeyID: cfg.APNS.KeyID, TeamID: cfg.APNS.TeamID,
			Topic: cfg.APNS.Topic, Endpoint: cfg.APNS.Endpoint, CAFile: cfg.APNS.CAFile}
	}
	if cfg.SMS.AccountSID != "" {
		for _, from := range strings.Split(cfg.SMS.From, ",") {
			if from = strings.TrimSpace(from); from == "" {
				continue
			}
			sc.SMS = append(sc.SMS, sms.Config{Endpoint: cfg.SMS.Endpoint, AccountSID: cfg.SMS.AccountSID,
				AuthToken: cfg.SMS.AuthToken, From: from, SegmentsPerSecond: cfg.SMS.SegmentsPerSecond, Burst: cfg.SMS.Burst})
		}
	}
	return sc
}
