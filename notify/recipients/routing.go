package recipients

import (
	"context"
	"slices"

	"github.com/upswatch/upswatch/ups"
)

// routes index the accounts by the units they own and the sites they
// manage: whom an alert goes to. The Store's mu guards them.
type routes struct {
	byUnit map[ups.Serial][]string
	bySite map[string][]string
}

func newRoutes() routes {
	return routes{byUnit: map[ups.Serial][]string{}, bySite: map[string][]string{}}
}

// set re-indexes account id, which was old (nil: unknown) and is now a
// (nil: removed).
func (r *routes) set(id string, old, a *Account) {
	if old != nil {
		for _, u := range old.Units {
			r.byUnit[u] = without(r.byUnit[u], id)
			if len(r.byUnit[u]) == 0 {
				delete(r.byUnit, u)
			}
		}
		for _, st := range old.Sites {
			r.bySite[st] = without(r.bySite[st], id)
			if len(r.bySite[st]) == 0 {
				delete(r.bySite, st)
			}
		}
	}
	if a == nil {
		return
	}
	for _, u := range a.Units {
		r.byUnit[u] = append(r.byUnit[u], id)
	}
	for _, st := range a.Sites {
		r.bySite[st] = append(r.bySite[st], id)
	}
}

// of returns the ids an alert of unit serial at site goes to: its owners,
// then the site's managers, each once.
func (r *routes) of(serial ups.Serial, site string) []string {
	ids := slices.Clone(r.byUnit[serial])
	if site != "" {
		for _, id := range r.bySite[site] {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// owners returns the ids of the accounts owning serial.
func (r *routes) owners(serial ups.Serial) []string { return slices.Clone(r.byUnit[serial]) }

func without(ids []string, id string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(x string) bool { return x == id })
}

// For returns the recipients of an alert of unit serial at site: its
// owners and the site's managers, each once. It reads the in-memory view
// only; ctx is for a future remote lookup.
func (s *Store) For(_ context.Context, serial ups.Serial, site string) ([]Recipient, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := s.routes.of(serial, site)
	out := make([]Recipient, 0, len(ids))
	for _, id := range ids {
		if r, ok := s.lookupLocked(id); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// OwnersOf returns the ids of the accounts owning serial.
func (s *Store) OwnersOf(serial ups.Serial) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.routes.owners(serial)
}
