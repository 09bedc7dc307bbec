package demo

import (
	"context"
	"fmt"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/tenancy"
)

// The direct CSP's path: Contoso runs a stamp of its own, registered with
// its CSP Shared Services subscription, and every tenant on it is one of
// its customers. Its usage is invoiced to Contoso with no reseller between.
const (
	ContosoRegName = "contoso-stamp-1"
	contosoSeed    = 20261123
)

// ContosoTenant is the directory tenant of Contoso's i-th customer.
func ContosoTenant(i int) string { return fmt.Sprintf("c0c05000-0000-4000-8000-%012d", i+1) }

// ContosoSub is the CSP subscription of Contoso's i-th customer.
func ContosoSub(i int) string { return fmt.Sprintf("c0c05000-1111-4000-8000-%012d", i+1) }

// contosoWorld is the simulated usage of Contoso's stamp: a tenant per
// Contoso customer, in that customer's directory.
func contosoWorld() simulate.World {
	w := simulate.New(simulate.Config{Tenants: ContosoCount, Seed: contosoSeed})
	for i := range w.Tenants {
		w.Tenants[i].DirectoryID = ContosoTenant(i)
	}
	return w
}

// DirectWorld is Contoso's stamp as the demo seeded it.
type DirectWorld struct {
	Sim     simulate.World
	RegKey  registration.Key
	Backlog int // events backfilled
}

// SeedDirect builds Contoso's stamp once per stack database: stack is a
// stack of its own (its own database, as a second cloud has), and comAt and
// stackAt give commerce and that stack as of an instant, so that the
// registration, its approval and the tenant mappings are in force for all
// of the backfilled usage (as Seed does for Fabrikam's stamp). Seed must
// have run: the directory holds Contoso's customers.
func SeedDirect(ctx context.Context, stack *Instance, comAt, stackAt At, usageEndpoint string, days int, progress Progress) (DirectWorld, error) {
	w := DirectWorld{Sim: contosoWorld(), RegKey: registration.Key{SubscriptionID: ContosoCSPSS, ResourceGroup: ResourceGroup, Name: ContosoRegName}}
	seeded, err := stack.DB.Setting(ctx, seededKey, func() (string, error) { return "", nil })
	if err != nil || seeded != "" {
		return w, err
	}
	past := clock.HourStart(stack.Clock.Now()).Add(-time.Duration(days)*24*time.Hour - time.Hour)
	if err := seedDirectAt(ctx, w, comAt, stackAt, past, usageEndpoint); err != nil {
		return w, fmt.Errorf("seed Contoso's stamp: %w", err)
	}
	n, err := backfill(ctx, stack, w.Sim, days, replay(stackAt, comAt), progress)
	if err != nil {
		return w, fmt.Errorf("backfill Contoso's usage: %w", err)
	}
	w.Backlog = n
	return w, stack.DB.SetSetting(ctx, seededKey, stack.Clock.Now().Format(time.RFC3339))
}

func seedDirectAt(ctx context.Context, w DirectWorld, comAt, stackAt At, at time.Time, usageEndpoint string) error {
	com, closeCom, err := comAt(ctx, at)
	if err != nil {
		return err
	}
	defer closeCom()
	st, closeStack, err := stackAt(ctx, at)
	if err != nil {
		return err
	}
	defer closeStack()
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "demo"}
	contoso := auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "demo"}
	stackOp := auth.Principal{Role: auth.RoleStackOperator, TokenID: "demo"}
	// The seed's flow, as for Fabrikam: the stack's registration token, the
	// registration by the partner, approval, activation.
	tok, err := bridge.RegistrationToken(ctx, st.DB, "PayAsYouUse", "", nil)
	if err != nil {
		return err
	}
	loc := "global"
	if _, _, err := com.Registrations.Put(ctx, contoso, w.RegKey, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{}); err != nil {
		return err
	}
	if _, err := com.Registrations.Approve(ctx, op, w.RegKey, true); err != nil {
		return err
	}
	key, err := com.Issuer.ActivationKey(ctx, contoso, w.RegKey, usageEndpoint)
	if err != nil {
		return err
	}
	keys, _, err := bridge.LocalKeys(ctx, com.DB)
	if err != nil {
		return err
	}
	if _, err := bridge.Activate(ctx, st.DB, key, keys, at); err != nil {
		return err
	}
	for i, t := range w.Sim.Tenants {
		if _, _, err := st.Tenancy.PutDirectoryTenant(ctx, stackOp, st.Tenancy.Provider(), tenancy.DirectoryTenant{Name: t.Name + ".onmicrosoft.com", TenantID: t.DirectoryID}); err != nil {
			return err
		}
		if _, _, err := st.Tenancy.PutSubscription(ctx, stackOp, st.Tenancy.Provider(), t.SubscriptionID, tenancy.Subscription{DisplayName: Name(StackTenants+i) + " production",
			Owner: "admin@" + t.Name + ".onmicrosoft.com", TenantID: t.DirectoryID, OfferID: "/delegatedProviders/default/offers/standard", State: "Enabled"}); err != nil {
			return err
		}
		// A direct CSP registers every customer on its own stamp.
		if _, err := com.Registrations.PutCustomerSubscription(ctx, contoso, w.RegKey, ContosoSub(i), t.DirectoryID, registration.Precondition{}); err != nil {
			return fmt.Errorf("add end customer %s: %w", Name(StackTenants+i), err)
		}
	}
	return nil
}

// Describe tells a newcomer about the direct CSP's stamp.
func (w DirectWorld) Describe() string {
	return fmt.Sprintf("Contoso, a direct CSP, runs the stamp %q (subscription %s) with its %d customers on it: sign in as Contoso to see its usage, invoices and reconciliation files, with no reseller between.\n\n",
		w.RegKey.Name, w.RegKey.SubscriptionID, len(w.Sim.Tenants))
}
