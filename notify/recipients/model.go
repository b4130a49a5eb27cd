// Package recipients holds who receives a unit's alerts and how: the
// recipient accounts, their contacts and preferences, and which units they
// own and which sites they manage, in the NATS KV bucket upswatch_recipients.
//
// Every instance keeps a live in-memory view through a KV watch (as the
// registry does), so routing an alert (For) never waits on I/O.
//
// # Records
//
// An account is two records, so personal data can be sealed on its own:
//
//	account.<id>   Account: language, time zone, preferences, ownership,
//	               and the log of dropped contacts (masked). No personal
//	               data: routing reads it for every alert.
//	personal.<id>  Personal: name and contacts (push tokens, phone
//	               numbers), stored through a Sealer (identity today;
//	               AES-GCM with key ids in the accounts step).
package recipients

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // IANA zones even where the system has none (containers)

	"github.com/upswatch/upswatch/rules"
	"github.com/upswatch/upswatch/ups"
)

// Channel names.
const (
	FCM  = "fcm"
	APNS = "apns"
	SMS  = "sms"
)

// Channels are every channel, in the order a test notification uses them.
var Channels = []string{FCM, APNS, SMS}

// Languages the templates exist in.
var Languages = []string{"en", "vi"}

// Errors callers test with errors.Is.
var (
	ErrNotFound = errors.New("recipient account not found")
	ErrExists   = errors.New("recipient account already exists")
	ErrInvalid  = errors.New("invalid recipient field")
)

// Roles an account can have.
const (
	// RoleOwner sees and changes its own units (the default).
	RoleOwner = "owner"
	// RoleManager is a facility manager: sees the units, alerts and
	// history of the sites granted to it.
	RoleManager = "manager"
	// RoleAdmin may do everything the admin token may.
	RoleAdmin = "admin"
)

// Roles lists the roles.
var Roles = []string{RoleOwner, RoleManager, RoleAdmin}

// Account is the non-personal part of a recipient account.
type Account struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	// Region is the ISO 3166-1 alpha-2 country the account registers
	// products in.
	Region   string `json:"region,omitempty"`
	Language string `json:"language"`
	// TimeZone is an IANA zone name; quiet hours are in it.
	TimeZone    string      `json:"time_zone"`
	Preferences Preferences `json:"preferences"`
	// Units the account owns and Sites it manages: it receives their
	// alerts.
	Units []ups.Serial `json:"units,omitempty"`
	Sites []string     `json:"sites,omitempty"`
	// Dropped records contacts removed because a provider said they are
	// dead, newest last (at most maxDropped), with the contact masked.
	Dropped []Dropped `json:"dropped,omitempty"`
	// Tokens are the account's API tokens, without the secrets (only their
	// hashes are stored, under token.<hash>).
	Tokens []TokenInfo `json:"tokens,omitempty"`
	// Marketing is the marketing consent: kept apart from Preferences and
	// never read when routing alerts, which are service messages.
	Marketing Consent   `json:"marketing"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Consent is a yes or no and when it was last given or withdrawn.
type Consent struct {
	Granted bool       `json:"granted"`
	At      *time.Time `json:"at,omitempty"`
}

// TokenInfo describes an API token without its secret.
type TokenInfo struct {
	// ID is the first 12 hex digits of the token's hash: enough to name
	// it for revocation, useless to authenticate.
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Personal is the personal part of an account: what the privacy policy
// protects. It is stored sealed, in its own record.
type Personal struct {
	Name string `json:"name"`
	// Email is the account's login and contact address; it is found by a
	// blind index (email.<index>), never stored in clear.
	Email string `json:"email,omitempty"`
	// Phone is the account holder's number (E.164); SMS alerts go to
	// Contacts.Phones.
	Phone    string   `json:"phone,omitempty"`
	Address  string   `json:"address,omitempty"`
	Contacts Contacts `json:"contacts"`
}

// Contacts are where an account's notifications go.
type Contacts struct {
	FCMTokens  []string    `json:"fcm_tokens,omitempty"`
	APNSTokens []APNSToken `json:"apns_tokens,omitempty"`
	// Phones are E.164 numbers (+84901234567).
	Phones []string `json:"phones,omitempty"`
}

// APNSToken is an iOS device token and the bundle id of the app that
// registered it (empty: the configured topic).
type APNSToken struct {
	Token    string `json:"token"`
	BundleID string `json:"bundle_id,omitempty"`
}

// Preferences say which alerts reach the account, and how.
type Preferences struct {
	// Channels per severity name (info, warning, critical). A severity
	// left out gets DefaultChannels'.
	Channels map[string][]string `json:"channels,omitempty"`
	// QuietHours hold back everything but critical alerts.
	QuietHours *QuietHours `json:"quiet_hours,omitempty"`
	// Muted units send this account nothing.
	Muted []ups.Serial `json:"muted,omitempty"`
	// WeeklyReportOff opts the account out of the weekly power summary
	// (package report/weekly). An opt-out, so that the accounts stored
	// before the summary existed, and a client that leaves the field out,
	// get the summary as every account does by default.
	WeeklyReportOff bool `json:"weekly_report_off,omitempty"`
}

// QuietHours is a daily window "HH:MM" to "HH:MM" in the account's time
// zone; End before Start spans midnight.
type QuietHours struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Dropped records one removed contact.
type Dropped struct {
	Channel string `json:"channel"`
	// Contact is masked: enough for a human to recognise, never the whole
	// token or number.
	Contact string    `json:"contact"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

const maxDropped = 20

// DefaultChannels are the channels of a severity the account did not set.
var DefaultChannels = map[string][]string{
	"critical": {FCM, APNS, SMS},
	"warning":  {FCM, APNS},
	"info":     {},
}

// Recipient is an account with its personal part: what routing returns.
type Recipient struct {
	Account
	Personal
}

// ChannelsFor returns the channels an alert of severity sev goes to.
func (p Preferences) ChannelsFor(sev rules.Severity) []string {
	if ch, ok := p.Channels[sev.String()]; ok {
		return ch
	}
	return DefaultChannels[sev.String()]
}

// IsMuted reports whether the account muted serial.
func (p Preferences) IsMuted(serial ups.Serial) bool { return slices.Contains(p.Muted, serial) }

// Quiet reports whether t falls in the quiet hours, in loc.
func (p Preferences) Quiet(t time.Time, loc *time.Location) bool {
	q := p.QuietHours
	if q == nil {
		return false
	}
	start, err1 := parseClock(q.Start)
	end, err2 := parseClock(q.End)
	if err1 != nil || err2 != nil || start == end {
		return false
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	if start < end {
		return m >= start && m < end
	}
	return m >= start || m < end
}

// QuietUntil returns t when it falls outside the quiet hours (in loc),
// else the end of the quiet period holding it: when something held back
// rather than dropped (the weekly summary) may go out.
func (p Preferences) QuietUntil(t time.Time, loc *time.Location) time.Time {
	if !p.Quiet(t, loc) {
		return t
	}
	end, _ := parseClock(p.QuietHours.End) // Quiet checked it
	lt := t.In(loc)
	y, m, d := lt.Date()
	e := time.Date(y, m, d, end/60, end%60, 0, 0, loc)
	if !e.After(t) {
		e = time.Date(y, m, d+1, end/60, end%60, 0, 0, loc)
	}
	return e
}

// InFleet reports whether a unit (its serial and site) is in the
// account's fleet: owned by it, or at a site it manages. The account
// scope of a report, and of the weekly summary, is this set.
func (a Account) InFleet(serial ups.Serial, site string) bool {
	return slices.Contains(a.Units, serial) ||
		a.Role == RoleManager && site != "" && slices.Contains(a.Sites, site)
}

// Location is the account's time zone (UTC when unset or unknown).
func (a Account) Location() *time.Location { l, _ := a.Zone(); return l }

// Zone is Location, and false when the account names a zone this
// machine does not know (so a caller can say it fell back to UTC).
func (a Account) Zone() (*time.Location, bool) { return location(a.TimeZone) }

var zones sync.Map // name -> *time.Location

func location(name string) (*time.Location, bool) {
	if name == "" {
		return time.UTC, true
	}
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), true
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC, false
	}
	zones.Store(name, l)
	return l, true
}

// Addresses returns the account's addresses on channel: FCM tokens, APNS
// tokens or phone numbers.
func (c Contacts) Addresses(channel string) []string {
	switch channel {
	case FCM:
		return slices.Clone(c.FCMTokens)
	case APNS:
		out := make([]string, len(c.APNSTokens))
		for i, t := range c.APNSTokens {
			out[i] = t.Token
		}
		return out
	case SMS:
		return slices.Clone(c.Phones)
	}
	return nil
}

// BundleOf returns the bundle id registered with an APNS token.
func (c Contacts) BundleOf(token string) string {
	for _, t := range c.APNSTokens {
		if t.Token == token {
			return t.BundleID
		}
	}
	return ""
}

// remove deletes address from channel and reports whether it was there.
func (c *Contacts) remove(channel, address string) bool {
	n := c.count()
	switch channel {
	case FCM:
		c.FCMTokens = slices.DeleteFunc(c.FCMTokens, func(s string) bool { return s == address })
	case APNS:
		c.APNSTokens = slices.DeleteFunc(c.APNSTokens, func(t APNSToken) bool { return t.Token == address })
	case SMS:
		c.Phones = slices.DeleteFunc(c.Phones, func(s string) bool { return s == address })
	}
	return c.count() != n
}

func (c *Contacts) count() int { return len(c.FCMTokens) + len(c.APNSTokens) + len(c.Phones) }

var (
	idPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	e164         = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	apnsToken    = regexp.MustCompile(`^[0-9a-fA-F]{32,200}$`)
	bundleID     = regexp.MustCompile(`^[A-Za-z0-9.-]{1,155}$`)
	clockPattern = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	regionCode   = regexp.MustCompile(`^[A-Z]{2}$`)
)

// NormalizeEmail is the form an email is indexed under.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// ValidID reports whether id is a well-formed account id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func parseClock(s string) (int, error) {
	if !clockPattern.MatchString(s) {
		return 0, invalid("quiet hours time %q must be HH:MM", s)
	}
	return int(s[0]-'0')*600 + int(s[1]-'0')*60 + int(s[3]-'0')*10 + int(s[4]-'0'), nil
}

// validateProfile checks the language and time zone.
func validateProfile(language, tz string) error {
	if !slices.Contains(Languages, language) {
		return invalid("language must be one of %s", strings.Join(Languages, ", "))
	}
	if tz != "" {
		if _, err := time.LoadLocation(tz); err != nil || strings.HasPrefix(tz, "Local") {
			return invalid("time_zone must be an IANA zone like Asia/Ho_Chi_Minh")
		}
	}
	return nil
}

// Validate checks the personal fields. Errors never quote a token or
// number.
func (p Personal) Validate() error {
	ctl := func(r rune) bool { return r < 0x20 || r == 0x7f }
	if len(p.Name) > 200 || strings.ContainsFunc(p.Name, ctl) {
		return invalid("name must be at most 200 bytes without control characters")
	}
	if p.Email != "" && (len(p.Email) > 254 || !emailPattern.MatchString(p.Email)) {
		return invalid("email is not an email address")
	}
	if p.Phone != "" && !e164.MatchString(p.Phone) {
		return invalid("phone must be an E.164 number like +84901234567")
	}
	if len(p.Address) > 500 || strings.ContainsFunc(p.Address, func(r rune) bool { return ctl(r) && r != '\n' }) {
		return invalid("address must be at most 500 bytes without control characters")
	}
	return p.Contacts.Validate()
}

// Validate checks every contact's form.
func (c Contacts) Validate() error {
	if c.count() > 50 {
		return invalid("at most 50 contacts")
	}
	for i, t := range c.FCMTokens {
		if t == "" || len(t) > 4096 || strings.ContainsAny(t, " \t\r\n") {
			return invalid("fcm_tokens[%d] is not an FCM registration token", i)
		}
	}
	for i, t := range c.APNSTokens {
		if !apnsToken.MatchString(t.Token) {
			return invalid("apns_tokens[%d].token must be the device token in hex", i)
		}
		if t.BundleID != "" && !bundleID.MatchString(t.BundleID) {
			return invalid("apns_tokens[%d].bundle_id is not a bundle id", i)
		}
	}
	for i, p := range c.Phones {
		if !e164.MatchString(p) {
			return invalid("phones[%d] must be an E.164 number like +84901234567", i)
		}
	}
	return nil
}

// Validate checks the preferences.
func (p Preferences) Validate() error {
	for sev, chans := range p.Channels {
		if _, err := rules.ParseSeverity(sev); err != nil {
			return invalid("channels: severity %q must be info, warning or critical", sev)
		}
		for _, ch := range chans {
			if !slices.Contains(Channels, ch) {
				return invalid("channels.%s: channel %q must be fcm, apns or sms", sev, ch)
			}
		}
	}
	if q := p.QuietHours; q != nil {
		if _, err := parseClock(q.Start); err != nil {
			return err
		}
		if _, err := parseClock(q.End); err != nil {
			return err
		}
	}
	for _, s := range p.Muted {
		if !ups.ValidSerial(string(s)) {
			return invalid("muted: %q is not a serial number of 12 or 16 digits", s)
		}
	}
	return nil
}

// Mask shows the shape of a contact without revealing it: the first and
// last two characters of a token, the last two digits of a number.
func Mask(channel, address string) string {
	if channel == SMS {
		if len(address) <= 2 {
			return "**"
		}
		return strings.Repeat("*", len(address)-2) + address[len(address)-2:]
	}
	if len(address) <= 8 {
		return "***"
	}
	return address[:2] + "..." + address[len(address)-2:]
}
