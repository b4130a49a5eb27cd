package recipients

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
	"github.com/upswatch/upswatch/ups"
)

// Bucket is the KV bucket of recipient accounts.
const Bucket = bus.RecipientsBucket

const (
	accountPrefix  = "account."
	personalPrefix = "personal."
	emailPrefix    = "email."
	tokenPrefix    = "token."
)

// Sealer protects the personal record at rest. Seal and Open must be
// inverse; key names the record, so a sealer can bind it as associated
// data.
type Sealer interface {
	Seal(key string, plain []byte) ([]byte, error)
	Open(key string, sealed []byte) ([]byte, error)
}

// ErrNoSealer is returned by Open without a Sealer: personal data is
// never stored in plain text.
var ErrNoSealer = errors.New("recipients: a Sealer is required (personal records are stored sealed)")

// Options for Open.
type Options struct {
	Replicas int
	Logger   *slog.Logger
	// Sealer of the personal records (keyring.Records); required.
	Sealer Sealer
	// Index makes the blind index an email is found by (keyring.BlindIndex);
	// nil: an unkeyed SHA-256, which hides nothing from a guesser.
	Index func(kind, value string) string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Store is the bucket plus the live view.
type Store struct {
	kv     jetstream.KeyValue
	log    *slog.Logger
	sealer Sealer
	index  func(kind, value string) string
	now    func() time.Time

	mu       sync.RWMutex
	accounts map[string]*Account
	personal map[string]*Personal
	routes   routes     // who an alert goes to (routing.go)
	tokens   tokenIndex // which account an API token belongs to (tokens.go)
	// unreadable holds the personal records the Sealer could not open,
	// by account id, with the cause (see CheckSealer).
	unreadable map[string]error

	ready     chan struct{}
	readyOnce sync.Once

	// revMu orders applies by revision: a write applies its result to
	// the view at once, and the watch delivers it (and older writes of
	// the same key) later; revs holds the newest revision applied per key,
	// so a late, older one never rolls the view back.
	revMu sync.Mutex
	revs  map[string]uint64
}

// Open creates the bucket if needed. It starts nothing: Run keeps the view.
// It refuses to open without a Sealer (ErrNoSealer).
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if o.Sealer == nil {
		return nil, ErrNoSealer
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Index == nil {
		o.Index = unkeyedIndex
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "notification recipients: accounts, contacts, preferences, ownership",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("recipients bucket %s: %w", Bucket, err)
	}
	return &Store{kv: kv, log: o.Logger.With("component", "recipients"), sealer: o.Sealer, index: o.Index, now: o.Now,
		accounts: map[string]*Account{}, personal: map[string]*Personal{}, routes: newRoutes(), tokens: tokenIndex{}, unreadable: map[string]error{}, revs: map[string]uint64{},
		ready: make(chan struct{})}, nil
}

// Run watches the bucket and keeps the view current until ctx is done.
func (s *Store) Run(ctx context.Context) error {
	return bus.WatchKVEntries(ctx, s.kv, s.log, func(e jetstream.KeyValueEntry) {
		s.applyAt(e.Key(), e.Value(), e.Operation() != jetstream.KeyValuePut, e.Revision())
	}, func() { s.readyOnce.Do(func() { close(s.ready) }) })
}

// applyAt applies a record at revision rev unless the view already holds
// that key at rev or newer. rev 0 (a local delete, whose revision the
// client is not told) always applies.
func (s *Store) applyAt(key string, value []byte, deleted bool, rev uint64) {
	s.revMu.Lock()
	defer s.revMu.Unlock()
	if rev != 0 {
		if rev <= s.revs[key] {
			return
		}
		s.revs[key] = rev
	}
	s.apply(key, value, deleted)
}

// Ready is closed when the view has caught up with the bucket.
func (s *Store) Ready() <-chan struct{} { return s.ready }

func (s *Store) apply(key string, value []byte, deleted bool) {
	switch {
	case strings.HasPrefix(key, accountPrefix):
		id := strings.TrimPrefix(key, accountPrefix)
		var a *Account
		if !deleted {
			a = new(Account)
			if err := json.Unmarshal(value, a); err != nil {
				s.log.Error("account record unreadable; ignored", "account", id, "err", err)
				return
			}
			if a.Role == "" {
				a.Role = RoleOwner // made before roles
			}
		}
		s.mu.Lock()
		s.setAccountLocked(id, a)
		s.mu.Unlock()
	case strings.HasPrefix(key, personalPrefix):
		id := strings.TrimPrefix(key, personalPrefix)
		var p *Personal
		if !deleted {
			var err error
			if p, err = s.decodePersonal(key, value); err != nil {
				s.log.Error("personal record unreadable; ignored", "account", id, "err", err)
				s.mu.Lock()
				delete(s.personal, id)
				s.unreadable[id] = err
				s.mu.Unlock()
				return
			}
		}
		s.mu.Lock()
		delete(s.unreadable, id)
		if p == nil {
			delete(s.personal, id)
		} else {
			s.personal[id] = p
		}
		s.mu.Unlock()
	case strings.HasPrefix(key, tokenPrefix):
		s.mu.Lock()
		err := s.tokens.apply(strings.TrimPrefix(key, tokenPrefix), value, deleted)
		s.mu.Unlock()
		if err != nil {
			s.log.Error("token record unreadable; ignored", "err", err)
		}
	}
}

// setAccountLocked replaces (a nil: removes) an account and re-indexes it.
func (s *Store) setAccountLocked(id string, a *Account) {
	s.routes.set(id, s.accounts[id], a)
	if a == nil {
		delete(s.accounts, id)
		return
	}
	s.accounts[id] = a
}

func (s *Store) decodePersonal(key string, value []byte) (*Personal, error) {
	b, err := s.sealer.Open(key, value)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	p := new(Personal)
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return p, nil
}

// Lookup returns an account from the view.
func (s *Store) Lookup(id string) (Recipient, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lookupLocked(id)
}

func (s *Store) lookupLocked(id string) (Recipient, bool) {
	a := s.accounts[id]
	if a == nil {
		return Recipient{}, false
	}
	r := Recipient{Account: cloneAccount(*a)}
	if p := s.personal[id]; p != nil {
		r.Personal = clonePersonal(*p)
	}
	return r, true
}

func cloneAccount(a Account) Account {
	a.Units, a.Sites, a.Dropped = slices.Clone(a.Units), slices.Clone(a.Sites), slices.Clone(a.Dropped)
	a.Preferences.Muted = slices.Clone(a.Preferences.Muted)
	if a.Preferences.Channels != nil {
		m := make(map[string][]string, len(a.Preferences.Channels))
		for k, v := range a.Preferences.Channels {
			m[k] = slices.Clone(v)
		}
		a.Preferences.Channels = m
	}
	if q := a.Preferences.QuietHours; q != nil {
		c := *q
		a.Preferences.QuietHours = &c
	}
	return a
}

func clonePersonal(p Personal) Personal {
	p.Contacts.FCMTokens = slices.Clone(p.Contacts.FCMTokens)
	p.Contacts.APNSTokens = slices.Clone(p.Contacts.APNSTokens)
	p.Contacts.Phones = slices.Clone(p.Contacts.Phones)
	return p
}

// NewID returns a fresh random account id.
func NewID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b) // never fails (Go 1.24+)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// Create stores a new account. An empty r.ID gets a random one; the
// returned Recipient is as stored.
func (s *Store) Create(ctx context.Context, r Recipient) (Recipient, error) {
	if r.ID == "" {
		r.ID = NewID()
	}
	if !ValidID(r.ID) {
		return Recipient{}, invalid("id must be 1-64 of a-z, 0-9, _ and -, starting with a letter or digit")
	}
	if r.Language == "" {
		r.Language = "en"
	}
	if r.Role == "" {
		r.Role = RoleOwner
	}
	r.Email = NormalizeEmail(r.Email)
	r.Tokens = nil
	if err := validateAccount(r.Account); err != nil {
		return Recipient{}, err
	}
	if err := r.Personal.Validate(); err != nil {
		return Recipient{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	r.CreatedAt, r.UpdatedAt, r.Dropped = now, now, nil
	if r.Marketing.Granted {
		r.Marketing.At = &now
	}
	if _, ok := s.Lookup(r.ID); ok {
		return Recipient{}, fmt.Errorf("%w: %s", ErrExists, r.ID)
	}
	if err := s.claimEmail(ctx, r.ID, r.Email); err != nil {
		return Recipient{}, err
	}
	// Personal first: an account record without it would route to nobody,
	// a personal record without its account is invisible.
	pb, err := s.encodePersonal(r.ID, r.Personal)
	if err != nil {
		return Recipient{}, err
	}
	pRev, err := s.kv.Put(ctx, personalPrefix+r.ID, pb)
	if err != nil {
		s.releaseEmail(ctx, r.Email)
		return Recipient{}, fmt.Errorf("store personal record: %w", err)
	}
	ab, err := json.Marshal(r.Account)
	if err != nil {
		return Recipient{}, fmt.Errorf("encode account: %w", err)
	}
	aRev, err := s.kv.Create(ctx, accountPrefix+r.ID, ab)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Recipient{}, fmt.Errorf("%w: %s", ErrExists, r.ID)
		}
		return Recipient{}, fmt.Errorf("store account: %w", err)
	}
	s.applyAt(personalPrefix+r.ID, pb, false, pRev)
	s.applyAt(accountPrefix+r.ID, ab, false, aRev)
	return s.mustLookup(r.ID)
}

func validateAccount(a Account) error {
	if err := validateProfile(a.Language, a.TimeZone); err != nil {
		return err
	}
	if !slices.Contains(Roles, a.Role) {
		return invalid("role must be one of %s", strings.Join(Roles, ", "))
	}
	if a.Region != "" && !regionCode.MatchString(a.Region) {
		return invalid("region must be an ISO 3166-1 alpha-2 code like VN")
	}
	if err := a.Preferences.Validate(); err != nil {
		return err
	}
	for _, u := range a.Units {
		if !ups.ValidSerial(string(u)) {
			return invalid("units: %q is not a serial number of 12 or 16 digits", u)
		}
	}
	for _, st := range a.Sites {
		if st == "" || len(st) > 200 {
			return invalid("sites: a site must be 1-200 bytes")
		}
	}
	return nil
}

func (s *Store) encodePersonal(id string, p Personal) ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode personal record: %w", err)
	}
	sealed, err := s.sealer.Seal(personalPrefix+id, b)
	if err != nil {
		return nil, fmt.Errorf("seal personal record: %w", err)
	}
	return sealed, nil
}

func (s *Store) mustLookup(id string) (Recipient, error) {
	r, ok := s.Lookup(id)
	if !ok {
		return Recipient{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return r, nil
}

// updateAccount applies fn to the stored account with compare-and-set,
// retrying on a concurrent write.
func (s *Store) updateAccount(ctx context.Context, id string, fn func(*Account) error) (Recipient, error) {
	key := accountPrefix + id
	for attempt := 0; ; attempt++ {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return Recipient{}, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return Recipient{}, fmt.Errorf("read account: %w", err)
		}
		var a Account
		if err := json.Unmarshal(e.Value(), &a); err != nil {
			return Recipient{}, fmt.Errorf("decode account %s: %w", id, err)
		}
		if a.Role == "" {
			a.Role = RoleOwner
		}
		if err := fn(&a); err != nil {
			return Recipient{}, err
		}
		if err := validateAccount(a); err != nil {
			return Recipient{}, err
		}
		a.UpdatedAt = s.now().UTC().Truncate(time.Second)
		b, err := json.Marshal(a)
		if err != nil {
			return Recipient{}, fmt.Errorf("encode account: %w", err)
		}
		newRev, err := s.kv.Update(ctx, key, b, e.Revision())
		if err != nil {
			if attempt < 10 && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
				continue // a concurrent write won; reapply on its result
			}
			return Recipient{}, fmt.Errorf("store account: %w", err)
		}
		s.applyAt(key, b, false, newRev)
		return s.mustLookup(id)
	}
}

// updatePersonal is updateAccount for the personal record.
func (s *Store) updatePersonal(ctx context.Context, id string, fn func(*Personal) (bool, error)) (Recipient, bool, error) {
	if _, ok := s.Lookup(id); !ok {
		if _, err := s.kv.Get(ctx, accountPrefix+id); err != nil {
			return Recipient{}, false, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
	}
	key := personalPrefix + id
	for attempt := 0; ; attempt++ {
		var p Personal
		var rev uint64
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		case err != nil:
			return Recipient{}, false, fmt.Errorf("read personal record: %w", err)
		default:
			pp, err := s.decodePersonal(key, e.Value())
			if err != nil {
				return Recipient{}, false, fmt.Errorf("personal record of %s: %w", id, err)
			}
			p, rev = *pp, e.Revision()
		}
		changed, err := fn(&p)
		if err != nil || !changed {
			r, _ := s.Lookup(id)
			return r, false, err
		}
		if err := p.Validate(); err != nil {
			return Recipient{}, false, err
		}
		b, err := s.encodePersonal(id, p)
		if err != nil {
			return Recipient{}, false, err
		}
		var newRev uint64
		if rev == 0 {
			newRev, err = s.kv.Create(ctx, key, b)
		} else {
			newRev, err = s.kv.Update(ctx, key, b, rev)
		}
		if err != nil {
			if attempt < 10 && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
				continue
			}
			return Recipient{}, false, fmt.Errorf("store personal record: %w", err)
		}
		s.applyAt(key, b, false, newRev)
		r, err := s.mustLookup(id)
		return r, true, err
	}
}

// Profile is what UpdateProfile changes: every field is replaced.
type Profile struct {
	Name     string
	Email    string
	Phone    string
	Address  string
	Region   string
	Language string
	TimeZone string
	// Marketing is the marketing consent.
	Marketing bool
}

// UpdateProfile replaces the profile fields (personal and not).
func (s *Store) UpdateProfile(ctx context.Context, id string, p Profile) (Recipient, error) {
	if err := validateProfile(p.Language, p.TimeZone); err != nil {
		return Recipient{}, err
	}
	p.Email = NormalizeEmail(p.Email)
	if err := (Personal{Name: p.Name, Email: p.Email, Phone: p.Phone, Address: p.Address}).Validate(); err != nil {
		return Recipient{}, err
	}
	old, ok := s.Lookup(id)
	if !ok {
		return Recipient{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if p.Email != old.Email {
		if err := s.claimEmail(ctx, id, p.Email); err != nil {
			return Recipient{}, err
		}
	}
	if _, err := s.updateAccount(ctx, id, func(a *Account) error {
		a.Language, a.TimeZone, a.Region = p.Language, p.TimeZone, p.Region
		if a.Marketing.Granted != p.Marketing {
			at := s.now().UTC().Truncate(time.Second)
			a.Marketing = Consent{Granted: p.Marketing, At: &at}
		}
		return nil
	}); err != nil {
		return Recipient{}, err
	}
	r, _, err := s.updatePersonal(ctx, id, func(per *Personal) (bool, error) {
		per.Name, per.Email, per.Phone, per.Address = p.Name, p.Email, p.Phone, p.Address
		return true, nil
	})
	if err == nil && p.Email != old.Email {
		s.releaseEmail(ctx, old.Email)
	}
	return r, err
}

// SetContacts replaces the account's contacts.
func (s *Store) SetContacts(ctx context.Context, id string, c Contacts) (Recipient, error) {
	if err := c.Validate(); err != nil {
		return Recipient{}, err
	}
	r, _, err := s.updatePersonal(ctx, id, func(p *Personal) (bool, error) {
		p.Contacts = c
		return true, nil
	})
	return r, err
}

// SetPreferences replaces the account's preferences.
func (s *Store) SetPreferences(ctx context.Context, id string, p Preferences) (Recipient, error) {
	if err := p.Validate(); err != nil {
		return Recipient{}, err
	}
	return s.updateAccount(ctx, id, func(a *Account) error { a.Preferences = p; return nil })
}

// SetUnit makes the account an owner of serial (owned) or not.
func (s *Store) SetUnit(ctx context.Context, id string, serial ups.Serial, owned bool) (Recipient, error) {
	if !ups.ValidSerial(string(serial)) {
		return Recipient{}, invalid("serial must have exactly 12 or 16 digits")
	}
	return s.updateAccount(ctx, id, func(a *Account) error {
		a.Units = slices.DeleteFunc(a.Units, func(u ups.Serial) bool { return u == serial })
		if owned {
			a.Units = append(a.Units, serial)
		}
		return nil
	})
}

// SetSite makes the account a manager of site (managed) or not.
func (s *Store) SetSite(ctx context.Context, id, site string, managed bool) (Recipient, error) {
	return s.updateAccount(ctx, id, func(a *Account) error {
		a.Sites = slices.DeleteFunc(a.Sites, func(x string) bool { return x == site })
		if managed {
			a.Sites = append(a.Sites, site)
		}
		return nil
	})
}

// Delete removes the account and its personal record, purging both keys
// so no history of them stays in the bucket.
func (s *Store) Delete(ctx context.Context, id string) error {
	if _, err := s.kv.Get(ctx, accountPrefix+id); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return fmt.Errorf("read account: %w", err)
	}
	r, _ := s.Lookup(id)
	for _, t := range s.tokenHashes(id) {
		if err := s.kv.Purge(ctx, tokenPrefix+t); err != nil {
			return fmt.Errorf("remove token: %w", err)
		}
		s.applyAt(tokenPrefix+t, nil, true, 0)
	}
	if r.Email != "" {
		if err := s.kv.Purge(ctx, emailPrefix+s.index("email", r.Email)); err != nil {
			return fmt.Errorf("remove email index: %w", err)
		}
	}
	if err := s.kv.Purge(ctx, accountPrefix+id); err != nil {
		return fmt.Errorf("remove account: %w", err)
	}
	if err := s.kv.Purge(ctx, personalPrefix+id); err != nil {
		return fmt.Errorf("remove personal record: %w", err)
	}
	s.applyAt(accountPrefix+id, nil, true, 0)
	s.applyAt(personalPrefix+id, nil, true, 0)
	return nil
}

// DropToken removes a dead address (FCM or APNS token, phone number) from
// the account's contacts and records why, masked, in the account. An
// address already gone is not an error.
func (s *Store) DropToken(ctx context.Context, accountID, channel, address, reason string) error {
	_, removed, err := s.updatePersonal(ctx, accountID, func(p *Personal) (bool, error) {
		return p.Contacts.remove(channel, address), nil
	})
	if err != nil || !removed {
		return err
	}
	_, err = s.updateAccount(ctx, accountID, func(a *Account) error {
		a.Dropped = append(a.Dropped, Dropped{Channel: channel, Contact: Mask(channel, address), Reason: reason,
			At: s.now().UTC().Truncate(time.Second)})
		if n := len(a.Dropped); n > maxDropped {
			a.Dropped = a.Dropped[n-maxDropped:]
		}
		return nil
	})
	if err == nil {
		s.log.Info("contact dropped", "account", accountID, "channel", channel, "reason", reason)
	}
	return err
}
