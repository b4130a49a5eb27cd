package pipeline

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/testenv"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/keyring/keyringtest"
	"github.com/upswatch/upswatch/notify"
	"github.com/upswatch/upswatch/notify/apns"
	"github.com/upswatch/upswatch/notify/apns/apnsfake"
	"github.com/upswatch/upswatch/notify/fcm"
	"github.com/upswatch/upswatch/notify/fcm/fcmfake"
	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/notify/senders"
	"github.com/upswatch/upswatch/notify/sms"
	"github.com/upswatch/upswatch/notify/sms/smsfake"
	"github.com/upswatch/upswatch/notify/templates"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

const (
	serial   = ups.Serial("123456789012")
	fcmTok   = "fcm-token-owner-1"
	apnsTok  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	phone    = "+84901234567"
	topic    = "com.example.upswatch"
	smsSID   = "AC0123456789"
	smsToken = "sms-auth-token"
)

// units is a function-field fake of the registry.
type units map[ups.Serial]registry.Unit

func (u units) Lookup(s ups.Serial) (registry.Unit, bool) { v, ok := u[s]; return v, ok }

type env struct {
	ns    *server.Server
	js    jetstream.JetStream
	store *recipients.Store
	units units
	fcm   *fcmfake.Server
	apns  *apnsfake.Server
	sms   *smsfake.Server
	// senders configures the providers started; backoff is the retry's
	// initial and maximum backoff.
	senders             senders.Config
	backoff, maxBackoff time.Duration
	tmpl                *templates.Set
	// silences, when set, is given to the pipelines started.
	silences Silences
	// folds, when set, too.
	folds Folds
}

// newEnv starts NATS, the recipients view and the three fakes; channels
// picks which providers are configured.
func newEnv(t testing.TB, channels ...string) *env {
	t.Helper()
	ns, _, js := bustest.Server(t)
	e := &env{ns: ns, js: js, units: units{serial: {Serial: serial, Name: "Office", Site: "hq"}}}
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	if e.store, err = recipients.Open(ctx, js, recipients.Options{Sealer: keyringtest.Records(t)}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = e.store.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-e.store.Ready()
	if e.tmpl, err = templates.Load(""); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, ch := range channels {
		switch ch {
		case recipients.FCM:
			e.fcm = fcmfake.New()
			t.Cleanup(e.fcm.Close)
			e.senders.FCM = &fcm.Config{ProjectID: "upswatch-test", Endpoint: e.fcm.URL(), ParallelBatches: 4}
		case recipients.APNS:
			e.apns = apnsfake.New()
			t.Cleanup(e.apns.Close)
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.MarshalPKCS8PrivateKey(k)
			keyFile := filepath.Join(dir, "AuthKey.p8")
			if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				t.Fatal(err)
			}
			e.apns.VerifyWith(&k.PublicKey)
			caFile, err := e.apns.WriteCAFile(dir)
			if err != nil {
				t.Fatal(err)
			}
			e.senders.APNS = &apns.Config{KeyFile: keyFile, KeyID: "KEY1234567", TeamID: "TEAM123456", Topic: topic,
				Endpoint: e.apns.URL(), CAFile: caFile}
		case recipients.SMS:
			e.sms = smsfake.New(smsSID, smsToken)
			t.Cleanup(e.sms.Close)
			e.senders.SMS = []sms.Config{{Endpoint: e.sms.URL(), AccountSID: smsSID, AuthToken: smsToken, From: "+15550001111",
				SegmentsPerSecond: 50, Burst: 5}}
		}
	}
	e.backoff, e.maxBackoff = 100*time.Millisecond, time.Second
	return e
}

// start runs a pipeline until the returned stop is called (or the test
// ends).
func (e *env) start(t testing.TB) (*Pipeline, func()) {
	t.Helper()
	s, err := senders.New(context.Background(), e.senders, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(e.js, Config{Units: e.units, Recipients: e.store, Templates: e.tmpl, FCM: s.FCM, APNS: s.APNS,
		Logger: testLogger(), APNSTopic: s.APNSTopic, SMS: s.SMS, InitialBackoff: e.backoff, MaxBackoff: e.maxBackoff,
		Silences: e.silences, Folds: e.folds})
	if err != nil {
		t.Fatal(err)
	}
	stop := testenv.Background(t, p.Run)
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("pipeline not ready")
	}
	return p, stop
}

// settle waits until the pipeline is quiescent: the intake consumer of
// ALERTS and every channel's outbox consumer have nothing pending and
// nothing awaiting an ack (a message being sent, or waiting out a retry
// backoff, awaits its ack). A notification is queued before its event is
// acked and reaches its provider before its outbox message is acked, so
// after settle every request the pipeline will make has been made: absence
// is asserted after it, never after a sleep.
func (e *env) settle(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	type consumer struct{ stream, name string }
	all := []consumer{{AlertsStream, IntakeConsumer}}
	for _, ch := range recipients.Channels {
		all = append(all, consumer{OutboxStream, SenderConsumerPrefix + ch})
	}
	var busy string
	drained := wait.Poll(wait.Timeout, func() bool {
		for _, c := range all {
			cons, err := e.js.Consumer(ctx, c.stream, c.name)
			if errors.Is(err, jetstream.ErrConsumerNotFound) && c.name != IntakeConsumer {
				continue // a channel not configured
			}
			if err != nil {
				t.Fatalf("consumer %s: %v", c.name, err)
			}
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatalf("consumer %s: %v", c.name, err)
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				busy = fmt.Sprintf("%s: %d pending, %d awaiting an ack, %d redelivered", c.name, info.NumPending, info.NumAckPending, info.NumRedelivered)
				return false
			}
		}
		return true
	})
	if !drained {
		t.Fatalf("the pipeline's consumers did not drain within %v: %s", wait.Timeout, busy)
	}
}

func (e *env) owner(t testing.TB, lang string, prefs recipients.Preferences, c recipients.Contacts) recipients.Recipient {
	t.Helper()
	r, err := e.store.Create(context.Background(), recipients.Recipient{
		Account:  recipients.Account{Language: lang, TimeZone: "Asia/Ho_Chi_Minh", Units: []ups.Serial{serial}, Preferences: prefs},
		Personal: recipients.Personal{Name: "Lan", Contacts: c},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// manager adds the manager of site hq, with one FCM token.
func (e *env) manager(t testing.TB, token string) {
	t.Helper()
	if _, err := e.store.Create(context.Background(), recipients.Recipient{
		Account:  recipients.Account{Role: recipients.RoleManager, Sites: []string{"hq"}, Language: "en", Preferences: allChannels()},
		Personal: recipients.Personal{Contacts: recipients.Contacts{FCMTokens: []string{token}}}}); err != nil {
		t.Fatal(err)
	}
}

func allChannels() recipients.Preferences {
	all := []string{recipients.FCM, recipients.APNS, recipients.SMS}
	return recipients.Preferences{Channels: map[string][]string{"warning": all, "critical": all}}
}

func event(kind rules.EventKind, rule string, sev rules.Severity, s ups.Serial, started time.Time) rules.Event {
	ev := rules.Event{Kind: kind, Rule: rule, Severity: sev, Serial: s, At: time.Now(), StartedAt: started,
		Fingerprint: fmt.Sprintf("%s/%s/%d", s, rule, started.UnixMilli()),
		Values:      []rules.Value{{Name: "battery.runtime", Value: 1500}}}
	if kind == rules.Resolved {
		ev.Duration = ev.At.Sub(started)
		ev.EndedAt = ev.At
	}
	return ev
}

func publish(t testing.TB, js jetstream.JetStream, ev rules.Event, msgID string) {
	t.Helper()
	b, _ := json.Marshal(ev)
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: "upswatch.alerts." + string(ev.Serial) + "." + ev.Rule, Data: b}, opts...); err != nil {
		t.Fatal(err)
	}
}

func okFCM(reqs []fcmfake.Request) (n int) {
	for _, r := range reqs {
		if r.Status == 200 {
			n++
		}
	}
	return n
}

func TestEndToEnd(t *testing.T) {
	tests := []struct {
		lang, title, smsBody, restored string
	}{
		{"en", "⚡ Office is on battery", "Office is on battery since", "🔌 Office: power restored"},
		{"vi", "⚡ Office đang chạy bằng pin", "Office dang chay bang pin tu", "🔌 Office: đã có điện trở lại"},
	}
	for _, tt := range tests {
		t.Run(tt.lang, func(t *testing.T) {
			e := newEnv(t, recipients.FCM, recipients.APNS, recipients.SMS)
			r := e.owner(t, tt.lang, allChannels(), recipients.Contacts{FCMTokens: []string{fcmTok},
				APNSTokens: []recipients.APNSToken{{Token: apnsTok, BundleID: topic}}, Phones: []string{phone}})
			p, _ := e.start(t)

			ev := event(rules.Firing, "on_battery", rules.Warning, serial, time.Now().Add(-6*time.Second))
			start := time.Now()
			publish(t, e.js, ev, ev.DedupID())
			fr, err := e.fcm.WaitRequests(1, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ar, err := e.apns.WaitRequests(1, time.Second-time.Since(start))
			if err != nil {
				t.Fatal(err)
			}
			sr, err := e.sms.WaitRequests(1, time.Second-time.Since(start))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("all three providers reached %v after publishing", time.Since(start))
			if f := fr[0]; f.Token != fcmTok || f.Title != tt.title || f.CollapseKey != "123456789012/on_battery" ||
				f.Priority != "normal" || f.Data["alert_id"] != ev.Fingerprint {
				t.Errorf("fcm request = %+v", f)
			}
			if a := ar[0]; a.Token != apnsTok || a.Topic != topic || a.Title != tt.title || a.CollapseID == "" {
				t.Errorf("apns request = %+v", a)
			}
			if s := sr[0]; s.To != phone || s.From != "+15550001111" || !strings.HasPrefix(s.Body, tt.smsBody) {
				t.Errorf("sms request = %+v", s)
			}

			// The same event again: once with the same msg id (the stream
			// drops it), once with another (the log drops it).
			publish(t, e.js, ev, ev.DedupID())
			publish(t, e.js, ev, "")
			// Resolved goes where the firing went.
			res := event(rules.Resolved, "on_battery", rules.Warning, serial, ev.StartedAt)
			publish(t, e.js, res, res.DedupID())
			fr, err = e.fcm.WaitRequests(2, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(fr) != 2 || !strings.HasPrefix(fr[1].Title, tt.restored) {
				t.Fatalf("fcm requests = %+v", fr)
			}
			if _, err := e.sms.WaitRequests(2, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			e.settle(t)
			if n := len(e.fcm.Requests()) + len(e.apns.Requests()) + len(e.sms.Requests()); n != 6 {
				t.Fatalf("%d provider requests, want 6 (firing and resolved on three channels)", n)
			}

			ds, err := p.Deliveries(context.Background(), ev.Fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 6 {
				t.Fatalf("deliveries = %+v", ds)
			}
			for _, d := range ds {
				if d.Outcome != "delivered" || d.Recipient != r.ID || d.Contact == "" || d.Response == "" {
					t.Errorf("delivery = %+v", d)
				}
				if strings.Contains(d.Contact, fcmTok) || strings.Contains(d.Contact, "901234567") || strings.Contains(d.Contact, apnsTok) {
					t.Errorf("delivery holds an address: %+v", d)
				}
			}
		})
	}
}

func TestRestartBetweenAcceptAndDeliver(t *testing.T) {
	e := newEnv(t, recipients.FCM)
	e.owner(t, "en", allChannels(), recipients.Contacts{FCMTokens: []string{fcmTok}})
	e.fcm.SetDown("") // accepted into the outbox, not deliverable yet
	_, stop := e.start(t)
	ev := event(rules.Firing, "on_battery", rules.Critical, serial, time.Now())
	publish(t, e.js, ev, ev.DedupID())
	if _, err := e.fcm.WaitRequests(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	stop()
	// The provider comes back only once the new instance runs: a request
	// the stopped instance had on the wire when it gave up (FCM's client
	// retries a 503 by itself) still finds it down, rather than being
	// accepted after the stop, the one window where a push may go twice.
	e.start(t)
	e.fcm.Reset()
	wait.For(t, "a push after the restart", func() bool { return okFCM(e.fcm.Requests()) >= 1 })
	e.settle(t)
	if n := okFCM(e.fcm.Requests()); n != 1 {
		t.Fatalf("%d successful pushes after the restart, want 1 (requests %+v)", n, e.fcm.Requests())
	}
}

// The provider answers 503 for 1.5 s, then recovers: delivered once,
// late. FCM's client retries a 503 inside SendEach itself; the SMS sender
// does not, so SMS goes through the outbox's own backoff (NakWithDelay
// honouring Retry-After).
func TestProviderDownThenUp(t *testing.T) {
	for _, ch := range []string{recipients.FCM, recipients.SMS} {
		t.Run(ch, func(t *testing.T) {
			e := newEnv(t, ch)
			e.owner(t, "en", allChannels(), recipients.Contacts{FCMTokens: []string{fcmTok}, Phones: []string{phone}})
			type fake interface {
				SetDown(string)
				SetUp()
			}
			var f fake
			var ok, attempts func() int
			if ch == recipients.FCM {
				f, ok = e.fcm, func() int { return okFCM(e.fcm.Requests()) }
				attempts = func() int { return len(e.fcm.Requests()) }
			} else {
				attempts = func() int { return len(e.sms.Requests()) }
				f, ok = e.sms, func() (n int) {
					for _, r := range e.sms.Requests() {
						if r.Status == 201 {
							n++
						}
					}
					return n
				}
			}
			f.SetDown("1")
			p, _ := e.start(t)
			ev := event(rules.Firing, "on_battery", rules.Warning, serial, time.Now())
			publish(t, e.js, ev, ev.DedupID())
			// Down until the provider has refused a retry too.
			wait.For(t, "a retry while the provider is down", func() bool { return attempts() >= 2 })
			if ok() != 0 {
				t.Fatal("delivered while down")
			}
			up := time.Now()
			f.SetUp()
			wait.For(t, "the delivery after the provider came back", func() bool { return ok() > 0 })
			t.Logf("delivered %v after the provider came back", time.Since(up))
			e.settle(t)
			if n := ok(); n != 1 {
				t.Fatalf("%d successful sends, want 1", n)
			}
			ds, err := p.Deliveries(context.Background(), ev.Fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) == 0 || ds[len(ds)-1].Outcome != "delivered" {
				t.Fatalf("deliveries = %+v", ds)
			}
			if ch == recipients.SMS && (len(ds) < 2 || ds[0].Outcome != "retry" || !strings.HasPrefix(ds[0].Response, "503")) {
				t.Fatalf("deliveries = %+v, want retries before the delivery", ds)
			}
		})
	}
}

func TestDeadTokensRemoved(t *testing.T) {
	e := newEnv(t, recipients.FCM, recipients.APNS, recipients.SMS)
	r := e.owner(t, "en", allChannels(), recipients.Contacts{FCMTokens: []string{fcmTok, "fcm-token-live"},
		APNSTokens: []recipients.APNSToken{{Token: apnsTok}}, Phones: []string{phone}})
	e.fcm.FailToken(fcmTok, fcmfake.Unregistered)
	e.apns.FailToken(apnsTok, apnsfake.Unregistered)
	e.sms.FailTo(phone, smsfake.OptedOut)
	p, _ := e.start(t)
	ev := event(rules.Firing, "on_battery", rules.Critical, serial, time.Now())
	publish(t, e.js, ev, ev.DedupID())
	// The contacts and the dropped list are two records the view learns
	// of separately: wait for both.
	gone := func(got recipients.Recipient) bool {
		c := got.Contacts
		return len(got.Dropped) == 3 && len(c.FCMTokens) == 1 && c.FCMTokens[0] == "fcm-token-live" && len(c.APNSTokens) == 0 && len(c.Phones) == 0
	}
	if !wait.Poll(wait.Timeout, func() bool { got, _ := e.store.Lookup(r.ID); return gone(got) }) {
		got, _ := e.store.Lookup(r.ID)
		t.Fatalf("dropped = %+v, contacts = %+v", got.Dropped, got.Contacts)
	}
	ds, err := p.Deliveries(context.Background(), ev.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for _, d := range ds {
		outcomes[d.Channel+"/"+d.Outcome]++
	}
	if outcomes["fcm/token_gone"] != 1 || outcomes["fcm/delivered"] != 1 || outcomes["apns/token_gone"] != 1 || outcomes["sms/token_gone"] != 1 {
		t.Fatalf("outcomes = %v", outcomes)
	}
}

func TestPreferencesAndSkips(t *testing.T) {
	e := newEnv(t, recipients.FCM)
	now := time.Now().In(time.FixedZone("ICT", 7*3600))
	quiet := &recipients.QuietHours{Start: now.Add(-time.Hour).Format("15:04"), End: now.Add(time.Hour).Format("15:04")}
	e.owner(t, "en", recipients.Preferences{QuietHours: quiet}, recipients.Contacts{FCMTokens: []string{"tok-quiet"}})
	mutedSerial := ups.Serial("210987654321")
	e.units[mutedSerial] = registry.Unit{Serial: mutedSerial, Name: "Lab", Site: "hq"}
	if _, err := e.store.Create(context.Background(), recipients.Recipient{
		Account:  recipients.Account{Units: []ups.Serial{mutedSerial}, Preferences: recipients.Preferences{Muted: []ups.Serial{mutedSerial}}},
		Personal: recipients.Personal{Contacts: recipients.Contacts{FCMTokens: []string{"tok-muted"}}}}); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	t0 := time.Now()
	warning := event(rules.Firing, "on_battery", rules.Warning, serial, t0)
	historical := event(rules.Firing, "overload", rules.Critical, serial, t0)
	historical.Historical = true
	silent := event(rules.Resolved, "low_battery", rules.Critical, serial, t0)
	silent.Silent = true
	unnotified := event(rules.Resolved, "on_battery", rules.Warning, serial, t0) // its firing was held back
	muted := event(rules.Firing, "low_battery", rules.Critical, mutedSerial, t0)
	critical := event(rules.Firing, "low_battery", rules.Critical, serial, t0)
	for _, ev := range []rules.Event{warning, historical, silent, unnotified, muted, critical} {
		publish(t, e.js, ev, ev.DedupID())
	}
	reqs, err := e.fcm.WaitRequests(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	reqs = e.fcm.Requests()
	if len(reqs) != 1 || reqs[0].Token != "tok-quiet" || reqs[0].Title != "🪫 Office: battery low" || reqs[0].Priority != "high" {
		t.Fatalf("requests = %+v, want only the critical low_battery", reqs)
	}
}

func TestDevModeLogsWithoutAddresses(t *testing.T) {
	e := newEnv(t)
	var buf syncBuffer
	r := e.owner(t, "en", allChannels(), recipients.Contacts{FCMTokens: []string{fcmTok}, Phones: []string{phone}})
	p, err := New(e.js, Config{Units: e.units, Recipients: e.store, Templates: e.tmpl, Logger: newLogger(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	if !p.DevMode() {
		t.Fatal("not in dev mode without providers")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-p.Ready()
	ev := event(rules.Firing, "on_battery", rules.Warning, serial, time.Now())
	publish(t, e.js, ev, ev.DedupID())
	// Every channel logs in dev mode, even APNS, for which the owner has
	// no address yet.
	wait.For(t, "three channels logged", func() bool { return strings.Count(buf.String(), "notification (log channel") >= 3 })
	out := buf.String()
	if !strings.Contains(out, "Office is on battery") || !strings.Contains(out, "channel=sms") || !strings.Contains(out, "channel=apns") {
		t.Fatalf("log = %s", out)
	}
	if strings.Contains(out, fcmTok) || strings.Contains(out, "901234567") {
		t.Fatalf("log holds an address: %s", out)
	}

	results, err := p.SendTest(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Channel != "fcm" || results[1].Channel != "sms" ||
		results[0].Outcome != "delivered" || results[1].Contact != "**********67" {
		t.Fatalf("test results = %+v", results)
	}
	if !strings.Contains(buf.String(), "upswatch test notification") {
		t.Fatalf("test notification not logged: %s", buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func testLogger() *slog.Logger {
	if os.Getenv("NOTIFY_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// RecordsOf lists exactly what EraseRecipient removes of an account (its
// notification log entries, outbox messages and delivery attempts) and
// nothing of another recipient of the same alert.
func TestRecordsOfAndErase(t *testing.T) {
	e := newEnv(t, recipients.FCM)
	a := e.owner(t, "en", allChannels(), recipients.Contacts{FCMTokens: []string{fcmTok}})
	b := e.owner(t, "vi", allChannels(), recipients.Contacts{FCMTokens: []string{"fcm-token-b"}})
	// Not started: the senders would empty the outbox.
	p, err := New(e.js, Config{Units: e.units, Recipients: e.store, Templates: e.tmpl, FCM: fcmOnly{}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	ev := event(rules.Firing, "on_battery", rules.Warning, serial, time.Now().Add(-6*time.Second))
	queued := 0
	wait.For(t, "one notification queued per owner", func() bool {
		n, err := p.process(ctx, &ev)
		if err != nil {
			t.Fatal(err)
		}
		queued += n
		return queued >= 2
	})
	for _, r := range []recipients.Recipient{a, b} {
		p.publishAudit(ctx, Delivery{AlertID: ev.Fingerprint, EventID: ev.DedupID(), Kind: "firing", Rule: ev.Rule,
			Serial: string(serial), Recipient: r.ID, Channel: recipients.FCM, Contact: recipients.Mask(recipients.FCM, fcmTok),
			Outcome: "retry", Attempt: 1, At: time.Now().UTC()})
	}

	check := func(r recipients.Recipient, want int) {
		t.Helper()
		got, err := p.RecordsOf(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Log) != want || len(got.Pending) != want || len(got.Deliveries) != want {
			t.Fatalf("records of %s = %+v, want %d of each", r.ID, got, want)
		}
		if want == 0 {
			return
		}
		l, pd, d := got.Log[0], got.Pending[0], got.Deliveries[0]
		if l.Key != LogKey(r.ID, recipients.FCM, ev.DedupID()) || l.Channel != recipients.FCM || l.EventID != ev.DedupID() ||
			l.State != stateQueued || l.At.IsZero() {
			t.Errorf("log record = %+v", l)
		}
		if pd.Recipient != r.ID || pd.Key != l.Key || pd.AlertID != ev.Fingerprint || !strings.Contains(pd.Message.Title, "Office") {
			t.Errorf("pending = %+v", pd)
		}
		if d.Recipient != r.ID || d.AlertID != ev.Fingerprint {
			t.Errorf("delivery = %+v", d)
		}
	}
	check(a, 1)
	check(b, 1)
	n, err := p.EraseRecipient(ctx, a.ID)
	if err != nil || n != 3 {
		t.Fatalf("EraseRecipient = %d, %v; want 3 (log entry, outbox message, attempt)", n, err)
	}
	check(a, 0)
	check(b, 1)
	if _, err := p.RecordsOf(ctx, "a.>"); err == nil {
		t.Error("RecordsOf accepted a wildcard id")
	}
}

// fcmOnly configures the FCM channel alone; the pipeline is not run, so
// it is never asked to send (and would answer retry).
type fcmOnly struct{}

func (fcmOnly) Channel() string { return recipients.FCM }
func (fcmOnly) MaxBatch() int   { return 500 }
func (fcmOnly) Send(_ context.Context, _ notify.Message, to []string) []notify.Result {
	out := make([]notify.Result, len(to))
	for i, a := range to {
		out[i] = notify.Result{To: a, Outcome: notify.Retry}
	}
	return out
}
