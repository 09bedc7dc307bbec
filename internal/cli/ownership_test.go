package cli

import (
	"fmt"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// TestOwnershipChangeMidMonth moves a local subscription from one customer's
// directory to another's on the 15th. Usage of the first half reaches
// commerce under the first owner and is charged to its customer
// subscription; the second half under the new owner, to the other's — even
// though the bridge forwards all of it after the move.
func TestOwnershipChangeMidMonth(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		clk := clock.Manual(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC))
		com := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
		stack := newStackApp(t, clk)
		k := regKey(W.ContosoDefault, "azurestack", "move-stamp")
		activateStack(t, com.app, stack, k, com.url, clk.Now())
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		for _, c := range []struct{ sub, tenant string }{{W.Adatum.Subscription, W.Adatum.Tenant}, {W.Litware.Subscription, W.Litware.Tenant}} {
			if _, err := com.app.Registrations.PutCustomerSubscription(ctx, op, k, c.sub, c.tenant, registration.Precondition{}); err != nil {
				t.Fatal(err)
			}
		}
		sop := auth.Principal{Role: auth.RoleStackOperator, TokenID: "t"}
		for _, tn := range []string{W.Adatum.Tenant, W.Litware.Tenant} {
			if _, _, err := stack.Tenancy.PutDirectoryTenant(ctx, sop, stack.Tenancy.Provider(), tenancy.DirectoryTenant{Name: tn, TenantID: tn}); err != nil {
				t.Fatal(err)
			}
		}
		local := randomGUID()
		put := func(tenant string) {
			if _, _, err := stack.Tenancy.PutSubscription(ctx, sop, stack.Tenancy.Provider(), local, tenancy.Subscription{TenantID: tenant, Owner: "o", OfferID: "o", State: "Enabled"}); err != nil {
				t.Fatal(err)
			}
		}
		put(W.Adatum.Tenant)
		// One event a day; on the 15th the subscription moves to Litware.
		for d := 1; d <= 30; d++ {
			day := time.Date(2026, 10, d, 0, 0, 0, 0, time.UTC)
			if d == 15 {
				clk.Set(day)
				put(W.Litware.Tenant)
			}
			e := ev(fmt.Sprintf("mv-%d", d), local, simulate.MeterBaseVM, "3", day.Add(12*time.Hour), day.Add(13*time.Hour), "/r/vm")
			if _, err := stack.Usage.IngestAt(ctx, day.Add(14*time.Hour), []*usage.Event{&e}); err != nil {
				t.Fatal(err)
			}
		}
		// The bridge forwards everything only now, after the move.
		clk.Set(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
		for {
			n, err := stack.Forwarder.Step(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		sum := func(sub string) money.Quantity {
			totals, err := com.app.Ledger.Totals(ctx, []string{sub}, time.Time{}, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			q := money.Zero
			for _, tt := range totals {
				q = q.Add(tt.Quantity)
			}
			return q
		}
		if a, l := sum(W.Adatum.Subscription), sum(W.Litware.Subscription); !a.Equal(money.FromInt(14*3)) || !l.Equal(money.FromInt(16*3)) {
			t.Fatalf("charged: Adatum %s (want 42, days 1–14), Litware %s (want 48, days 15–30)", a, l)
		}
	})
}
