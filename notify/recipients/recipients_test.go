package recipients

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/keyring/keyringtest"
	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

const (
	serialA = ups.Serial("123456789012")
	serialB = ups.Serial("210987654321")
	apnsTok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func open(t *testing.T) (*Store, func() *Store) {
	t.Helper()
	ns, _, js := bustest.Server(t)
	sealer := keyringtest.Records(t) // the instances share one keyring
	s := run(t, js, sealer)
	return s, func() *Store { _, js2 := bustest.Connect(t, ns); return run(t, js2, sealer) }
}

func run(t *testing.T, js jetstream.JetStream, sealer Sealer) *Store {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Open(ctx, js, Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("view not ready")
	}
	return s
}

func TestRoutingOwnersAndManagers(t *testing.T) {
	ctx := context.Background()
	s, second := open(t)
	owner, err := s.Create(ctx, Recipient{
		Account:  Account{Language: "vi", TimeZone: "Asia/Ho_Chi_Minh", Units: []ups.Serial{serialA}},
		Personal: Personal{Name: "Lan", Contacts: Contacts{FCMTokens: []string{"tok-1"}, Phones: []string{"+84901234567"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	manager, err := s.Create(ctx, Recipient{Account: Account{ID: "mgr-1", Sites: []string{"hanoi"}, Units: []ups.Serial{serialA}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, Recipient{Account: Account{ID: "mgr-1"}}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate id: err = %v", err)
	}
	got, _ := s.For(ctx, serialA, "hanoi")
	if ids := idsOf(got); !slices.Equal(ids, []string{owner.ID, "mgr-1"}) {
		t.Fatalf("For(A, hanoi) = %v", ids)
	}
	got, _ = s.For(ctx, serialB, "hanoi")
	if ids := idsOf(got); !slices.Equal(ids, []string{manager.ID}) {
		t.Fatalf("For(B, hanoi) = %v", ids)
	}
	if got[0].Language != "en" {
		t.Fatalf("default language = %q", got[0].Language)
	}

	// Another instance's view sees the same, through the watch.
	other := second()
	wait.For(t, "the other store sees both recipients of A", func() bool { r, _ := other.For(ctx, serialA, ""); return len(r) == 2 })
	r, _ := other.For(ctx, serialA, "")
	if r[0].ID == owner.ID && r[0].Name != "Lan" || r[1].ID == owner.ID && r[1].Name != "Lan" {
		t.Fatalf("personal record not in the other view: %+v", r)
	}

	// Ownership changes re-index.
	if _, err := s.SetUnit(ctx, owner.ID, serialA, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetSite(ctx, owner.ID, "saigon", true); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the other store routes B's site to its owner", func() bool { r, _ := other.For(ctx, serialB, "saigon"); return len(r) == 1 && r[0].ID == owner.ID })
	if got, _ := s.For(ctx, serialA, ""); !slices.Equal(idsOf(got), []string{"mgr-1"}) {
		t.Fatalf("after SetUnit(false): %v", idsOf(got))
	}

	if err := s.Delete(ctx, "mgr-1"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the other store forgets the deleted manager", func() bool { _, ok := other.Lookup("mgr-1"); return !ok })
	if err := s.Delete(ctx, "mgr-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestDropToken(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	r, err := s.Create(ctx, Recipient{Personal: Personal{Contacts: Contacts{
		FCMTokens: []string{"dead-token-123", "live-token-456"}, APNSTokens: []APNSToken{{Token: apnsTok, BundleID: "com.x"}},
		Phones: []string{"+84901234567"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DropToken(ctx, r.ID, FCM, "dead-token-123", "404 NOT_FOUND UNREGISTERED"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropToken(ctx, r.ID, SMS, "+84901234567", "400 21610"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropToken(ctx, r.ID, FCM, "dead-token-123", "again"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Lookup(r.ID)
	if !slices.Equal(got.Contacts.FCMTokens, []string{"live-token-456"}) || len(got.Contacts.Phones) != 0 || len(got.Contacts.APNSTokens) != 1 {
		t.Fatalf("contacts = %+v", got.Contacts)
	}
	if len(got.Dropped) != 2 || got.Dropped[0].Reason != "404 NOT_FOUND UNREGISTERED" || got.Dropped[1].Channel != SMS {
		t.Fatalf("dropped = %+v", got.Dropped)
	}
	for _, d := range got.Dropped {
		if strings.Contains(d.Contact, "dead-token-123") || strings.Contains(d.Contact, "901234567") {
			t.Fatalf("dropped record holds the contact: %+v", d)
		}
	}
	if err := s.DropToken(ctx, "nobody", FCM, "x", "r"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
}

func TestValidation(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	tests := []struct {
		name string
		r    Recipient
		want string
	}{
		{"language", Recipient{Account: Account{Language: "fr"}}, "language must be one of en, vi"},
		{"zone", Recipient{Account: Account{TimeZone: "Mars/Olympus"}}, "time_zone must be an IANA zone"},
		{"phone", Recipient{Personal: Personal{Contacts: Contacts{Phones: []string{"0901234567"}}}}, "phones[0] must be an E.164 number"},
		{"apns", Recipient{Personal: Personal{Contacts: Contacts{APNSTokens: []APNSToken{{Token: "zz"}}}}}, "apns_tokens[0].token must be the device token in hex"},
		{"fcm", Recipient{Personal: Personal{Contacts: Contacts{FCMTokens: []string{"a b"}}}}, "fcm_tokens[0] is not an FCM registration token"},
		{"severity", Recipient{Account: Account{Preferences: Preferences{Channels: map[string][]string{"urgent": {FCM}}}}}, `severity "urgent"`},
		{"channel", Recipient{Account: Account{Preferences: Preferences{Channels: map[string][]string{"info": {"email"}}}}}, `channel "email"`},
		{"quiet", Recipient{Account: Account{Preferences: Preferences{QuietHours: &QuietHours{Start: "25:00", End: "07:00"}}}}, `"25:00" must be HH:MM`},
		{"muted", Recipient{Account: Account{Preferences: Preferences{Muted: []ups.Serial{"12"}}}}, "muted"},
		{"unit", Recipient{Account: Account{Units: []ups.Serial{"abc"}}}, "units"},
		{"id", Recipient{Account: Account{ID: "Bad ID"}}, "id must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Create(ctx, tt.r)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
}

func TestPreferences(t *testing.T) {
	hcm, _ := time.LoadLocation("Asia/Ho_Chi_Minh")
	p := Preferences{QuietHours: &QuietHours{Start: "22:00", End: "07:00"}, Muted: []ups.Serial{serialA}}
	tests := []struct {
		utc  string
		want bool
	}{
		{"2025-11-24T15:30:00Z", true},  // 22:30 local
		{"2025-11-24T23:59:00Z", true},  // 06:59 local
		{"2025-11-25T00:00:00Z", false}, // 07:00 local
		{"2025-11-24T14:59:00Z", false}, // 21:59 local
	}
	for _, tt := range tests {
		at, _ := time.Parse(time.RFC3339, tt.utc)
		if got := p.Quiet(at, hcm); got != tt.want {
			t.Errorf("Quiet(%s) = %v, want %v", tt.utc, got, tt.want)
		}
	}
	if !p.IsMuted(serialA) || p.IsMuted(serialB) {
		t.Error("IsMuted")
	}
	if got := p.ChannelsFor(rules.Critical); !slices.Equal(got, []string{FCM, APNS, SMS}) {
		t.Errorf("default critical channels = %v", got)
	}
	p.Channels = map[string][]string{"warning": {SMS}}
	if got := p.ChannelsFor(rules.Warning); !slices.Equal(got, []string{SMS}) {
		t.Errorf("warning channels = %v", got)
	}
	if Mask(SMS, "+84901234567") != "**********67" || Mask(FCM, "abcdefghijkl") != "ab...kl" {
		t.Error("Mask")
	}
}

func idsOf(rs []Recipient) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// A write applies its result to the view at once; the watch delivers the
// same key's older revisions later, and they must not roll it back.
func TestViewIgnoresOlderRevisions(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	r, err := s.Create(ctx, Recipient{Account: Account{Language: "en", TimeZone: "UTC"}})
	if err != nil {
		t.Fatal(err)
	}
	key := accountPrefix + r.ID
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	newer := r.Account
	newer.Language = "vi"
	b, _ := json.Marshal(newer)
	s.applyAt(key, b, false, e.Revision()+10)
	s.applyAt(key, e.Value(), false, e.Revision()) // the watch, late
	if got, _ := s.Lookup(r.ID); got.Language != "vi" {
		t.Fatalf("language %q: an older revision rolled the view back", got.Language)
	}
	s.applyAt(key, e.Value(), false, e.Revision()+11)
	if got, _ := s.Lookup(r.ID); got.Language != "en" {
		t.Fatalf("language %q: a newer revision was not applied", got.Language)
	}
}

// QuietUntil holds a time inside the quiet hours to their end, in the
// account's zone, across midnight; a time outside them is left as it is.
func TestQuietUntil(t *testing.T) {
	hcm, _ := time.LoadLocation("Asia/Ho_Chi_Minh")
	tests := []struct {
		name       string
		start, end string
		at, want   string // local times in Asia/Ho_Chi_Minh
	}{
		{"outside", "22:00", "07:00", "2026-03-09T08:00", "2026-03-09T08:00"},
		{"overnight, morning side", "22:00", "09:00", "2026-03-09T08:00", "2026-03-09T09:00"},
		{"overnight, evening side", "22:00", "09:00", "2026-03-09T23:00", "2026-03-10T09:00"},
		{"daytime window", "07:30", "12:15", "2026-03-09T08:00", "2026-03-09T12:15"},
		{"nearly all day", "06:00", "05:00", "2026-03-09T08:00", "2026-03-10T05:00"},
		{"at its end", "22:00", "08:00", "2026-03-09T08:00", "2026-03-09T08:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Preferences{QuietHours: &QuietHours{Start: tt.start, End: tt.end}}
			at, _ := time.ParseInLocation("2006-01-02T15:04", tt.at, hcm)
			want, _ := time.ParseInLocation("2006-01-02T15:04", tt.want, hcm)
			if got := p.QuietUntil(at, hcm); !got.Equal(want) {
				t.Errorf("QuietUntil(%s) = %s, want %s", tt.at, got.In(hcm), tt.want)
			}
		})
	}
	if at := time.Date(2026, 3, 9, 1, 0, 0, 0, time.UTC); !(Preferences{}).QuietUntil(at, hcm).Equal(at) {
		t.Error("QuietUntil without quiet hours moved the time")
	}
}

// The fleet of an account: its own units, and a manager's sites' units
// (an owner's Sites grant nothing; a unit without a site is no site's).
func TestInFleet(t *testing.T) {
	owner := Account{Role: RoleOwner, Units: []ups.Serial{serialA}, Sites: []string{"hq"}}
	manager := Account{Role: RoleManager, Units: []ups.Serial{serialB}, Sites: []string{"hq"}}
	tests := []struct {
		a      Account
		serial ups.Serial
		site   string
		want   bool
	}{
		{owner, serialA, "", true},
		{owner, serialB, "hq", false},
		{manager, serialB, "", true},
		{manager, serialA, "hq", true},
		{manager, serialA, "branch", false},
		{manager, serialA, "", false},
	}
	for _, tt := range tests {
		if got := tt.a.InFleet(tt.serial, tt.site); got != tt.want {
			t.Errorf("%s InFleet(%s, %q) = %v, want %v", tt.a.Role, tt.serial, tt.site, got, tt.want)
		}
	}
}

// An account stored before the weekly summary existed has no
// weekly_report_off: it decodes subscribed.
func TestWeeklyReportDefaultsOn(t *testing.T) {
	var a Account
	if err := json.Unmarshal([]byte(`{"id":"lan","role":"owner","language":"vi","preferences":{"quiet_hours":{"start":"22:00","end":"06:00"}}}`), &a); err != nil {
		t.Fatal(err)
	}
	if a.Preferences.WeeklyReportOff {
		t.Error("an account stored without the field is opted out")
	}
	a.Preferences.WeeklyReportOff = true
	b, _ := json.Marshal(a.Preferences)
	if !strings.Contains(string(b), `"weekly_report_off":true`) {
		t.Errorf("opt-out not in the JSON: %s", b)
	}
}
