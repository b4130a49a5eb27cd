package app

import (
	"reflect"
	"testing"

	"github.com/upswatch/upswatch/config"
	"github.com/upswatch/upswatch/notify/apns"
	"github.com/upswatch/upswatch/notify/fcm"
	"github.com/upswatch/upswatch/notify/senders"
	"github.com/upswatch/upswatch/notify/sms"
)

func TestSendersConfig(t *testing.T) {
	smsCfg := config.NotifySMS{Endpoint: "http://127.0.0.1:1", AccountSID: "AC1", AuthToken: "tok",
		SegmentsPerSecond: 2, Burst: 3}
	oneSMS := func(from string) sms.Config {
		return sms.Config{Endpoint: "http://127.0.0.1:1", AccountSID: "AC1", AuthToken: "tok", From: from,
			SegmentsPerSecond: 2, Burst: 3}
	}
	tests := []struct {
		name string
		in   config.Notify
		want senders.Config
	}{
		{name: "none", in: config.Default().Notify, want: senders.Config{}},
		{
			name: "fcm",
			in:   config.Notify{FCM: config.NotifyFCM{ProjectID: "p", CredentialsFile: "c.json", Endpoint: "http://e", ParallelBatches: 4}},
			want: senders.Config{FCM: &fcm.Config{ProjectID: "p", CredentialsFile: "c.json", Endpoint: "http://e", ParallelBatches: 4}},
		},
		{
			name: "fcm off without a project",
			in:   config.Notify{FCM: config.NotifyFCM{CredentialsFile: "c.json", Endpoint: "http://e"}},
			want: senders.Config{},
		},
		{
			name: "apns",
			in: config.Notify{APNS: config.NotifyAPNS{KeyFile: "k.p8", KeyID: "K", TeamID: "T", Topic: "com.example",
				Endpoint: "https://e", CAFile: "ca.pem"}},
			want: senders.Config{APNS: &apns.Config{KeyFile: "k.p8", KeyID: "K", TeamID: "T", Topic: "com.example",
				Endpoint: "https://e", CAFile: "ca.pem"}},
		},
		{
			name: "apns off without a key file",
			in:   config.Notify{APNS: config.NotifyAPNS{KeyID: "K", TeamID: "T", Topic: "com.example"}},
			want: senders.Config{},
		},
		{
			name: "one sms sender per number, blanks skipped",
			in: config.Notify{SMS: func() config.NotifySMS {
				c := smsCfg
				c.From = " +15550001111, ,+15550002222,"
				return c
			}()},
			want: senders.Config{SMS: []sms.Config{oneSMS("+15550001111"), oneSMS("+15550002222")}},
		},
		{
			name: "sms off without an account",
			in:   config.Notify{SMS: config.NotifySMS{From: "+15550001111", AuthToken: "tok"}},
			want: senders.Config{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sendersConfig(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("sendersConfig =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}
