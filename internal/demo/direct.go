package demo

import (
	"context"
	"fmt"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
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
	n, err := backfill(ctx, stack, w.Sim, days, replay(comAt, stackAt), progress)
	if err != nil {
		return w, fmt.Errorf("backfill Contoso's usage: %w", err)
	}
	w.Backlog = n
	return w, stack.DB.SetSetting(ctx, seededKey, stack.Clock.Now().Format(time.RFC3339))
}

func seedDirectAt(ctx context.Context, w DirectWorld, comAt, stackAt At, at time.Time, usageEndpoint string) error {
	return withInstances(ctx, at, comAt, stackAt, func(com, st *Instance) error { return seedDirectOn(ctx, w, com, st, at, usageEndpoint) })
}

func seedDirectOn(ctx context.Context, w DirectWorld, com, st *Instance, at time.Time, usageEndpoint string) error {
	contoso := auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "demo"}
	// The seed's flow, as for Fabrikam's stamp.
	if err := registerStamp(ctx, com, st, contoso, w.RegKey, usageEndpoint, at); err != nil {
		return err
	}
	// A direct CSP registers every customer on its own stamp.
	for i, t := range w.Sim.Tenants {
		if err := onboard(ctx, com, st, contoso, w.RegKey, t, Name(StackTenants+i), ContosoSub(i)); err != nil {
			return err
		}
	}
	return nil
}

// Describe tells a newcomer about the direct CSP's stamp.
func (w DirectWorld) Describe() string {
	return fmt.Sprintf("Contoso, a direct CSP, runs the stamp %q (subscription %s) with its %d customers on it: sign in as Contoso to see its usage, invoices and reconciliation files, with no reseller between.\n\n",
		w.RegKey.Name, w.RegKey.SubscriptionID, len(w.Sim.Tenants))
}
