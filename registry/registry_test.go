package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/upswatch/upswatch/bus/bustest"
	"github.com/upswatch/upswatch/internal/wait"
	"github.com/upswatch/upswatch/ups"
)

func startView(t *testing.T, r *Registry) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("registry view not ready")
	}
}

func TestAddAuthenticateRemove(t *testing.T) {
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	r, err := Open(ctx, js, Options{})
	if err != nil {
		t.Fatal(err)
	}
	startView(t, r)

	u, pw, err := r.Add(ctx, "123456789012", "Server room", "hq")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "Server room" || u.Site != "hq" || len(pw) < 20 {
		t.Fatalf("unit %+v password len %d", u, len(pw))
	}
	if !r.Registered("123456789012") || !r.Authenticate("123456789012", pw) {
		t.Fatal("registered unit does not authenticate")
	}
	if site, ok := r.SiteOf("123456789012"); !ok || site != "hq" {
		t.Fatalf("SiteOf = %q, %v; want hq, true", site, ok)
	}
	if site, ok := r.SiteOf("999999999999"); ok || site != "" {
		t.Fatalf("SiteOf of an unknown unit = %q, %v", site, ok)
	}
	if r.Authenticate("123456789012", pw+"x") || r.Authenticate("999999999999", pw) {
		t.Fatal("wrong credentials accepted")
	}
	if _, _, err := r.Add(ctx, "123456789012", "again", ""); !errors.Is(err, ErrAlreadyRegistered) {
		t.Fatalf("second Add err = %v, want ErrAlreadyRegistered", err)
	}
	if err := r.Remove(ctx, "123456789012"); err != nil {
		t.Fatal(err)
	}
	if r.Registered("123456789012") {
		t.Fatal("removed unit still registered")
	}
	if _, ok := r.SiteOf("123456789012"); ok {
		t.Fatal("SiteOf finds a removed unit")
	}
	if err := r.Remove(ctx, "123456789012"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove err = %v, want ErrNotFound", err)
	}
}

func TestAddValidation(t *testing.T) {
	ctx := context.Background()
	_, _, js := bustest.Server(t)
	r, err := Open(ctx, js, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		serial     ups.Serial
		name, site string
		want       error
	}{
		{"12345", "", "", ups.ErrInvalidSerial},
		{"12345678901x", "", "", ups.ErrInvalidSerial},
		{"123456789012", "bad\nname", "", ErrInvalidName},
		{"123456789012", "", string(make([]byte, 201)), ErrInvalidName},
	}
	for _, tt := range tests {
		if _, _, err := r.Add(ctx, tt.serial, tt.name, tt.site); !errors.Is(err, tt.want) {
			t.Errorf("Add(%q, %q, %q) err = %v, want %v", tt.serial, tt.name, tt.site, err, tt.want)
		}
	}
}

// A second instance's view learns of units added through the first one,
// including those stored before it started.
func TestViewsConverge(t *testing.T) {
	ctx := context.Background()
	ns, _, js := bustest.Server(t)
	a, err := Open(ctx, js, Options{})
	if err != nil {
		t.Fatal(err)
	}
	startView(t, a)
	if _, _, err := a.Add(ctx, "111111111111", "before", ""); err != nil {
		t.Fatal(err)
	}
	_, js2 := bustest.Connect(t, ns)
	b, err := Open(ctx, js2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	startView(t, b)
	if !b.Registered("111111111111") {
		t.Fatal("view missed a unit stored before it started")
	}
	_, pw, err := a.Add(ctx, "2222222222222222", "after", "")
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the other registry authenticates the new unit", func() bool { return b.Authenticate("2222222222222222", pw) })
	if err := a.Remove(ctx, "111111111111"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the other registry forgets the deleted unit", func() bool { return !b.Registered("111111111111") })
	if got := len(b.List()); got != 1 {
		t.Fatalf("List has %d units, want 1", got)
	}
}

// A new password replaces the old one on every instance, and each view
// tells its listener, as it does when the unit is removed.
func TestRotatePasswordAndChangeListener(t *testing.T) {
	ctx := context.Background()
	ns, _, js := bustest.Server(t)
	a, err := Open(ctx, js, Options{})
	if err != nil {
		t.Fatal(err)
	}
	startView(t, a)
	_, js2 := bustest.Connect(t, ns)
	b, err := Open(ctx, js2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan ups.Serial, 8)
	b.OnCredentialsChange(func(s ups.Serial) { changed <- s })
	startView(t, b)
	expect := func(what string) {
		t.Helper()
		select {
		case s := <-changed:
			if s != "123456789012" {
				t.Fatalf("%s: change for %s", what, s)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the other view never told its listener", what)
		}
	}

	_, old, err := a.Add(ctx, "123456789012", "rack", "hq")
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the other registry takes the old password again", func() bool { return b.Authenticate("123456789012", old) })
	_, pw, err := a.RotatePassword(ctx, "123456789012")
	if err != nil {
		t.Fatal(err)
	}
	if pw == old || a.Authenticate("123456789012", old) || !a.Authenticate("123456789012", pw) {
		t.Fatal("rotation did not replace the password here at once")
	}
	expect("rotation")
	if b.Authenticate("123456789012", old) || !b.Authenticate("123456789012", pw) {
		t.Fatal("the other view still takes the old password")
	}
	if _, _, err := a.RotatePassword(ctx, "210987654321"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotating an unknown unit: %v, want ErrNotFound", err)
	}
	if err := a.Remove(ctx, "123456789012"); err != nil {
		t.Fatal(err)
	}
	expect("removal")
}
