package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// The demo world: a direct CSP (Contoso) with its own customers, and an
// indirect provider (Fabrikam) with two resellers whose customers run on the
// one demo stamp. Fabrikam registered the stamp with its CSP Shared Services
// subscription; the operator approved it for multi-tenancy and the stamp is
// activated. Most of the stamp's tenants are registered end customers; a few
// are not, so their usage lands on Fabrikam's default subscription until a
// partner adds them (the seed's "Add end customer").
const (
	demoSeed          = 20261122
	demoStackTenants  = 12
	demoRegistered    = 9 // the first nine stack tenants are registered
	demoContosoCount  = 8
	demoFabrikamCSPSS = "f0000000-5555-4000-8000-000000000001"
	demoContosoCSPSS  = "c0000000-5555-4000-8000-000000000001"
	demoResourceGroup = "azurestack"
	demoRegName       = "fabrikam-stamp-1"
	demoSeededKey     = "demo.seeded"
)

var demoNames = []string{"Adatum", "Litware", "Proseware", "Relecloud", "Woodgrove", "Alpine Ski House", "Blue Yonder", "Coho Winery",
	"Datum Corp", "Fourth Coffee", "Humongous Insurance", "Lucerne Publishing", "Margie's Travel", "Northwind Traders", "Southridge Video",
	"Tailwind Traders", "Trey Research", "VanArsdel", "Wide World Importers", "Wingtip Toys"}

// demoToken is a sign-in token the demo prints.
type demoToken struct{ Key, Label, Token string }

// demoWorld is what the demo seeded and who may sign in.
type demoWorld struct {
	sim     simulate.World
	tokens  []demoToken
	tenant  string // a registered stack subscription, for the tenant token
	regKey  registration.Key
	backlog int // events backfilled
}

// customerSub is the CSP subscription of the stack tenant i's customer.
func demoCustomerSub(i int) string { return fmt.Sprintf("c5b00000-0000-4000-8000-%012d", i+1) }

// demoDirectory is the partner directory as an import document: the stack
// tenants are Fabrikam's resellers' customers (tenant ID = the stack
// tenant's directory), Contoso's customers are on no stamp of the demo.
func demoDirectory(w simulate.World) []byte {
	type partner struct {
		ID, Name, Type, Provider, MpnID string
	}
	var doc struct {
		Partners      []map[string]string `json:"partners"`
		Customers     []map[string]string `json:"customers"`
		Subscriptions []map[string]string `json:"subscriptions"`
	}
	for _, p := range []partner{{"contoso", "Contoso", "DirectCSP", "", "1234567"}, {"fabrikam", "Fabrikam Distribution", "IndirectProvider", "", "2345678"},
		{"tailspin", "Tailspin Cloud", "IndirectReseller", "fabrikam", "3456789"}, {"wingtip", "Wingtip Solutions", "IndirectReseller", "fabrikam", "4567890"}} {
		m := map[string]string{"id": p.ID, "name": p.Name, "type": p.Type, "mpnId": p.MpnID}
		if p.Provider != "" {
			m["provider"] = p.Provider
		}
		doc.Partners = append(doc.Partners, m)
	}
	for i, t := range w.Tenants {
		reseller := "tailspin"
		if i%2 == 1 {
			reseller = "wingtip"
		}
		doc.Customers = append(doc.Customers, map[string]string{"tenantId": t.DirectoryID, "name": demoNames[i], "partner": reseller})
		doc.Subscriptions = append(doc.Subscriptions, map[string]string{"id": demoCustomerSub(i), "offer": "CSP", "partner": "fabrikam",
			"customerTenantId": t.DirectoryID, "name": demoNames[i] + " Azure Stack"})
	}
	for i := 0; i < demoContosoCount; i++ {
		n := len(w.Tenants) + i
		tenant := fmt.Sprintf("c0c05000-0000-4000-8000-%012d", i+1)
		doc.Customers = append(doc.Customers, map[string]string{"tenantId": tenant, "name": demoNames[n%len(demoNames)], "partner": "contoso"})
		doc.Subscriptions = append(doc.Subscriptions, map[string]string{"id": fmt.Sprintf("c0c05000-1111-4000-8000-%012d", i+1), "offer": "CSP", "partner": "contoso",
			"customerTenantId": tenant, "name": demoNames[n%len(demoNames)]})
	}
	doc.Subscriptions = append(doc.Subscriptions,
		map[string]string{"id": demoFabrikamCSPSS, "offer": "CSPSS", "partner": "fabrikam", "name": "Fabrikam shared services"},
		map[string]string{"id": demoContosoCSPSS, "offer": "CSPSS", "partner": "contoso", "name": "Contoso shared services"})
	b, _ := json.Marshal(doc)
	return b
}

// seedDemo builds the demo world in app (stack and commerce in one process)
// and backfills days of usage, once per database (dsn is app's); later starts only add
// fresh sign-in tokens. usageEndpoint is the URL the bridge forwards to.
func seedDemo(ctx context.Context, app *App, dsn, usageEndpoint string, days int, progress io.Writer) (demoWorld, error) {
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "demo"}
	stackOp := auth.Principal{Role: auth.RoleStackOperator, TokenID: "demo"}
	fabrikam := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "demo"}
	w := demoWorld{sim: simulate.New(simulate.Config{Tenants: demoStackTenants, Seed: demoSeed}),
		regKey: registration.Key{SubscriptionID: demoFabrikamCSPSS, ResourceGroup: demoResourceGroup, Name: demoRegName}}
	w.tenant = w.sim.Tenants[0].SubscriptionID
	seeded, err := app.DB.Setting(ctx, demoSeededKey, func() (string, error) { return "", nil })
	if err != nil {
		return w, err
	}
	if seeded == "" {
		// The world is set up as of just before the backfill starts, so the
		// registration and the tenant mappings are in force for all of the
		// backfilled usage, as they would have been on a live stamp: a
		// second instance of the services on the same database, on a clock
		// standing at that instant.
		past, err := Build(ctx, Options{DB: dsn, Role: "all", Clock: clock.Manual(clock.HourStart(app.Clock.Now()).Add(-time.Duration(days)*24*time.Hour - time.Hour)), Logger: app.Logger})
		if err != nil {
			return w, err
		}
		err = seedDemoWorld(ctx, past, w, op, stackOp, fabrikam, usageEndpoint)
		past.Close()
		if err != nil {
			return w, fmt.Errorf("seed the demo world: %w", err)
		}
		n, err := backfillDemo(ctx, app, w.sim, days, progress)
		if err != nil {
			return w, fmt.Errorf("backfill demo usage: %w", err)
		}
		w.backlog = n
		if err := app.DB.SetSetting(ctx, demoSeededKey, app.Clock.Now().Format(time.RFC3339)); err != nil {
			return w, err
		}
	}
	for _, t := range []struct {
		key, label      string
		role            auth.Role
		partner, subscr string
	}{
		{"operator", "operator (commerce + stack)", auth.RoleOperator, "", ""},
		{"fabrikam", "partner: Fabrikam (indirect provider, owns the stamp)", auth.RolePartner, "fabrikam", ""},
		{"contoso", "partner: Contoso (direct CSP)", auth.RolePartner, "contoso", ""},
		{"tailspin", "reseller: Tailspin", auth.RoleReseller, "tailspin", ""},
		{"wingtip", "reseller: Wingtip", auth.RoleReseller, "wingtip", ""},
		{"stack-operator", "stack operator", auth.RoleStackOperator, "", ""},
		{"tenant", "tenant: " + w.sim.Tenants[0].Name + " (" + demoNames[0] + ")", auth.RoleTenant, "", w.tenant},
	} {
		tok, _, err := app.Auth.Create(ctx, t.role, t.partner, t.subscr, "demo sign-in", 30*24*time.Hour)
		if err != nil {
			return w, err
		}
		w.tokens = append(w.tokens, demoToken{Key: t.key, Label: t.label, Token: tok})
	}
	return w, nil
}

func seedDemoWorld(ctx context.Context, app *App, w demoWorld, op, stackOp, fabrikam auth.Principal, usageEndpoint string) error {
	now := app.Clock.Now()
	if _, err := app.Directory.Import(ctx, op.Actor(), demoDirectory(w.sim)); err != nil {
		return err
	}
	// Prices from two months back, so the whole backfill is priced; markups
	// down the indirect chain for statements.
	if _, err := app.Billing.ImportPriceList(ctx, op, "demo: sample price list", billing.SamplePriceList(), clock.MonthStart(now).AddDate(0, -2, 0)); err != nil {
		return err
	}
	for _, b := range []struct {
		owner, target string
		principal     auth.Principal
		markup        string
	}{
		{"fabrikam", "tailspin", fabrikam, "8"},
		{"fabrikam", "wingtip", fabrikam, "6"},
		{"tailspin", billing.DefaultTarget, auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "demo"}, "20"},
		{"wingtip", billing.DefaultTarget, auth.Principal{Role: auth.RoleReseller, PartnerID: "wingtip", TokenID: "demo"}, "15"},
	} {
		if _, err := app.Billing.PutPriceBook(ctx, b.principal, billing.PriceBook{Owner: b.owner, Target: b.target, MarkupPercent: money.MustQuantity(b.markup)}); err != nil {
			return fmt.Errorf("price book %s → %s: %w", b.owner, b.target, err)
		}
	}
	// The seed's flow: the stack's registration token, the registration by
	// the partner, approval for multi-tenancy, activation of the stack.
	tok, err := bridge.RegistrationToken(ctx, app.DB, "PayAsYouUse", "", nil)
	if err != nil {
		return err
	}
	loc := "global"
	if _, _, err := app.Registrations.Put(ctx, fabrikam, w.regKey, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{}); err != nil {
		return err
	}
	if _, err := app.Registrations.Approve(ctx, op, w.regKey, true); err != nil {
		return err
	}
	key, err := app.Issuer.ActivationKey(ctx, fabrikam, w.regKey, usageEndpoint)
	if err != nil {
		return err
	}
	keys, _, err := bridge.LocalKeys(ctx, app.DB)
	if err != nil {
		return err
	}
	if _, err := bridge.Activate(ctx, app.DB, key, keys, now); err != nil {
		return err
	}
	// The stack's tenants, and the end customers registered on the stamp.
	for i, t := range w.sim.Tenants {
		if _, _, err := app.Tenancy.PutDirectoryTenant(ctx, stackOp, app.Tenancy.Provider(), tenancy.DirectoryTenant{Name: t.Name + ".onmicrosoft.com", TenantID: t.DirectoryID}); err != nil {
			return err
		}
		if _, _, err := app.Tenancy.PutSubscription(ctx, stackOp, app.Tenancy.Provider(), t.SubscriptionID, tenancy.Subscription{DisplayName: demoNames[i] + " production",
			Owner: "admin@" + t.Name + ".onmicrosoft.com", TenantID: t.DirectoryID, OfferID: "/delegatedProviders/default/offers/standard", State: "Enabled"}); err != nil {
			return err
		}
		if i < demoRegistered {
			if _, err := app.Registrations.PutCustomerSubscription(ctx, fabrikam, w.regKey, demoCustomerSub(i), t.DirectoryID, registration.Precondition{}); err != nil {
				return fmt.Errorf("add end customer %s: %w", demoNames[i], err)
			}
		}
	}
	return nil
}

// backfillDemo loads the last days of usage as a live stack would have
// recorded it: each hour's events reported just after that hour. The bridge
// then forwards them by reported hour as it would have.
func backfillDemo(ctx context.Context, app *App, w simulate.World, days int, progress io.Writer) (int, error) {
	end := clock.HourStart(app.Clock.Now())
	hours := simulate.Hours(end.Add(-time.Duration(days)*24*time.Hour), end)
	bar := newProgress(progress, int64(len(hours)), "backfilling "+fmt.Sprint(days)+" days of usage")
	n := 0
	for _, h := range hours {
		evs := w.Events(h)
		ptrs := make([]*usage.Event, len(evs))
		for i := range evs {
			ptrs[i] = &evs[i]
		}
		if _, err := app.Usage.IngestAt(ctx, h.Add(time.Hour+5*time.Minute), ptrs); err != nil {
			return n, err
		}
		n += len(evs)
		if bar != nil {
			_ = bar.Add(1)
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	return n, nil
}

// runDemoSimulator plays the resource providers in real time: after each
// hour of the clock closes, it posts that hour's usage through intake.
func runDemoSimulator(ctx context.Context, app *App, w simulate.World) {
	next := clock.HourStart(app.Clock.Now())
	for {
		for !app.Clock.Now().Before(next.Add(time.Hour)) {
			evs := w.Events(next)
			ptrs := make([]*usage.Event, len(evs))
			for i := range evs {
				ptrs[i] = &evs[i]
			}
			if _, err := app.Usage.Ingest(ctx, ptrs); err != nil {
				if ctx.Err() != nil {
					return
				}
				app.Logger.Error("demo simulator: intake failed; retrying", "hour", next, "err", err)
				break
			}
			app.Logger.Info("demo simulator: reported an hour of usage", "hour", next.Format(time.RFC3339), "events", len(evs))
			next = next.Add(time.Hour)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// printDemo tells a newcomer where to look and how to sign in.
func printDemo(out io.Writer, url string, w demoWorld) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nstackbill demo is ready: open %s/portal/ and sign in with one of these tokens (valid 30 days):\n\n", url)
	for _, t := range w.tokens {
		fmt.Fprintf(&b, "  %-58s %s\n", t.Label, t.Token)
	}
	fmt.Fprintf(&b, "\nThe stamp %q (subscription %s) is registered by Fabrikam, approved and activated; %d of its %d tenants are registered end customers.\n",
		w.regKey.Name, w.regKey.SubscriptionID, demoRegistered, demoStackTenants)
	fmt.Fprintf(&b, "Try: sign in as Fabrikam → Registrations → %s → add one of the unregistered customers.\n\n", w.regKey.Name)
	_, _ = io.WriteString(out, b.String())
}

// waitForwarded waits until the bridge has no backlog, or for at most limit.
func waitForwarded(ctx context.Context, app *App, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st, err := app.Forwarder.Status(ctx); err == nil && st.Backlog == 0 {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// token returns the demo's sign-in token for key.
func (w demoWorld) token(key string) string {
	for _, t := range w.tokens {
		if t.Key == key {
			return t.Token
		}
	}
	return ""
}
