// Package keyring encrypts personal fields at rest with AES-256-GCM under
// keys that carry an id, so keys can rotate without re-encrypting
// everything at once, and derives blind indexes so a record can be found by
// email or phone without storing either in clear.
//
// A sealed value is base64url (no padding) of
//
//	version (1 byte, 1) | id length (1 byte) | key id | nonce (12 bytes) | ciphertext and tag
//
// Seal always uses the primary key; Open uses whichever key the value names.
// The header (version and key id) and the caller's associated data are both
// authenticated: associated data should name the record and the field
// (account id + field name), so a ciphertext copied into another record or
// field fails to open.
//
// Key material never appears in errors, String, GoString or slog output.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// KeySize is the size of every key in bytes (AES-256, HMAC-SHA256).
const KeySize = 32

// version is the first byte of every sealed value.
const version byte = 1

const (
	nonceSize = 12
	tagSize   = 16
	maxIDLen  = 64
)

// Errors, for errors.Is. The returned errors wrap them with context (the
// key id, never key material or plaintext).
var (
	// ErrUnknownKey: the sealed value names a key id the keyring lacks.
	ErrUnknownKey = errors.New("keyring: unknown key id")
	// ErrDecrypt: authentication failed, because the value was altered or
	// the associated data differs from the one it was sealed with.
	ErrDecrypt = errors.New("keyring: decryption failed (tampered value or wrong associated data)")
	// ErrMalformed: the value is not a sealed value of a known version.
	ErrMalformed = errors.New("keyring: malformed sealed value")
	// ErrInvalid: a keyring file, env value or key id that does not validate.
	ErrInvalid = errors.New("keyring: invalid keyring")
)

var b64 = base64.RawURLEncoding

// key is one data-encryption key.
type key struct {
	id      string
	secret  []byte
	created time.Time
	aead    cipher.AEAD
}

// Keyring holds the data keys (one primary, used to seal) and the index
// key (used for blind indexes; it never rotates, or every index would
// change). Make one with Generate, Load or FromEnv (the zero value has no
// keys). It is safe for concurrent use.
type Keyring struct {
	mu       sync.RWMutex
	keys     map[string]*key
	order    []string // ids in the order they were added
	primary  *key
	indexKey []byte
	now      func() time.Time
}

func newKey(id string, secret []byte, created time.Time) (*key, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	if len(secret) != KeySize {
		return nil, fmt.Errorf("%w: key %q is %d bytes, want %d", ErrInvalid, id, len(secret), KeySize)
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("keyring: key %q: %w", id, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keyring: key %q: %w", id, err)
	}
	return &key{id: id, secret: secret, created: created, aead: aead}, nil
}

// validID accepts 1 to 64 characters of [A-Za-z0-9._-].
func validID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: key id %q must have 1 to %d characters", ErrInvalid, id, maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: key id %q: only letters, digits, '.', '_' and '-' are allowed", ErrInvalid, id)
		}
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	// crypto/rand.Read never returns an error (it crashes the program
	// when the system's source fails).
	_, _ = rand.Read(b)
	return b
}

// newID makes a key id from the date and random bits: "20260102-9f3a51c2".
func newID(now time.Time) string {
	return now.UTC().Format("20060102") + "-" + hex.EncodeToString(randomBytes(4))
}

// Generate returns a new keyring with one primary key and an index key.
func Generate() (*Keyring, error) {
	return generate(time.Now)
}

func generate(now func() time.Time) (*Keyring, error) {
	t := now().UTC().Truncate(time.Second)
	k, err := newKey(newID(t), randomBytes(KeySize), t)
	if err != nil {
		return nil, err
	}
	return &Keyring{
		keys:     map[string]*key{k.id: k},
		order:    []string{k.id},
		primary:  k,
		indexKey: randomBytes(KeySize),
		now:      now,
	}, nil
}

// Primary returns the id of the key Seal uses.
func (r *Keyring) Primary() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.primary.id
}

// IDs returns the key ids, oldest first.
func (r *Keyring) IDs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.order)
}

// Rotate adds a new key and makes it the primary; the old keys stay for
// Open. It returns the new key's id. Save the keyring, then Reseal every
// value for which NeedsRotation is true; after that, Remove may drop the
// old keys.
func (r *Keyring) Rotate() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.now().UTC().Truncate(time.Second)
	id := newID(t)
	for r.keys[id] != nil { // 32 random bits: practically never
		id = newID(t)
	}
	k, err := newKey(id, randomBytes(KeySize), t)
	if err != nil {
		return "", err
	}
	r.keys[id] = k
	r.order = append(r.order, id)
	r.primary = k
	return id, nil
}

// Remove drops a retired key. Values sealed under it can no longer be
// opened, so call it only once they are all resealed. The primary key
// cannot be removed.
func (r *Keyring) Remove(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys[id] == nil {
		return fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	if r.primary.id == id {
		return fmt.Errorf("keyring: key %q is the primary key and cannot be removed", id)
	}
	delete(r.keys, id)
	r.order = slices.DeleteFunc(r.order, func(s string) bool { return s == id })
	return nil
}

// header returns version | id length | id.
func header(id string) []byte {
	h := make([]byte, 0, 2+len(id))
	h = append(h, version, byte(len(id)))
	return append(h, id...)
}

// additional is what GCM authenticates besides the ciphertext: the header
// then the caller's associated data. The header has its own length, so the
// concatenation is unambiguous.
func additional(hdr, ad []byte) []byte {
	a := make([]byte, 0, len(hdr)+len(ad))
	a = append(a, hdr...)
	return append(a, ad...)
}

// Seal encrypts plaintext under the primary key, bound to associatedData,
// and returns the sealed value as base64url text.
func (r *Keyring) Seal(plaintext, associatedData []byte) (string, error) {
	r.mu.RLock()
	k := r.primary
	r.mu.RUnlock()
	hdr := header(k.id)
	out := make([]byte, 0, len(hdr)+nonceSize+len(plaintext)+tagSize)
	out = append(out, hdr...)
	nonce := randomBytes(nonceSize)
	out = append(out, nonce...)
	out = k.aead.Seal(out, nonce, plaintext, additional(hdr, associatedData))
	return b64.EncodeToString(out), nil
}

// parsed is a decoded sealed value.
type parsed struct {
	hdr   []byte
	id    string
	nonce []byte
	box   []byte // ciphertext and tag
}

func parse(sealed string) (parsed, error) {
	raw, err := b64.DecodeString(sealed)
	if err != nil {
		return parsed{}, fmt.Errorf("%w: not base64url: %w", ErrMalformed, err)
	}
	if len(raw) < 2 {
		return parsed{}, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(raw))
	}
	if raw[0] != version {
		return parsed{}, fmt.Errorf("%w: unsupported version %d", ErrMalformed, raw[0])
	}
	n := int(raw[1])
	if n == 0 || n > maxIDLen || len(raw) < 2+n+nonceSize+tagSize {
		return parsed{}, fmt.Errorf("%w: %d bytes is too short for its header", ErrMalformed, len(raw))
	}
	return parsed{
		hdr:   raw[:2+n],
		id:    string(raw[2 : 2+n]),
		nonce: raw[2+n : 2+n+nonceSize],
		box:   raw[2+n+nonceSize:],
	}, nil
}

// Open decrypts a sealed value with the key it names. The associated data
// must be the one given to Seal.
func (r *Keyring) Open(sealed string, associatedData []byte) ([]byte, error) {
	p, err := parse(sealed)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	k := r.keys[p.id]
	r.mu.RUnlock()
	if k == nil {
		return nil, fmt.Errorf("%w %q: the value was sealed under a key this keyring does not hold", ErrUnknownKey, p.id)
	}
	plain, err := k.aead.Open(nil, p.nonce, p.box, additional(p.hdr, associatedData))
	if err != nil {
		return nil, fmt.Errorf("%w (key %q)", ErrDecrypt, p.id)
	}
	return plain, nil
}

// KeyID returns the id of the key a sealed value was made under, without
// decrypting it.
func KeyID(sealed string) (string, error) {
	p, err := parse(sealed)
	if err != nil {
		return "", err
	}
	return p.id, nil
}

// NeedsRotation reports whether sealed was not made under the current
// primary key. A value it cannot parse also needs it, so that a rotation
// pass hands it to Reseal, which reports the error.
func (r *Keyring) NeedsRotation(sealed string) bool {
	id, err := KeyID(sealed)
	if err != nil {
		return true
	}
	return id != r.Primary()
}

// Reseal opens sealed and, unless it is already under the primary key,
// seals it again under the primary with the same associated data. A value
// already under the primary is returned as it is (after checking it opens).
func (r *Keyring) Reseal(sealed string, associatedData []byte) (string, error) {
	plain, err := r.Open(sealed, associatedData)
	if err != nil {
		return "", fmt.Errorf("reseal: %w", err)
	}
	defer clear(plain)
	if !r.NeedsRotation(sealed) {
		return sealed, nil
	}
	out, err := r.Seal(plain, associatedData)
	if err != nil {
		return "", fmt.Errorf("reseal: %w", err)
	}
	return out, nil
}

// blindDomain separates blind-index HMAC inputs from any other use of the
// index key.
const blindDomain = "upswatch/blind-index/v1"

// BlindIndex returns a deterministic pseudonym of value for lookups, as
// base64url of HMAC-SHA256 under the index key. kind ("email", "phone")
// separates the namespaces: the same value under two kinds gives two
// unrelated indexes. Callers normalise value first (lower-case email,
// E.164 phone), or equal values written differently will not match.
func (r *Keyring) BlindIndex(kind, value string) string {
	r.mu.RLock()
	ik := r.indexKey
	r.mu.RUnlock()
	m := hmac.New(sha256.New, ik)
	var n [binary.MaxVarintLen64]byte
	m.Write([]byte(blindDomain))
	m.Write(n[:binary.PutUvarint(n[:], uint64(len(kind)))])
	m.Write([]byte(kind))
	m.Write([]byte(value))
	return b64.EncodeToString(m.Sum(nil))
}

// String describes the keyring without key material.
func (r *Keyring) String() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return fmt.Sprintf("keyring(primary=%s, keys=%d)", r.primary.id, len(r.keys))
}

// GoString is String, so %#v prints no key material either.
func (r *Keyring) GoString() string { return r.String() }

// LogValue logs the key ids only.
func (r *Keyring) LogValue() slog.Value {
	return slog.GroupValue(slog.String("primary", r.Primary()), slog.Any("keys", r.IDs()))
}
