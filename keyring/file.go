package keyring

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fileVersion is the keyring file format's version.
const fileVersion = 1

// File is the keyring file (and env value) format, JSON:
//
//	{
//	  "version": 1,
//	  "index_key": "<base64 of 32 bytes>",
//	  "keys": [
//	    {"id": "20260102-9f3a51c2", "key": "<base64 of 32 bytes>", "created": "2026-01-02T03:04:05Z"},
//	    {"id": "20260705-0c1d2e3f", "key": "<base64 of 32 bytes>", "created": "2026-07-05T00:00:00Z", "primary": true}
//	  ]
//	}
//
// Exactly one key is primary. index_key keys the blind indexes and must
// never change while any index made with it is stored.
type File struct {
	Version  int       `json:"version"`
	IndexKey string    `json:"index_key"`
	Keys     []FileKey `json:"keys"`
}

// FileKey is one key of a File.
type FileKey struct {
	ID      string    `json:"id"`
	Key     string    `json:"key"`
	Created time.Time `json:"created"`
	Primary bool      `json:"primary,omitempty"`
}

// decodeKey accepts standard base64, padded or not.
func decodeKey(what, s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		// The error text of encoding/base64 names a byte offset only,
		// never the input.
		return nil, fmt.Errorf("%w: %s is not base64: %w", ErrInvalid, what, err)
	}
	if len(b) != KeySize {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrInvalid, what, len(b), KeySize)
	}
	return b, nil
}

// fromFile validates f and builds the keyring.
func fromFile(f *File) (*Keyring, error) {
	if f.Version != fileVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrInvalid, f.Version, fileVersion)
	}
	if f.IndexKey == "" {
		return nil, fmt.Errorf("%w: index_key is missing", ErrInvalid)
	}
	ik, err := decodeKey("index_key", f.IndexKey)
	if err != nil {
		return nil, err
	}
	if len(f.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrInvalid)
	}
	r := &Keyring{keys: map[string]*key{}, indexKey: ik, now: time.Now}
	for i, fk := range f.Keys {
		if err := validID(fk.ID); err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		if r.keys[fk.ID] != nil {
			return nil, fmt.Errorf("%w: keys[%d]: duplicate key id %q", ErrInvalid, i, fk.ID)
		}
		secret, err := decodeKey(fmt.Sprintf("keys[%d] (id %q) key", i, fk.ID), fk.Key)
		if err != nil {
			return nil, err
		}
		if hmac.Equal(secret, ik) {
			return nil, fmt.Errorf("%w: keys[%d] (id %q) is the same as index_key", ErrInvalid, i, fk.ID)
		}
		for _, other := range r.keys {
			if hmac.Equal(secret, other.secret) {
				return nil, fmt.Errorf("%w: keys[%d] (id %q) has the same key as id %q", ErrInvalid, i, fk.ID, other.id)
			}
		}
		k, err := newKey(fk.ID, secret, fk.Created)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		r.keys[k.id] = k
		r.order = append(r.order, k.id)
		if fk.Primary {
			if r.primary != nil {
				return nil, fmt.Errorf("%w: keys %q and %q are both marked primary", ErrInvalid, r.primary.id, k.id)
			}
			r.primary = k
		}
	}
	if r.primary == nil {
		return nil, fmt.Errorf("%w: no key is marked primary", ErrInvalid)
	}
	return r, nil
}

// decode reads a File strictly: unknown fields and trailing data fail.
func decode(data []byte) (*Keyring, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the keyring object", ErrInvalid)
	}
	return fromFile(&f)
}

// Load reads a keyring file. Group or world access to the file is refused:
// it holds every key.
func Load(path string) (*Keyring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keyring: %s: permissions %04o give access to others; chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer clear(data)
	r, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// FromEnv reads a keyring from an environment variable's value: the JSON
// of a keyring file, or that JSON in base64 (standard or URL alphabet,
// padded or not), which survives any shell quoting. See EnvValue.
func FromEnv(value string) (*Keyring, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, fmt.Errorf("%w: the environment value is empty", ErrInvalid)
	}
	if strings.HasPrefix(value, "{") {
		return decode([]byte(value))
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if data, err := enc.DecodeString(value); err == nil {
			defer clear(data)
			return decode(data)
		}
	}
	return nil, fmt.Errorf("%w: the environment value is neither keyring JSON nor base64 of it", ErrInvalid)
}

// file returns the keyring as a File.
func (r *Keyring) file() *File {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f := &File{Version: fileVersion, IndexKey: base64.StdEncoding.EncodeToString(r.indexKey)}
	for _, id := range r.order {
		k := r.keys[id]
		f.Keys = append(f.Keys, FileKey{
			ID:      k.id,
			Key:     base64.StdEncoding.EncodeToString(k.secret),
			Created: k.created,
			Primary: k == r.primary,
		})
	}
	return f
}

func (r *Keyring) marshal() ([]byte, error) {
	data, err := json.MarshalIndent(r.file(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keyring: encode: %w", err)
	}
	return append(data, '\n'), nil
}

// EnvValue returns the keyring as a value for FromEnv (base64url of the
// file's JSON). It is secret.
func (r *Keyring) EnvValue() (string, error) {
	data, err := r.marshal()
	if err != nil {
		return "", err
	}
	defer clear(data)
	return base64.RawURLEncoding.EncodeToString(data), nil
}

// Save writes the keyring to path with mode 0600, atomically: a temporary
// file in the same directory, synced, then renamed over path.
func (r *Keyring) Save(path string) (err error) {
	data, err := r.marshal()
	if err != nil {
		return err
	}
	defer clear(data)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("keyring: save: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; say it, in case that changes.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("keyring: save: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("keyring: save: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("keyring: save: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keyring: save: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("keyring: save: %w", err)
	}
	return nil
}
