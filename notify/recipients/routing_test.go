package recipients

import (
	"slices"
	"testing"

	"github.com/upswatch/upswatch/ups"
)

func TestRoutes(t *testing.T) {
	r := newRoutes()
	owner := &Account{Units: []ups.Serial{"u1", "u2"}}
	both := &Account{Units: []ups.Serial{"u1"}, Sites: []string{"depot"}}
	mgr := &Account{Sites: []string{"depot"}}
	r.set("owner", nil, owner)
	r.set("both", nil, both)
	r.set("mgr", nil, mgr)
	for _, tt := range []struct {
		serial ups.Serial
		site   string
		want   []string
	}{
		{"u1", "depot", []string{"owner", "both", "mgr"}},
		{"u1", "", []string{"owner", "both"}},
		{"u2", "depot", []string{"owner", "both", "mgr"}},
		{"u3", "elsewhere", nil},
	} {
		if got := r.of(tt.serial, tt.site); !slices.Equal(got, tt.want) {
			t.Errorf("of(%s, %q) = %v, want %v", tt.serial, tt.site, got, tt.want)
		}
	}
	// The owner gives up u1, the manager leaves: both indexes forget them.
	r.set("owner", owner, &Account{Units: []ups.Serial{"u2"}})
	r.set("mgr", mgr, nil)
	if got, want := r.of("u1", "depot"), []string{"both"}; !slices.Equal(got, want) {
		t.Errorf("after changes: of(u1, depot) = %v, want %v", got, want)
	}
	if got := r.owners("u2"); !slices.Equal(got, []string{"owner"}) {
		t.Errorf("owners(u2) = %v", got)
	}
	r.set("both", both, nil)
	r.set("owner", &Account{Units: []ups.Serial{"u2"}}, nil)
	if len(r.byUnit) != 0 || len(r.bySite) != 0 {
		t.Errorf("emptied routes keep keys: %v %v", r.byUnit, r.bySite)
	}
}

func TestTokenIndex(t *testing.T) {
	ti := tokenIndex{}
	tok := TokenPrefix + "secret"
	if err := ti.apply(hashToken(tok), []byte(`{"account":"a1"}`), false); err != nil {
		t.Fatal(err)
	}
	if err := ti.apply(hashToken(TokenPrefix+"other"), []byte(`{`), false); err == nil {
		t.Error("unreadable record: no error")
	}
	for _, tt := range []struct {
		tok, id string
		ok      bool
	}{
		{tok, "a1", true},
		{"secret", "", false}, // without the prefix
		{TokenPrefix + "other", "", false},
	} {
		if id, ok := ti.account(tt.tok); id != tt.id || ok != tt.ok {
			t.Errorf("account(%q) = %q, %v; want %q, %v", tt.tok, id, ok, tt.id, tt.ok)
		}
	}
	if got := ti.hashesOf("a1"); !slices.Equal(got, []string{hashToken(tok)}) {
		t.Errorf("hashesOf(a1) = %v", got)
	}
	if err := ti.apply(hashToken(tok), nil, true); err != nil {
		t.Fatal(err)
	}
	if _, ok := ti.account(tok); ok {
		t.Error("deleted token still authenticates")
	}
}
