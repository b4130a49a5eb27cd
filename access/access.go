// Package access lets people sign in to the web console: account
// passwords (argon2id), one-time invitation links that set them, and
// server-side sessions, all in NATS KV so any instance serves a person and
// a session can be revoked everywhere at once.
//
// Secrets are never stored as given: an invitation or session is keyed by
// the SHA-256 of its token, so reading the buckets yields nothing to sign
// in with.
//
// # Buckets
//
//	upswatch_logins    password.<account id>   argon2id PHC string
//	                   invite.<sha256 hex>     Invite (expires after InviteTTL)
//	upswatch_sessions  <sha256 hex>            Session (bucket TTL: SessionTTL)
//	upswatch_login_failures
//	                   account.<sha256 hex>    GCRA arrival time, unix ns
//	                   addr.<sha256 hex>       (bucket TTL: the longest refill)
package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/upswatch/upswatch/bus"
)

// Bucket names.
const (
	LoginsBucket   = bus.LoginsBucket
	SessionsBucket = bus.SessionsBucket
)

// Defaults.
const (
	DefaultInviteTTL  = 24 * time.Hour
	DefaultSessionTTL = 7 * 24 * time.Hour
)

// Errors callers test with errors.Is.
var (
	// ErrNoPassword: the account has not set a password yet.
	ErrNoPassword = errors.New("no password set for this account")
	// ErrInvite: the invitation is unknown, used or expired.
	ErrInvite = errors.New("this invitation link is invalid or has expired")
	// ErrNoSession: the session is unknown, ended or expired.
	ErrNoSession = errors.New("no such session")
)

// Options configure a Store.
type Options struct {
	Replicas   int
	InviteTTL  time.Duration // default DefaultInviteTTL
	SessionTTL time.Duration // default DefaultSessionTTL
	Now        func() time.Time
}

// Store holds passwords, invitations and sessions.
type Store struct {
	logins, sessions jetstream.KeyValue
	o                Options
}

// Open creates or opens the buckets.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if o.InviteTTL <= 0 {
		o.InviteTTL = DefaultInviteTTL
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	logins, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: LoginsBucket, Description: "console sign-in: password hashes and invitations",
		History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("access bucket %s: %w", LoginsBucket, err)
	}
	// The bucket's TTL removes sessions nobody ended; Session checks the
	// expiry too, since removal is not instant.
	sessions, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: SessionsBucket, Description: "console sessions, keyed by token hash",
		History: 1, TTL: o.SessionTTL, Storage: jetstream.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("access bucket %s: %w", SessionsBucket, err)
	}
	return &Store{logins: logins, sessions: sessions, o: o}, nil
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand's contract since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenKey(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

func notFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// SetPassword sets an account's password (replacing any).
func (s *Store) SetPassword(ctx context.Context, accountID, password string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	h, err := hashPassword(password, defaultParams)
	if err != nil {
		return err
	}
	if _, err := s.logins.Put(ctx, "password."+accountID, []byte(h)); err != nil {
		return fmt.Errorf("store password: %w", err)
	}
	return nil
}

// CheckPassword reports whether password is the account's;
// ErrNoPassword when it has none.
func (s *Store) CheckPassword(ctx context.Context, accountID, password string) (bool, error) {
	e, err := s.logins.Get(ctx, "password."+accountID)
	if notFound(err) {
		return false, ErrNoPassword
	}
	if err != nil {
		return false, fmt.Errorf("read password: %w", err)
	}
	ok, err := verifyPassword(password, string(e.Value()))
	if err != nil {
		return false, fmt.Errorf("account %s: %w", accountID, err)
	}
	return ok, nil
}

// Forget erases everything of an account: its password, and with it the
// ability to sign in (its sessions fail once the account is gone, since
// the console resolves the account on every request).
func (s *Store) Forget(ctx context.Context, accountID string) error {
	if err := s.logins.Purge(ctx, "password."+accountID); err != nil && !notFound(err) {
		return fmt.Errorf("erase password: %w", err)
	}
	return nil
}

// Invite is a pending invitation.
type Invite struct {
	AccountID string    `json:"account"`
	Expires   time.Time `json:"expires"`
}

// NewInvite issues a one-time token with which the account's holder sets
// a password, valid for the InviteTTL.
func (s *Store) NewInvite(ctx context.Context, accountID string) (string, Invite, error) {
	tok := newToken()
	inv := Invite{AccountID: accountID, Expires: s.o.Now().Add(s.o.InviteTTL).UTC()}
	b, _ := json.Marshal(inv)
	if _, err := s.logins.Create(ctx, "invite."+tokenKey(tok), b); err != nil {
		return "", Invite{}, fmt.Errorf("store invitation: %w", err)
	}
	return tok, inv, nil
}

// PeekInvite returns the invitation of tok without using it.
func (s *Store) PeekInvite(ctx context.Context, tok string) (Invite, error) {
	inv, _, err := s.invite(ctx, tok)
	return inv, err
}

func (s *Store) invite(ctx context.Context, tok string) (Invite, uint64, error) {
	if tok == "" {
		return Invite{}, 0, ErrInvite
	}
	e, err := s.logins.Get(ctx, "invite."+tokenKey(tok))
	if notFound(err) {
		return Invite{}, 0, ErrInvite
	}
	if err != nil {
		return Invite{}, 0, fmt.Errorf("read invitation: %w", err)
	}
	var inv Invite
	if err := json.Unmarshal(e.Value(), &inv); err != nil {
		return Invite{}, 0, fmt.Errorf("decode invitation: %w", err)
	}
	if !s.o.Now().Before(inv.Expires) {
		_ = s.logins.Purge(ctx, "invite."+tokenKey(tok))
		return Invite{}, 0, ErrInvite
	}
	return inv, e.Revision(), nil
}

// AcceptInvite sets the password of the invitation's account and uses
// the invitation up: a second use fails with ErrInvite, even when two
// requests race (the delete is conditional on the revision read).
func (s *Store) AcceptInvite(ctx context.Context, tok, password string) (string, error) {
	if err := checkPassword(password); err != nil {
		return "", err
	}
	inv, rev, err := s.invite(ctx, tok)
	if err != nil {
		return "", err
	}
	if err := s.logins.Delete(ctx, "invite."+tokenKey(tok), jetstream.LastRevision(rev)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return "", ErrInvite
		}
		return "", fmt.Errorf("use invitation: %w", err)
	}
	if err := s.SetPassword(ctx, inv.AccountID, password); err != nil {
		return "", err
	}
	return inv.AccountID, nil
}

// Session is a signed-in person: an account, or the operator who signed
// in with the admin token.
type Session struct {
	AccountID string    `json:"account,omitempty"`
	Admin     bool      `json:"admin,omitempty"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
}

// NewSession starts a session and returns its token (the cookie's value).
func (s *Store) NewSession(ctx context.Context, accountID string, admin bool) (string, Session, error) {
	now := s.o.Now().UTC()
	sess := Session{AccountID: accountID, Admin: admin, Created: now, Expires: now.Add(s.o.SessionTTL)}
	tok := newToken()
	b, _ := json.Marshal(sess)
	if _, err := s.sessions.Create(ctx, tokenKey(tok), b); err != nil {
		return "", Session{}, fmt.Errorf("store session: %w", err)
	}
	return tok, sess, nil
}

// Session resolves a session token; ErrNoSession when it is unknown,
// ended or expired.
func (s *Store) Session(ctx context.Context, tok string) (Session, error) {
	if tok == "" {
		return Session{}, ErrNoSession
	}
	e, err := s.sessions.Get(ctx, tokenKey(tok))
	if notFound(err) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session: %w", err)
	}
	var sess Session
	if err := json.Unmarshal(e.Value(), &sess); err != nil {
		return Session{}, fmt.Errorf("decode session: %w", err)
	}
	if !s.o.Now().Before(sess.Expires) {
		return Session{}, ErrNoSession
	}
	return sess, nil
}

// EndSession signs a session out, on every instance.
func (s *Store) EndSession(ctx context.Context, tok string) error {
	if tok == "" {
		return nil
	}
	if err := s.sessions.Purge(ctx, tokenKey(tok)); err != nil && !notFound(err) {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}
