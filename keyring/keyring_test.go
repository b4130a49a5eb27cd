package keyring

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustGenerate(t testing.TB) *Keyring {
	t.Helper()
	r, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRoundTrip(t *testing.T) {
	r := mustGenerate(t)
	for _, plain := range [][]byte{nil, []byte(""), []byte("+84901234567"), bytes.Repeat([]byte("địa chỉ "), 1000)} {
		ad := []byte("account/a1/phone")
		s, err := r.Seal(plain, ad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := base64.RawURLEncoding.DecodeString(s); err != nil {
			t.Fatalf("sealed value is not base64url: %v", err)
		}
		got, err := r.Open(s, ad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("Open = %q, want %q", got, plain)
		}
		id, err := KeyID(s)
		if err != nil || id != r.Primary() {
			t.Fatalf("KeyID = %q, %v; want %q", id, err, r.Primary())
		}
	}
}

func TestSealIsRandomised(t *testing.T) {
	r := mustGenerate(t)
	a, _ := r.Seal([]byte("same"), nil)
	b, _ := r.Seal([]byte("same"), nil)
	if a == b {
		t.Fatal("two seals of the same plaintext are equal: nonce reused")
	}
}

func TestAssociatedDataMismatch(t *testing.T) {
	r := mustGenerate(t)
	s, err := r.Seal([]byte("alice@example.com"), []byte("account/a1/email"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range []string{"account/a2/email", "account/a1/phone", "", "account/a1/email "} {
		_, err := r.Open(s, []byte(ad))
		if !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open with ad %q: err = %v, want ErrDecrypt", ad, err)
		}
	}
}

func TestTamper(t *testing.T) {
	r := mustGenerate(t)
	ad := []byte("account/a1/address")
	s, err := r.Seal([]byte("12 Lê Lợi, Quận 1"), ad)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(s)
	idEnd := 2 + len(r.Primary())
	// Every byte flipped must fail, with the error the position calls for.
	for i := range raw {
		mod := bytes.Clone(raw)
		mod[i] ^= 0x01
		_, err := r.Open(base64.RawURLEncoding.EncodeToString(mod), ad)
		var want error
		switch {
		case i == 0:
			want = ErrMalformed // version
		case i < idEnd:
			want = ErrUnknownKey // another id (or another id length)
		default:
			want = ErrDecrypt // nonce, ciphertext or tag
		}
		if !errors.Is(err, want) && (i != 1 || !errors.Is(err, ErrMalformed)) {
			t.Fatalf("byte %d flipped: err = %v, want %v", i, err, want)
		}
	}
	// Truncated and extended values fail too.
	for _, mod := range [][]byte{raw[:len(raw)-1], append(bytes.Clone(raw), 0), raw[:idEnd+nonceSize]} {
		if _, err := r.Open(base64.RawURLEncoding.EncodeToString(mod), ad); err == nil {
			t.Fatalf("value of %d bytes (sealed %d) opened", len(mod), len(raw))
		}
	}
	for _, bad := range []string{"", "!!!", "AQ", s + "="} {
		if _, err := r.Open(bad, ad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Open(%q): err = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestUnknownKey(t *testing.T) {
	a, b := mustGenerate(t), mustGenerate(t)
	s, _ := a.Seal([]byte("secret"), nil)
	_, err := b.Open(s, nil)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%q", a.Primary())) {
		t.Fatalf("error %q does not name key id %q", err, a.Primary())
	}
}

func TestRotation(t *testing.T) {
	r := mustGenerate(t)
	oldID := r.Primary()
	ad := []byte("account/a1/email")
	old, _ := r.Seal([]byte("alice@example.com"), ad)
	if r.NeedsRotation(old) {
		t.Fatal("fresh value needs rotation")
	}
	// Reseal of a value already under the primary changes nothing.
	same, err := r.Reseal(old, ad)
	if err != nil || same != old {
		t.Fatalf("Reseal under primary = %v; changed: %v", err, same != old)
	}

	newID, err := r.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if newID == oldID || r.Primary() != newID {
		t.Fatalf("after Rotate primary = %q (old %q, new %q)", r.Primary(), oldID, newID)
	}
	if ids := r.IDs(); len(ids) != 2 || ids[0] != oldID || ids[1] != newID {
		t.Fatalf("IDs = %v", ids)
	}
	if got, err := r.Open(old, ad); err != nil || string(got) != "alice@example.com" {
		t.Fatalf("old value after rotation: %q, %v", got, err)
	}
	if !r.NeedsRotation(old) {
		t.Fatal("old value does not need rotation")
	}
	if !r.NeedsRotation("garbage") {
		t.Fatal("unparsable value should be handed to Reseal")
	}
	moved, err := r.Reseal(old, ad)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := KeyID(moved); id != newID || r.NeedsRotation(moved) {
		t.Fatalf("resealed value under %q, want %q", id, newID)
	}
	if got, err := r.Open(moved, ad); err != nil || string(got) != "alice@example.com" {
		t.Fatalf("resealed value: %q, %v", got, err)
	}
	if _, err := r.Reseal(old, []byte("account/a2/email")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Reseal with wrong ad: %v", err)
	}

	// Retiring the old key: the primary cannot go, the old one can, and
	// values still under it stop opening.
	if err := r.Remove(newID); err == nil {
		t.Fatal("removed the primary key")
	}
	if err := r.Remove(oldID); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(oldID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := r.Open(old, ad); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("value under a removed key: %v", err)
	}
	if _, err := r.Open(moved, ad); err != nil {
		t.Fatal(err)
	}
}

func TestRotationSurvivesSaveLoad(t *testing.T) {
	r := mustGenerate(t)
	old, _ := r.Seal([]byte("v"), nil)
	if _, err := r.Rotate(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if l.Primary() != r.Primary() || len(l.IDs()) != 2 {
		t.Fatalf("loaded primary %q ids %v, want %q %v", l.Primary(), l.IDs(), r.Primary(), r.IDs())
	}
	if !l.NeedsRotation(old) {
		t.Fatal("loaded keyring: old value does not need rotation")
	}
	if got, err := l.Open(old, nil); err != nil || string(got) != "v" {
		t.Fatalf("loaded keyring opens old value: %q, %v", got, err)
	}
}

func TestSaveLoad(t *testing.T) {
	r := mustGenerate(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring.json")
	// An existing, too open file is replaced by a 0600 one.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("saved with mode %04o, want 0600", perm)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := r.Seal([]byte("x"), []byte("ad"))
	if got, err := l.Open(s, []byte("ad")); err != nil || string(got) != "x" {
		t.Fatalf("loaded keyring: %q, %v", got, err)
	}
	if r.BlindIndex("email", "a@b.c") != l.BlindIndex("email", "a@b.c") {
		t.Fatal("blind index changed across Save/Load")
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Load of a 0640 file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	r := mustGenerate(t)
	env, err := r.EnvValue()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(env)
	s, _ := r.Seal([]byte("x"), nil)
	for name, v := range map[string]string{
		"base64url":  env,
		"json":       string(raw),
		"std base64": base64.StdEncoding.EncodeToString(raw),
		"spaces":     "  " + env + "\n",
	} {
		l, err := FromEnv(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, err := l.Open(s, nil); err != nil || string(got) != "x" {
			t.Fatalf("%s: %q, %v", name, got, err)
		}
	}
	for _, bad := range []string{"", "not base64 ***", "{"} {
		if _, err := FromEnv(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("FromEnv(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func key32(c byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{c}, 32)) }

func TestInvalidFiles(t *testing.T) {
	ik := key32('i')
	k1, k2 := key32('1'), key32('2')
	cases := []struct {
		name, json, want string
	}{
		{"unknown field", `{"version":1,"index_key":"` + ik + `","keys":[{"id":"a","key":"` + k1 + `","primary":true}],"extra":1}`, `unknown field "extra"`},
		{"version", `{"version":2,"index_key":"` + ik + `","keys":[{"id":"a","key":"` + k1 + `","primary":true}]}`, "version 2, want 1"},
		{"no index key", `{"version":1,"keys":[{"id":"a","key":"` + k1 + `","primary":true}]}`, "index_key is missing"},
		{"no keys", `{"version":1,"index_key":"` + ik + `","keys":[]}`, "no keys"},
		{"no primary", `{"version":1,"index_key":"` + ik + `","keys":[{"id":"a","key":"` + k1 + `"}]}`, "no key is marked primary"},
		{"two primaries", `{"version":1,"index_key":"` + ik + `","keys":[{"id":"a","key":"` + k1 + `","primary":true},{"id":"b","key":"` + k2 + `","primary":true}]}`, `keys "a" and "b" are both marked primary`},
		{"duplicate id", `{"version":1,"index_key":"` + ik + `","keys":[{"id":"a","key":"` + k1 + `","primary":true},{"id":"a","key":"` + k2 + `"}]}`, `keys[1]: duplicate key id "a"`},
		{"same key twice", `{"version":1,"index_key":"` + ik + `","keys":[{"id":"a","key":"` + k1 + `","primary":true},{"id":"b","key":"` + k1 + `"}]}`, `keys[1] (id "b") has the same key as id "a"`},
		{"key is index key", `{"version":1,"index_key":"` + ik + `","keys":[{"id":"a","key":"` + ik + `","primary":true}]}`, `keys[0] (id "a") is the same as index_key`},
		{"short key", `{"version":1,"index_key":"` + ik + `","keys":[{"id":"a","key":"AAAA","primary":true}]}`, `keys[0] (id "a") key is 3 bytes, want 32`},
		{"bad id", `{"version":1,"index_key":"` + ik + `","keys":[{"id":"a b","key":"` + k1 + `","primary":true}]}`, `key id "a b": only letters`},
		{"trailing data", `{"version":1,"index_key":"` + ik + `","keys":[{"id":"a","key":"` + k1 + `","primary":true}]} {}`, "data after the keyring object"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromEnv(tc.json)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
			// No key material in the error.
			for _, secret := range []string{ik, k1, k2} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error carries key material: %v", err)
				}
			}
		})
	}
}

// TestSealedNeverContainsPlaintext scans sealed output, in every encoding
// it could be stored in, for the plaintext.
func TestSealedNeverContainsPlaintext(t *testing.T) {
	r := mustGenerate(t)
	dir := t.TempDir()
	secrets := []string{"+84901234567", "alice@example.com", "fcm:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338qju59zJMjw2DeLTUgiRYI", "12 Lê Lợi, Quận 1, TP. Hồ Chí Minh"}
	var all bytes.Buffer
	for i, s := range secrets {
		sealed, err := r.Seal([]byte(s), []byte(fmt.Sprintf("account/a%d/field", i)))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.RawURLEncoding.DecodeString(sealed)
		all.WriteString(sealed)
		all.WriteByte('\n')
		all.Write(raw)
		all.WriteByte('\n')
	}
	path := filepath.Join(dir, "store.dat")
	if err := os.WriteFile(path, all.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		// Any 8-byte run of the plaintext would be a leak too (a random
		// match in base64 text is about 1 in 10^11 per scan).
		for i := 0; i+8 <= len(s); i++ {
			if bytes.Contains(disk, []byte(s[i:i+8])) {
				t.Fatalf("sealed output contains %q from a plaintext", s[i:i+8])
			}
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
			if bytes.Contains(disk, []byte(enc.EncodeToString([]byte(s)))) {
				t.Fatal("sealed output contains a plaintext in base64")
			}
		}
	}
}

func TestBlindIndex(t *testing.T) {
	r := mustGenerate(t)
	a := r.BlindIndex("email", "alice@example.com")
	if a != r.BlindIndex("email", "alice@example.com") {
		t.Fatal("blind index is not stable")
	}
	if strings.Contains(a, "alice") || len(a) != 43 {
		t.Fatalf("blind index %q: want 43 base64url characters of HMAC", a)
	}
	distinct := map[string]string{
		"email alice":   a,
		"phone alice":   r.BlindIndex("phone", "alice@example.com"),
		"email bob":     r.BlindIndex("email", "bob@example.com"),
		"kind boundary": r.BlindIndex("emai", "lalice@example.com"),
		"other keyring": mustGenerate(t).BlindIndex("email", "alice@example.com"),
	}
	seen := map[string]string{}
	for name, v := range distinct {
		if prev, ok := seen[v]; ok {
			t.Fatalf("%s and %s have the same blind index", name, prev)
		}
		seen[v] = name
	}
	// Rotation does not change the index: lookups keep working.
	if _, err := r.Rotate(); err != nil {
		t.Fatal(err)
	}
	if r.BlindIndex("email", "alice@example.com") != a {
		t.Fatal("blind index changed on rotation")
	}
}

func TestNoKeyMaterialInOutput(t *testing.T) {
	r := mustGenerate(t)
	f := r.file()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("keyring", "keyring", r)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", r, r, r, r)
	if !strings.Contains(out, r.Primary()) {
		t.Fatalf("output does not name the primary key: %s", out)
	}
	for _, secret := range []string{f.IndexKey, f.Keys[0].Key} {
		raw, _ := base64.StdEncoding.DecodeString(secret)
		if strings.Contains(out, secret) || strings.Contains(out, string(raw)) || strings.Contains(out, fmt.Sprint(raw)) {
			t.Fatalf("key material in output: %s", out)
		}
	}
}

func TestRecords(t *testing.T) {
	rs := Records{Keyring: mustGenerate(t)}
	sealed, err := rs.Seal("personal.a1", []byte(`{"phone":"+84901234567"}`))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("+84901234567")) {
		t.Fatal("sealed record contains the phone number")
	}
	got, err := rs.Open("personal.a1", sealed)
	if err != nil || string(got) != `{"phone":"+84901234567"}` {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := rs.Open("personal.a2", sealed); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("record opened under another key: %v", err)
	}
}

func TestConcurrentSealRotate(t *testing.T) {
	r := mustGenerate(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				ad := []byte(fmt.Sprintf("%d/%d", g, i))
				s, err := r.Seal([]byte("v"), ad)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Open(s, ad); err != nil {
					t.Error(err)
					return
				}
				_ = r.BlindIndex("email", "x")
			}
		})
	}
	for range 5 {
		if _, err := r.Rotate(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestGenerateIDs(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r, err := generate(func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Primary(), "20260102-") || validID(r.Primary()) != nil {
		t.Fatalf("generated id %q", r.Primary())
	}
	if f := r.file(); !f.Keys[0].Created.Equal(at) || !f.Keys[0].Primary {
		t.Fatalf("generated key: created %v primary %v", f.Keys[0].Created, f.Keys[0].Primary)
	}
}

func BenchmarkSeal(b *testing.B) {
	r := mustGenerate(b)
	plain := []byte("+84901234567")
	ad := []byte("account/0123456789abcdef/phone")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Seal(plain, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	r := mustGenerate(b)
	ad := []byte("account/0123456789abcdef/phone")
	s, _ := r.Seal([]byte("+84901234567"), ad)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Open(s, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindIndex(b *testing.B) {
	r := mustGenerate(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = r.BlindIndex("email", "alice@example.com")
	}
}
