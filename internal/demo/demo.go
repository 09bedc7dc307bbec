// Package demo owns the demo world that `stackbill serve --demo` seeds: its
// partner directory (a direct CSP, and an indirect provider with two
// resellers), prices and price books, a registered, approved and activated
// stamp with its tenants, a backfill of simulated usage, the simulator that
// keeps reporting usage in real time, and the sign-in tokens it prints.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/budget"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// Instance is what the demo uses of a stackbill instance that runs the stack
// and commerce in one process; cli builds it.
type Instance struct {
	// Receive makes a forwarder deliver its batches to this instance's API
	// in this process, for replaying history into it.
	Receive       func(*bridge.Forwarder)
	DB            *store.DB
	Clock         *clock.Clock
	Logger        *slog.Logger
	Auth          *auth.Service
	Billing       *billing.Service
	Directory     *directory.Service
	Forwarder     *bridge.Forwarder
	Issuer        *bridge.Issuer
	Registrations *registration.Service
	Tenancy       *tenancy.Service
	Usage         *usage.Service
	Budgets       *budget.Service
	Notify        *notify.Service
}

// At opens a second instance on the same database whose clock stands at t,
// and a function that closes it.
type At func(ctx context.Context, t time.Time) (*Instance, func(), error)

// ProgressBar is a progress bar the demo advances; Progress makes one for a
// total and a description.
type ProgressBar interface {
	Add(int) error
	Finish() error
}

// Progress makes a progress bar; it may return nil (no terminal).
type Progress func(total int64, description string) ProgressBar

// The demo world: a direct CSP (Contoso) with its own customers, and an
// indirect provider (Fabrikam) with two resellers whose customers run on the
// one demo stamp. Fabrikam registered the stamp with its CSP Shared Services
// subscription; the operator approved it for multi-tenancy and the stamp is
// activated. Most of the stamp's tenants are registered end customers; a few
// are not, so their usage lands on Fabrikam's default subscription until a
// partner adds them (the seed's "Add end customer").
const (
	seed          = 20261122
	StackTenants  = 12
	Registered    = 9 // the first nine stack tenants are registered
	ContosoCount  = 8
	FabrikamCSPSS = "f0000000-5555-4000-8000-000000000001"
	ContosoCSPSS  = "c0000000-5555-4000-8000-000000000001"
	ResourceGroup = "azurestack"
	RegName       = "fabrikam-stamp-1"
	seededKey     = "demo.seeded"
)

// Name is the name of the demo's i-th customer (they repeat after twenty).
func Name(i int) string {
	names := [...]string{"Adatum", "Litware", "Proseware", "Relecloud", "Woodgrove", "Alpine Ski House", "Blue Yonder", "Coho Winery",
		"Datum Corp", "Fourth Coffee", "Humongous Insurance", "Lucerne Publishing", "Margie's Travel", "Northwind Traders", "Southridge Video",
		"Tailwind Traders", "Trey Research", "VanArsdel", "Wide World Importers", "Wingtip Toys"}
	return names[i%len(names)]
}

// demoSignIn names the sign-in tokens the demo mints at each start.
const demoSignIn = "demo sign-in"

// Token is a sign-in token the demo prints.
type Token struct{ Key, Label, Token string }

// World is what the demo seeded and who may sign in.
type World struct {
	Sim     simulate.World
	Tokens  []Token
	Tenant  string // a registered stack subscription, for the tenant token
	RegKey  registration.Key
	Backlog int // events backfilled
	// Mapped counts the stamp's registered end customers when Seed
	// returned: the demo's own, plus any added or removed since.
	Mapped int
}

// CustomerSub is the CSP subscription of the stack tenant i's customer.
func CustomerSub(i int) string { return fmt.Sprintf("c5b00000-0000-4000-8000-%012d", i+1) }

// directoryDocument is the partner directory as an import document: the stack
// tenants are Fabrikam's resellers' customers (tenant ID = the stack
// tenant's directory); Contoso's customers are on Contoso's own stamp
// (SeedDirect).
func directoryDocument(w simulate.World) []byte {
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
		doc.Customers = append(doc.Customers, map[string]string{"tenantId": t.DirectoryID, "name": Name(i), "partner": reseller})
		doc.Subscriptions = append(doc.Subscriptions, map[string]string{"id": CustomerSub(i), "offer": "CSP", "partner": "fabrikam",
			"customerTenantId": t.DirectoryID, "name": Name(i) + " Azure Stack"})
	}
	for i := 0; i < ContosoCount; i++ {
		n := len(w.Tenants) + i
		doc.Customers = append(doc.Customers, map[string]string{"tenantId": ContosoTenant(i), "name": Name(n), "partner": "contoso"})
		doc.Subscriptions = append(doc.Subscriptions, map[string]string{"id": ContosoSub(i), "offer": "CSP", "partner": "contoso",
			"customerTenantId": ContosoTenant(i), "name": Name(n)})
	}
	doc.Subscriptions = append(doc.Subscriptions,
		map[string]string{"id": FabrikamCSPSS, "offer": "CSPSS", "partner": "fabrikam", "name": "Fabrikam shared services"},
		map[string]string{"id": ContosoCSPSS, "offer": "CSPSS", "partner": "contoso", "name": "Contoso shared services"})
	b, _ := json.Marshal(doc)
	return b
}

// Seed builds the demo world in app (stack and commerce in one process)
// and backfills days of usage, once per database (dsn is app's); later starts only add
// fresh sign-in tokens. usageEndpoint is the URL the bridge forwards to.
func Seed(ctx context.Context, in *Instance, at At, usageEndpoint string, days int, progress Progress) (World, error) {
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "demo"}
	fabrikam := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "demo"}
	w := World{Sim: simulate.New(simulate.Config{Tenants: StackTenants, Seed: seed}),
		RegKey: registration.Key{SubscriptionID: FabrikamCSPSS, ResourceGroup: ResourceGroup, Name: RegName}}
	w.Tenant = w.Sim.Tenants[0].SubscriptionID
	seeded, err := in.DB.Setting(ctx, seededKey, func() (string, error) { return "", nil })
	if err != nil {
		return w, err
	}
	if seeded == "" {
		// The world is set up as of just before the backfill starts, so the
		// registration and the tenant mappings are in force for all of the
		// backfilled usage, as they would have been on a live stamp: a
		// second instance of the services on the same database, on a clock
		// standing at that instant.
		past, closePast, err := at(ctx, clock.HourStart(in.Clock.Now()).Add(-time.Duration(days)*24*time.Hour-time.Hour))
		if err != nil {
			return w, err
		}
		err = seedWorld(ctx, past, w, op, fabrikam, usageEndpoint)
		closePast()
		if err != nil {
			return w, fmt.Errorf("seed the demo world: %w", err)
		}
		n, err := backfill(ctx, in, w.Sim, days, replay(at, nil), progress)
		if err != nil {
			return w, fmt.Errorf("backfill demo usage: %w", err)
		}
		w.Backlog = n
		if err := in.DB.SetSetting(ctx, seededKey, in.Clock.Now().Format(time.RFC3339)); err != nil {
			return w, err
		}
	}
	// Tokens are stored hashed, so the last start's cannot be printed again:
	// they are revoked, and each start prints one fresh set, so restarts do
	// not pile up live 30-day tokens nobody holds.
	old, err := in.Auth.List(ctx)
	if err != nil {
		return w, err
	}
	for _, t := range old {
		if t.Name == demoSignIn && t.RevokedAt == nil {
			if err := in.Auth.Revoke(ctx, t.ID); err != nil {
				return w, err
			}
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
		{"tenant", "tenant: " + w.Sim.Tenants[0].Name + " (" + Name(0) + ")", auth.RoleTenant, "", w.Tenant},
	} {
		tok, _, err := in.Auth.Create(ctx, t.role, t.partner, t.subscr, demoSignIn, 30*24*time.Hour)
		if err != nil {
			return w, err
		}
		w.Tokens = append(w.Tokens, Token{Key: t.key, Label: t.label, Token: tok})
	}
	for after := ""; ; {
		page, next, err := in.Registrations.ListCustomerSubscriptions(ctx, op, w.RegKey, after, 1000)
		if err != nil {
			return w, err
		}
		w.Mapped += len(page)
		if next == "" {
			break
		}
		after = next
	}
	return w, nil
}

func seedWorld(ctx context.Context, in *Instance, w World, op, fabrikam auth.Principal, usageEndpoint string) error {
	now := in.Clock.Now()
	if _, err := in.Directory.Import(ctx, op.Actor(), directoryDocument(w.Sim)); err != nil {
		return err
	}
	// Prices from two months back, so the whole backfill is priced; markups
	// down the indirect chain for statements.
	if _, err := in.Billing.ImportPriceList(ctx, op, "demo: sample price list", billing.SamplePriceList(), clock.MonthStart(now).AddDate(0, -2, 0)); err != nil {
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
		if _, err := in.Billing.PutPriceBook(ctx, b.principal, billing.PriceBook{Owner: b.owner, Target: b.target, MarkupPercent: money.MustQuantity(b.markup)}); err != nil {
			return fmt.Errorf("price book %s → %s: %w", b.owner, b.target, err)
		}
	}
	if err := registerStamp(ctx, in, in, fabrikam, w.RegKey, usageEndpoint, now); err != nil {
		return err
	}
	// The stack's tenants, and the end customers registered on the stamp.
	for i, t := range w.Sim.Tenants {
		mapTo := ""
		if i < Registered {
			mapTo = CustomerSub(i)
		}
		if err := onboard(ctx, in, in, fabrikam, w.RegKey, t, Name(i), mapTo); err != nil {
			return err
		}
	}
	return nil
}

// registerStamp is the seed's flow for a stamp: the stack's registration
// token, the registration by the partner, approval for multi-tenancy by the
// operator, and activation of the stack with the key commerce signs.
func registerStamp(ctx context.Context, com, stack *Instance, partner auth.Principal, k registration.Key, usageEndpoint string, at time.Time) error {
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "demo"}
	tok, err := bridge.RegistrationToken(ctx, stack.DB, "PayAsYouUse", "", nil)
	if err != nil {
		return err
	}
	loc := "global"
	if _, _, err := com.Registrations.Put(ctx, partner, k, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{}); err != nil {
		return err
	}
	if _, err := com.Registrations.Approve(ctx, op, k, true); err != nil {
		return err
	}
	key, err := com.Issuer.ActivationKey(ctx, partner, k, usageEndpoint)
	if err != nil {
		return err
	}
	keys, _, err := bridge.LocalKeys(ctx, com.DB)
	if err != nil {
		return err
	}
	_, err = bridge.Activate(ctx, stack.DB, key, keys, at)
	return err
}

// onboard makes a simulated tenant a tenant of the stack (its directory and
// its user subscription, named for customer name) and, when mapTo is set,
// has partner register it on the stamp as the end customer of that CSP
// subscription.
func onboard(ctx context.Context, com, stack *Instance, partner auth.Principal, k registration.Key, t simulate.Tenant, name, mapTo string) error {
	stackOp := auth.Principal{Role: auth.RoleStackOperator, TokenID: "demo"}
	if _, _, err := stack.Tenancy.PutDirectoryTenant(ctx, stackOp, stack.Tenancy.Provider(), tenancy.DirectoryTenant{Name: t.Name + ".onmicrosoft.com", TenantID: t.DirectoryID}); err != nil {
		return err
	}
	if _, _, err := stack.Tenancy.PutSubscription(ctx, stackOp, stack.Tenancy.Provider(), t.SubscriptionID, tenancy.Subscription{DisplayName: name + " production",
		Owner: "admin@" + t.Name + ".onmicrosoft.com", TenantID: t.DirectoryID, OfferID: "/delegatedProviders/default/offers/standard", State: "Enabled"}); err != nil {
		return err
	}
	if mapTo == "" {
		return nil
	}
	if _, err := com.Registrations.PutCustomerSubscription(ctx, partner, k, mapTo, t.DirectoryID, registration.Precondition{}); err != nil {
		return fmt.Errorf("add end customer %s: %w", name, err)
	}
	return nil
}

// deliverAt forwards what a stack has sealed, as of t, to commerce as of t.
type deliverAt func(ctx context.Context, t time.Time) error

// backfill loads the last days of usage as a live stack would have
// recorded and forwarded it: each hour's events reported just after that
// hour, and each day's usage forwarded just after the day ended, by a
// stack and a commerce whose clocks stand then (deliver). So commerce
// received each record when a live stamp's commerce would have, and a
// month's usage is on that month's invoice, not on the next one as late
// usage, which is what forwarding a month of backfill now would make it.
func backfill(ctx context.Context, in *Instance, w simulate.World, days int, deliver deliverAt, progress Progress) (int, error) {
	end := clock.HourStart(in.Clock.Now())
	hours := simulate.Hours(end.Add(-time.Duration(days)*24*time.Hour), end)
	var bar ProgressBar
	if progress != nil {
		bar = progress(int64(len(hours)), "backfilling "+fmt.Sprint(days)+" days of usage")
	}
	n := 0
	for i, h := range hours {
		evs := w.Events(h)
		ptrs := make([]*usage.Event, len(evs))
		for i := range evs {
			ptrs[i] = &evs[i]
		}
		if _, err := in.Usage.IngestAt(ctx, h.Add(time.Hour+5*time.Minute), ptrs); err != nil {
			return n, err
		}
		n += len(evs)
		if bar != nil {
			_ = bar.Add(1)
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		// The last hour's usage is left to the live forwarder: its hour has
		// only just closed.
		if next := h.Add(time.Hour); clock.IsDayStart(next) && i < len(hours)-1 {
			if err := deliver(ctx, next.Add(30*time.Minute)); err != nil {
				return n, fmt.Errorf("forward the backfill of %s: %w", h.Format("2006-01-02"), err)
			}
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	return n, nil
}

// withInstances runs fn with commerce and a stack as of t: comAt's, and
// stackAt's (comAt's own stack when stackAt is nil, as when stack and
// commerce share an instance).
func withInstances(ctx context.Context, t time.Time, comAt, stackAt At, fn func(com, stack *Instance) error) error {
	com, closeCom, err := comAt(ctx, t)
	if err != nil {
		return err
	}
	defer closeCom()
	st := com
	if stackAt != nil {
		var closeStack func()
		if st, closeStack, err = stackAt(ctx, t); err != nil {
			return err
		}
		defer closeStack()
	}
	return fn(com, st)
}

// replay is a deliverAt: the stack's forwarder, as of t, hands its sealed
// batches to commerce as of t, in this process (stackAt nil: the stack of
// comAt's instance).
func replay(comAt, stackAt At) deliverAt {
	return func(ctx context.Context, t time.Time) error {
		return withInstances(ctx, t, comAt, stackAt, func(com, st *Instance) error {
			com.Receive(st.Forwarder)
			_, err := st.Forwarder.CatchUp(ctx)
			return err
		})
	}
}

// RunSimulator plays the resource providers in real time: after each
// hour of the clock closes, it posts that hour's usage through intake.
func RunSimulator(ctx context.Context, in *Instance, w simulate.World) {
	next := clock.HourStart(in.Clock.Now())
	for {
		for !in.Clock.Now().Before(next.Add(time.Hour)) {
			evs := w.Events(next)
			ptrs := make([]*usage.Event, len(evs))
			for i := range evs {
				ptrs[i] = &evs[i]
			}
			if _, err := in.Usage.Ingest(ctx, ptrs); err != nil {
				if ctx.Err() != nil {
					return
				}
				in.Logger.Error("demo simulator: intake failed; retrying", "hour", next, "err", err)
				break
			}
			in.Logger.Info("demo simulator: reported an hour of usage", "hour", next.Format(time.RFC3339), "events", len(evs))
			next = next.Add(time.Hour)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// Describe tells a newcomer where to look and how to sign in.
func (w World) Describe(url string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nstackbill demo is ready: open %s/portal/ and sign in with one of these tokens (valid 30 days):\n\n", url)
	for _, t := range w.Tokens {
		fmt.Fprintf(&b, "  %-58s %s\n", t.Label, t.Token)
	}
	fmt.Fprintf(&b, "\nThe stamp %q (subscription %s) is registered by Fabrikam, approved and activated; %d of its %d tenants are registered end customers.\n",
		w.RegKey.Name, w.RegKey.SubscriptionID, w.Mapped, StackTenants)
	fmt.Fprintf(&b, "Try: sign in as Fabrikam → Registrations → %s → add one of the unregistered customers.\n\n", w.RegKey.Name)
	return b.String()
}

// WaitForwarded waits until the bridge has no backlog, or for at most limit.
func WaitForwarded(ctx context.Context, in *Instance, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st, err := in.Forwarder.Status(ctx); err == nil && st.Backlog == 0 {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Token returns the demo's sign-in token for key.
func (w World) SignIn(key string) string {
	for _, t := range w.Tokens {
		if t.Key == key {
			return t.Token
		}
	}
	return ""
}
