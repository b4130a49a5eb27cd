package api

import (
	"testing"

	"github.com/upswatch/upswatch/notify/recipients"
	"github.com/upswatch/upswatch/registry"
	"github.com/upswatch/upswatch/ups"
)

// An area alert lists a whole site's units: the admin and the site's
// managers see (and act on) it, the owner of the unit that anchors it does
// not, though the owner sees that unit's own alerts.
func TestCanSeeAlert(t *testing.T) {
	u := registry.Unit{Serial: "123456789012", Site: "hq"}
	owner := Principal{Account: recipients.Recipient{Account: recipients.Account{ID: "own", Role: recipients.RoleOwner, Units: []ups.Serial{u.Serial}}}}
	manager := Principal{Account: recipients.Recipient{Account: recipients.Account{ID: "mgr", Role: recipients.RoleManager, Sites: []string{"hq"}}}}
	other := Principal{Account: recipients.Recipient{Account: recipients.Account{ID: "mgr2", Role: recipients.RoleManager, Sites: []string{"branch"}}}}
	admin := Principal{Admin: true}
	tests := []struct {
		name string
		p    Principal
		rule string
		want bool
	}{
		{"owner, unit alert", owner, "on_battery", true},
		{"owner, site outage anchored on its unit", owner, "site_outage", false},
		{"owner, site unreachable anchored on its unit", owner, "site_unreachable", false},
		{"manager of the site, site outage", manager, "site_outage", true},
		{"manager of the site, unit alert", manager, "on_battery", true},
		{"manager of another site, site outage", other, "site_outage", false},
		{"admin, site outage", admin, "site_outage", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.CanSeeAlert(tc.rule, u); got != tc.want {
				t.Errorf("CanSeeAlert(%s) = %v, want %v", tc.rule, got, tc.want)
			}
		})
	}
}
