package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/budget"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/httpapi"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/wire"
)

// hostilePrincipals are the callers of the hostile-principals suite: every
// role, the two kinds of partner, a stack operator scoped to one delegated
// provider, and nobody at all.
var hostilePrincipals = []string{"operator", "partner", "provider", "reseller", "stack-operator", "delegated", "tenant", "bridge", "usage-writer", "anonymous"}

// hostileRoles is each principal's role.
var hostileRoles = map[string]auth.Role{"operator": auth.RoleOperator, "partner": auth.RolePartner, "provider": auth.RolePartner,
	"reseller": auth.RoleReseller, "stack-operator": auth.RoleStackOperator, "delegated": auth.RoleStackOperator, "tenant": auth.RoleTenant,
	"bridge": auth.RoleBridge, "usage-writer": auth.RoleUsageWriter, "anonymous": ""}

// attempt is one request of the suite and the answer it must get.
type attempt struct {
	method, path, body, ctype string
	status                    int
	code                      string // the ARM error code, "" when it succeeds
}

// trio is one principal's three attempts on a route: on an object inside
// its scope, on one outside it, and on one that does not exist. A nil
// attempt does not apply (the operator has nothing outside its scope).
type trio struct{ in, out, missing *attempt }

// hostileWorld is everything the suite's attempts name.
type hostileWorld struct {
	e                                        *testEnv
	tok                                      map[string]string
	period, invoiceContoso, invoiceFabrikam  string
	provider, localSub, otherSub, dp, dpUser string
	newUser, newUser2                        string
	localTenant, dpTenant                    string
	bridgeReg                                registration.Registration
	exportContoso, exportFabrikam            string
	heldStack, heldCommerce                  []int64
	// Each partner principal's webhook endpoint (and a second, to delete),
	// a delivery of its endpoint, and the registration.approved events of
	// three stamps.
	hooks, hooksGone                           map[string]string
	delivery                                   map[string]int64
	eventContoso, eventFabrikam, eventTailspin string
	// Each partner principal's budget (and a second, to delete).
	budgets, budgetsGone map[string]string
}

// pcInvoiceTrio is a Partner Center invoice route's three attempts: the
// caller's own draft, another partner's, and one that does not exist, each
// a 404 (a draft is not an invoice yet; another's does not exist for it).
func pcInvoiceTrio(w string, h *hostileWorld, path func(number string) string) trio {
	nf := func(n string) *attempt {
		return &attempt{method: "GET", path: path(n), status: 404, code: "InvoiceNotFound"}
	}
	mine := map[string]string{"operator": h.invoiceFabrikam, "partner": h.invoiceContoso, "provider": h.invoiceFabrikam, "reseller": h.invoiceFabrikam}
	other := map[string]string{"partner": h.invoiceFabrikam, "provider": h.invoiceContoso, "reseller": h.invoiceContoso}
	t := trio{in: nf(mine[w]), missing: nf("SB-209901-nobody")}
	if w != "operator" {
		t.out = nf(other[w])
	}
	return t
}

func regsPath(sub string) string {
	return "/subscriptions/" + sub + "/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations"
}

// TestHostilePrincipals sends every route of the route table, as every
// principal, at an object inside the principal's scope, one outside it and
// one that does not exist, on both engines. It checks the exact answer of
// each, that an object outside one's scope answers exactly as a missing one
// (status and code; BadCustomerSubscriptionId keeps its seed meaning), and
// that a refused request changes nothing: the database is as it was, but
// for one audit record of the refusal. A route missing from the suite fails
// it, so no route ships unexamined.
func TestHostilePrincipals(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("every route as every principal, database hashed around each refusal: the full suite runs it")
	}
	storetest.Each(t, func(t *testing.T, backend string) {
		h := newHostileWorld(t, backend)
		rows := h.rows()
		table := httpapi.Routes()
		names := make([]string, len(table))
		for i, rt := range table {
			names[i] = rt.Name
			// The suite's rows and the route table agree on who may call
			// the route: a principal the table refuses has no row.
			for p := range rows[rt.Name] {
				if !rt.Anon && !rt.Who.Admits(hostileRoles[p]) {
					t.Errorf("%s: the suite lets %s call it, but the route table refuses it", rt.Name, p)
				}
			}
		}
		var missing []string
		for _, n := range names {
			if _, ok := rows[n]; !ok {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			t.Fatalf("routes missing from the hostile-principals suite (give each its attempts): %v", missing)
		}
		if len(rows) != len(names) {
			t.Fatalf("the suite has %d rows for %d routes: remove rows of routes that no longer exist", len(rows), len(names))
		}
		order := append([]string{}, names...)
		sort.SliceStable(order, func(i, j int) bool { return writeRank(order[i]) < writeRank(order[j]) })
		requests, refusals := 0, 0
		for _, name := range order {
			row := rows[name]
			// What a principal the route does not admit sends: any allowed
			// principal's attempts.
			var sample trio
			for _, p := range hostilePrincipals {
				if tr, ok := row[p]; ok {
					sample = tr
					break
				}
			}
			for _, p := range hostilePrincipals {
				tr, allowed := row[p]
				if !allowed {
					refuse := 403
					code := "AuthorizationFailed"
					if p == "anonymous" {
						refuse, code = 401, "AuthenticationFailed"
					}
					for _, a := range []*attempt{sample.in, sample.out, sample.missing} {
						if a != nil {
							b := *a
							b.status, b.code = refuse, code
							h.try(t, name, p, "refused role", &b)
							requests++
							refusals++
						}
					}
					continue
				}
				var outGot, missingGot *answer
				for i, a := range []*attempt{tr.in, tr.out, tr.missing} {
					if a == nil {
						continue
					}
					got := h.try(t, name, p, [...]string{"in scope", "out of scope", "missing"}[i], a)
					requests++
					if got.status >= 400 {
						refusals++
					}
					switch i {
					case 1:
						outGot = got
					case 2:
						missingGot = got
					}
				}
				if outGot != nil && missingGot != nil && (outGot.status != missingGot.status || outGot.code != missingGot.code) && outGot.code != "BadCustomerSubscriptionId" {
					t.Errorf("%s as %s: outside its scope answers %d %s, but a missing object answers %d %s: the difference tells whether another's object exists",
						name, p, outGot.status, outGot.code, missingGot.status, missingGot.code)
				}
			}
		}
		t.Logf("hostile principals: %d routes × %d principals, %d requests, %d refused with the database unchanged", len(names), len(hostilePrincipals), requests, refusals)
	})
}

type answer struct {
	status int
	code   string
}

// try sends a and checks its answer; a refusal must leave the database as
// it was, but for at most one audit record of the refusal itself.
func (h *hostileWorld) try(t *testing.T, route, principal, scope string, a *attempt) *answer {
	t.Helper()
	path := strings.NewReplacer("{export-contoso}", h.exportContoso, "{export-fabrikam}", h.exportFabrikam).Replace(a.path)
	before, audits := h.fingerprint(t)
	resp, body := h.e.raw(a.method, path, h.tok[principal], a.ctype, strings.NewReader(a.body))
	got := &answer{status: resp.StatusCode, code: errCode(body)}
	if got.status != a.status || (a.code != "" && got.code != a.code) {
		t.Errorf("%s as %s (%s) %s %s: %d %s, want %d %s\n%.300s", route, principal, scope, a.method, path, got.status, got.code, a.status, a.code, body)
	}
	if got.status >= 400 || scope != "in scope" {
		after, auditsAfter := h.fingerprint(t)
		if after != before {
			t.Errorf("%s as %s (%s) %s %s answered %d but changed the database", route, principal, scope, a.method, path, got.status)
		}
		if auditsAfter.other != audits.other || auditsAfter.refusals > audits.refusals+1 {
			t.Errorf("%s as %s (%s): a refusal wrote %d audit records of changes and %d of refusals", route, principal, scope,
				auditsAfter.other-audits.other, auditsAfter.refusals-audits.refusals)
		}
		if got.status >= 400 && a.method != "GET" && principal != "anonymous" && got.status != 404 && got.status != 405 && auditsAfter.refusals != audits.refusals+1 {
			t.Errorf("%s as %s (%s): a refused change (%d) was not recorded in the audit log", route, principal, scope, got.status)
		}
	}
	if a.status < 300 && a.method == "POST" && route == "Exports_Start" {
		var job struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(body), &job)
		switch principal {
		case "partner":
			h.exportContoso = job.ID
		case "provider":
			h.exportFabrikam = job.ID
		}
		if err := h.e.app.Billing.RunExports(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

type auditCounts struct{ other, refusals int64 }

// fingerprint is the database's state: every table but the audit log, and
// the audit log's records of changes and of refusals.
func (h *hostileWorld) fingerprint(t *testing.T) (string, auditCounts) {
	t.Helper()
	var c auditCounts
	c.other, c.refusals = h.e.auditCounts()
	return h.e.fingerprint(), c
}

// newHostileWorld builds the world the suite attacks: registrations of a
// direct CSP, an indirect provider and each of its resellers; a provider's
// mapping of one reseller's customer onto the other reseller's stamp; usage,
// invoices and exports for two partners; what the stages hold in
// quarantine; and a stack with its own tenants and a delegated provider's.
func newHostileWorld(t *testing.T, backend string) *hostileWorld {
	e := newTestEnv(t, backend)
	ctx := t.Context()
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
	h := &hostileWorld{e: e, tok: map[string]string{"operator": e.operator, "partner": e.tokens["contoso"], "provider": e.tokens["fabrikam"], "reseller": e.tokens["tailspin"], "anonymous": ""}}
	// Webhook endpoints first, so the approvals below are delivered to them.
	hookers := map[string]auth.Principal{"operator": op, "partner": {Role: auth.RolePartner, PartnerID: "contoso", TokenID: "c"},
		"provider": {Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "f"}, "reseller": {Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "r"}}
	h.hooks, h.hooksGone, h.delivery = map[string]string{}, map[string]string{}, map[string]int64{}
	for w, p := range hookers {
		for _, into := range []map[string]string{h.hooks, h.hooksGone} {
			url := "https://hooks.example.com/" + w
			ep, err := e.app.Notify.CreateEndpoint(ctx, p, notify.EndpointInput{URL: &url})
			if err != nil {
				t.Fatal(err)
			}
			into[w] = ep.ID
		}
	}
	h.budgets, h.budgetsGone = map[string]string{}, map[string]string{}
	for w, p := range hookers {
		for _, into := range []map[string]string{h.budgets, h.budgetsGone} {
			name, cur, amount := "hostile "+w, "USD", "100"
			b, err := e.app.Budgets.Create(ctx, p, budget.Input{Name: &name, Currency: &cur, Amount: &amount})
			if err != nil {
				t.Fatal(err)
			}
			into[w] = b.ID
		}
	}
	e.createRegistration(W.ContosoDefault, "azurestack", "contoso-stamp", registration.PayAsYouUse, true)
	e.createRegistration(W.FabrikamDefault, "azurestack", "fabrikam-stamp", registration.PayAsYouUse, true)
	e.createRegistration(W.Proseware.Subscription, "azurestack", "tailspin-stamp", registration.PayAsYouUse, true)
	e.createRegistration(W.Relecloud.Subscription, "azurestack", "wingtip-stamp", registration.PayAsYouUse, true)
	for w, p := range hookers {
		ds, err := e.app.Notify.Deliveries(ctx, p, h.hooks[w], 0, 1)
		if err != nil || len(ds) != 1 {
			t.Fatalf("%s's endpoint has deliveries %v, %v; want one at least", w, ds, err)
		}
		h.delivery[w] = ds[0].ID
	}
	evs, err := e.app.Notify.Events(ctx, op, notify.EventQuery{Type: notify.RegistrationApproved, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		switch {
		case strings.HasSuffix(ev.Subject, "/contoso-stamp"):
			h.eventContoso = ev.ID
		case strings.HasSuffix(ev.Subject, "/fabrikam-stamp"):
			h.eventFabrikam = ev.ID
		case strings.HasSuffix(ev.Subject, "/tailspin-stamp"):
			h.eventTailspin = ev.ID
		}
	}
	if h.eventContoso == "" || h.eventFabrikam == "" || h.eventTailspin == "" {
		t.Fatalf("the approvals recorded these events: %+v", evs)
	}
	fabrikam := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "f"}
	// The provider maps Wingtip's customer onto a stamp Tailspin manages:
	// that mapping stays Wingtip's.
	if _, err := e.app.Registrations.PutCustomerSubscription(ctx, fabrikam, regKey(W.Proseware.Subscription, "azurestack", "tailspin-stamp"), W.Relecloud.Subscription, W.Relecloud.Tenant, registration.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.app.Registrations.PutCustomerSubscription(ctx, fabrikam, regKey(W.Proseware.Subscription, "azurestack", "tailspin-stamp"), W.Proseware.Subscription, W.Proseware.Tenant, registration.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.app.Billing.ImportPriceList(ctx, op, "hostile", []byte(testPriceListUSD), time.Time{}); err != nil {
		t.Fatal(err)
	}
	now := e.app.Clock.Now()
	h.period = now.Format("2006-01")
	h.invoiceContoso = "SB-" + now.Format("200601") + "-contoso"
	h.invoiceFabrikam = "SB-" + now.Format("200601") + "-fabrikam"
	hourNow := clock.HourStart(now)
	for _, st := range []struct{ sub, name string }{{W.ContosoDefault, "contoso-stamp"}, {W.FabrikamDefault, "fabrikam-stamp"}} {
		r, err := e.app.Registrations.Get(ctx, op, regKey(st.sub, "azurestack", st.name))
		if err != nil {
			t.Fatal(err)
		}
		rec := wire.Record{SubscriptionID: randomGUID(), TenantID: randomGUID(), MeterID: "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", Quantity: money.FromInt(10),
			UsageHour: hourNow.Add(-2 * time.Hour), ReportedHour: hourNow.Add(-time.Hour)}
		rec.SetID(r.CloudID)
		// And one from the future, which ingestion holds.
		held := rec
		held.UsageHour, held.ReportedHour = hourNow.Add(48*time.Hour), hourNow.Add(49*time.Hour)
		held.SetID(r.CloudID)
		if _, err := e.app.Ingestor.Ingest(ctx, auth.Principal{Role: auth.RoleBridge, RegistrationUID: r.UID, TokenID: "b"}, wire.Batch{CloudID: r.CloudID, Records: []wire.Record{rec, held}}); err != nil {
			t.Fatal(err)
		}
	}
	// The bridge credential is a stamp's of its own, whose activation key
	// the suite never re-issues (a new key revokes it).
	e.createRegistration(W.NorthwindDefault, "azurestack", "bridge-stamp", registration.PayAsYouUse, true)
	h.bridgeReg, _ = e.app.Registrations.Get(ctx, op, regKey(W.NorthwindDefault, "azurestack", "bridge-stamp"))

	// The stack: two tenants' subscriptions of the stamp's own, and a
	// delegated provider with a tenant of its own.
	h.provider = e.app.Tenancy.Provider()
	sop := auth.Principal{Role: auth.RoleStackOperator, TokenID: "t"}
	onboard := func(sub, tenant, delegatedProvider string) {
		if _, _, err := e.app.Tenancy.PutDirectoryTenant(ctx, sop, h.provider, tenancy.DirectoryTenant{Name: "t-" + tenant[:8], TenantID: tenant}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.app.Tenancy.PutSubscription(ctx, sop, h.provider, sub, tenancy.Subscription{TenantID: tenant, Owner: "o", OfferID: "o", DelegatedProviderSubscriptionID: delegatedProvider}); err != nil {
			t.Fatal(err)
		}
	}
	h.localSub, h.otherSub, h.localTenant = randomGUID(), randomGUID(), randomGUID()
	onboard(h.localSub, h.localTenant, "")
	onboard(h.otherSub, h.localTenant, "")
	h.dp, h.dpUser, h.dpTenant = randomGUID(), randomGUID(), randomGUID()
	h.newUser, h.newUser2 = randomGUID(), randomGUID()
	onboard(h.dp, randomGUID(), "")
	onboard(h.dpUser, h.dpTenant, h.dp)

	tok := func(role auth.Role, sub string) string {
		s, _, err := e.app.Auth.Create(ctx, role, "", sub, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h.tok["stack-operator"] = tok(auth.RoleStackOperator, "")
	h.tok["delegated"] = tok(auth.RoleStackOperator, h.dp)
	h.tok["tenant"] = tok(auth.RoleTenant, h.localSub)
	h.tok["usage-writer"] = tok(auth.RoleUsageWriter, "")
	if h.tok["bridge"], err = e.app.Auth.CreateBridge(ctx, "test", "", h.bridgeReg.UID, "hostile"); err != nil {
		t.Fatal(err)
	}

	// What the stages hold: events that would push an hourly record past
	// its bound (aggregation), and the future usage above (ingestion).
	big := money.MaxEventQuantity.String()
	for i := 0; i < 6; i++ {
		var evs []string
		for j := 0; j < 300; j++ {
			evs = append(evs, fmt.Sprintf(`{"id":"big-%d-%d","subscriptionId":"%s","meterId":"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5","quantity":"%s","startTime":"%s","endTime":"%s","resourceUri":"/r/big"}`,
				i, j, h.localSub, big, hourNow.Format(time.RFC3339), hourNow.Format(time.RFC3339)))
		}
		resp, body := e.raw("POST", "/v1/usage/events", h.tok["usage-writer"], "application/x-ndjson", strings.NewReader(strings.Join(evs, "\n")))
		if resp.StatusCode != 200 {
			t.Fatalf("large events: %d %s", resp.StatusCode, body)
		}
	}
	if err := e.app.Usage.Settle(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := e.app.Ledger.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	items, err := e.app.Quarantine.List(ctx, op, quarantine.Query{Open: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Stage.Stack() {
			h.heldStack = append(h.heldStack, it.ID)
		} else {
			h.heldCommerce = append(h.heldCommerce, it.ID)
		}
	}
	if len(h.heldStack) < 4 || len(h.heldCommerce) < 2 {
		t.Fatalf("held %d stack and %d commerce items, want at least 4 and 2", len(h.heldStack), len(h.heldCommerce))
	}
	// Lazily created keys are made before the suite, not by a refusal.
	if _, err := e.app.Signer.JWKS(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

func at(method, path, body string, status int, code string) *attempt {
	return &attempt{method: method, path: path, body: body, ctype: "application/json", status: status, code: code}
}

func getA(path string, status int, code string) *attempt { return at("GET", path, "", status, code) }

// rows is the suite's table: for each route, the attempts of each principal
// it admits. Principals a route does not admit are refused 403 (401 when
// anonymous) on the attempts of the first principal listed.
func (h *hostileWorld) rows() map[string]map[string]trio {
	const v17, vAdmin = "?api-version=2017-06-01", "?api-version=2015-11-01"
	ghost := "/subscriptions/" + randomGUID() + "/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations/ghost"
	contoso, fabrikam := regsPath(W.ContosoDefault)+"/contoso-stamp", regsPath(W.FabrikamDefault)+"/fabrikam-stamp"
	tailspin := regsPath(W.Proseware.Subscription) + "/tailspin-stamp"
	now := h.e.app.Clock.Now()
	hour := clock.HourStart(now)
	regBody := func() string {
		return `{"location":"global","properties":{"registrationToken":"` + *registrationToken(randomGUID(), registration.PayAsYouUse, "") + `"}}`
	}
	csBody := func(tenant string) string { return `{"properties":{"tenantId":"` + tenant + `"}}` }
	cs := func(reg, sub string) string { return reg + "/customerSubscriptions/" + sub + v17 }
	usageQ := "reportedStartTime=" + hour.Add(-2*time.Hour).Format(time.RFC3339) + "&reportedEndTime=" + hour.Format(time.RFC3339) + "&aggregationGranularity=Hourly&api-version=2015-06-01-preview"
	usageAt := func(sub string) string {
		return "/subscriptions/" + sub + "/providers/Microsoft.Commerce/UsageAggregates?" + usageQ
	}
	adminUsage := func(prov string) string {
		return "/subscriptions/" + prov + "/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?" + usageQ
	}
	event := func() string {
		return fmt.Sprintf(`{"id":"h-%s","subscriptionId":"%s","meterId":"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5","quantity":"1","startTime":"%s","endTime":"%s"}`,
			randomGUID(), h.localSub, hour.Add(-time.Hour).Format(time.RFC3339), hour.Format(time.RFC3339))
	}
	ndjson := func(a *attempt) *attempt { a.ctype = "application/x-ndjson"; return a }
	csv := func(a *attempt) *attempt { a.ctype = "text/csv"; return a }
	dirTenants := func(prov string) string {
		return "/subscriptions/" + prov + "/resourceGroups/system.local/providers/Microsoft.Subscriptions.Admin/directoryTenants"
	}
	userSubs := func(prov string) string {
		return "/subscriptions/" + prov + "/providers/Microsoft.Subscriptions.Admin/subscriptions"
	}
	all := func(a *attempt) map[string]trio {
		m := map[string]trio{}
		for _, p := range hostilePrincipals {
			m[p] = trio{in: a}
		}
		return m
	}
	authed := func(a *attempt) map[string]trio {
		m := all(a)
		delete(m, "anonymous")
		return m
	}
	// Three objects of one kind: the caller's, another partner's, none.
	scoped := func(in, out, missing *attempt) trio { return trio{in, out, missing} }
	regNotFound := func(method, path, body string) *attempt { return at(method, path, body, 404, "RegistrationNotFound") }
	partners := func(kind func(who string) trio) map[string]trio {
		return map[string]trio{"operator": kind("operator"), "partner": kind("partner"), "provider": kind("provider"), "reseller": kind("reseller")}
	}
	// mine, theirs: a registration each partner principal manages, and
	// one it does not.
	mine := map[string]string{"operator": fabrikam, "partner": contoso, "provider": fabrikam, "reseller": tailspin}
	theirs := map[string]string{"partner": fabrikam, "provider": contoso, "reseller": fabrikam}
	mySub := map[string]string{"operator": W.FabrikamDefault, "partner": W.ContosoDefault, "provider": W.FabrikamDefault, "reseller": W.Proseware.Subscription}
	theirSub := map[string]string{"partner": W.FabrikamDefault, "provider": W.ContosoDefault, "reseller": W.Relecloud.Subscription}
	myCustomer := map[string]string{"operator": W.Relecloud.Tenant, "partner": W.Adatum.Tenant, "provider": W.Relecloud.Tenant, "reseller": W.Proseware.Tenant}
	theirCustomer := map[string]string{"partner": W.Relecloud.Tenant, "provider": W.Adatum.Tenant, "reseller": W.Relecloud.Tenant}
	myCSub := map[string]string{"operator": W.Relecloud.Subscription, "partner": W.Adatum.Subscription, "provider": W.Relecloud.Subscription, "reseller": W.Proseware.Subscription}
	theirCSub := map[string]string{"partner": W.Relecloud.Subscription, "provider": W.Adatum.Subscription, "reseller": W.Relecloud.Subscription}
	partnerID := map[string]string{"operator": "fabrikam", "partner": "contoso", "provider": "fabrikam", "reseller": "tailspin"}
	otherPartner := map[string]string{"partner": "fabrikam", "provider": "contoso", "reseller": "wingtip"}
	n := 0
	fresh := func() string { n++; return fmt.Sprintf("%08x-9999-4000-8000-%012x", n, time.Now().UnixNano()%1e12) }
	// Objects each principal creates, then deletes.
	newCustomer, newSub := map[string]string{}, map[string]string{}
	for _, w := range []string{"operator", "partner", "provider", "reseller"} {
		newCustomer[w], newSub[w] = fresh(), fresh()
	}
	customerOwner := map[string]string{"operator": "wingtip", "partner": "contoso", "provider": "tailspin", "reseller": "tailspin"}
	bookOwner := map[string]string{"operator": "northwind", "partner": "contoso", "provider": "fabrikam", "reseller": "tailspin"}
	withOut := func(who string, in *attempt, out, missing func() *attempt) trio {
		if who == "operator" {
			return trio{in: in, missing: missing()}
		}
		return trio{in: in, out: out(), missing: missing()}
	}
	// stackOps: the operator and the stamp's stack operator make the same
	// attempt (a creation or deletion: the stack operator's names a twin
	// object of its own); a delegated provider's token its own three.
	stackOps := func(in, delegatedIn, delegatedOut, delegatedMissing *attempt) map[string]trio {
		twin := *in
		twin.path = strings.ReplaceAll(twin.path, h.newUser, h.newUser2)
		twin.path = strings.ReplaceAll(twin.path, "/hostile-op", "/hostile-so")
		return map[string]trio{"operator": {in: in}, "stack-operator": {in: &twin}, "delegated": {in: delegatedIn, out: delegatedOut, missing: delegatedMissing}}
	}

	rows := map[string]map[string]trio{
		"Health":          all(getA("/healthz", 200, "")),
		"Activation_Keys": all(getA("/v1/activation/keys", 200, "")),
		// Commerce's signed cloud manifest is as public as its keys.
		"CloudManifestFile_List": all(getA("/providers/Microsoft.AzureStack/cloudManifestFiles?api-version=2022-06-01", 200, "")),
		"CloudManifestFile_Get":  all(getA("/providers/Microsoft.AzureStack/cloudManifestFiles/latest?api-version=2017-06-01", 200, "")),
		"Portal_Root":            all(getA("/", 200, "")), // redirected to the sign-in page
		"Portal":                 all(getA("/portal/login", 200, "")),
		"Metrics":                {"operator": {in: getA("/metrics", 200, "")}, "stack-operator": {in: getA("/metrics", 200, "")}, "delegated": {in: getA("/metrics", 403, "AuthorizationFailed")}},
		"Operations_List":        authed(getA("/providers/Microsoft.AzureStack/operations"+v17, 200, "")),
		"WhoAmI":                 authed(getA("/v1/whoami", 200, "")),
		"Meters_List":            authed(getA("/v1/meters", 200, "")),

		// Microsoft.AzureStack.
		"Registrations_ListBySubscription": partners(func(w string) trio {
			path := func(sub string) string {
				return "/subscriptions/" + sub + "/providers/Microsoft.AzureStack/registrations" + v17
			}
			if w == "operator" {
				return trio{in: getA(path(mySub[w]), 200, "")}
			}
			return scoped(getA(path(mySub[w]), 200, ""), getA(path(theirSub[w]), 403, "AuthorizationFailed"), getA(path(randomGUID()), 403, "AuthorizationFailed"))
		}),
		"Registrations_List": partners(func(w string) trio {
			path := func(sub string) string { return regsPath(sub) + v17 }
			if w == "operator" {
				return trio{in: getA(path(mySub[w]), 200, "")}
			}
			return scoped(getA(path(mySub[w]), 200, ""), getA(path(theirSub[w]), 403, "AuthorizationFailed"), getA(path(randomGUID()), 403, "AuthorizationFailed"))
		}),
		"Registrations_Get": partners(func(w string) trio {
			return withOut(w, getA(mine[w]+v17, 200, ""), func() *attempt { return regNotFound("GET", theirs[w]+v17, "") }, func() *attempt { return regNotFound("GET", ghost+v17, "") })
		}),
		"Registrations_CreateOrUpdate": partners(func(w string) trio {
			in := at("PUT", regsPath(mySub[w])+"/"+w+"-new"+v17, regBody(), 201, "")
			if w == "operator" {
				return trio{in: in, missing: at("PUT", ghost+v17, regBody(), 404, "SubscriptionNotFound")}
			}
			return scoped(in, at("PUT", regsPath(theirSub[w])+"/grab"+v17, regBody(), 403, "AuthorizationFailed"), at("PUT", ghost+v17, regBody(), 403, "AuthorizationFailed"))
		}),
		"Registrations_Update": partners(func(w string) trio {
			body := `{"tags":{"a":"1"}}`
			return withOut(w, at("PATCH", mine[w]+v17, body, 200, ""), func() *attempt { return regNotFound("PATCH", theirs[w]+v17, body) }, func() *attempt { return regNotFound("PATCH", ghost+v17, body) })
		}),
		"Registrations_Delete": partners(func(w string) trio {
			in := at("DELETE", regsPath(mySub[w])+"/"+w+"-new"+v17, "", 200, "")
			if w == "operator" {
				// The operator may manage every subscription: a registration
				// that is not there is deleted already (ARM's 204).
				return trio{in: in, missing: at("DELETE", ghost+v17, "", 204, "")}
			}
			return scoped(in, regNotFound("DELETE", theirs[w]+v17, ""), regNotFound("DELETE", ghost+v17, ""))
		}),
		"Registrations_GetActivationKey": partners(func(w string) trio {
			return withOut(w, at("POST", mine[w]+"/getactivationkey"+v17, "", 200, ""), func() *attempt { return regNotFound("POST", theirs[w]+"/getactivationkey"+v17, "") },
				func() *attempt { return regNotFound("POST", ghost+"/getactivationkey"+v17, "") })
		}),
		"Registrations_EnableRemoteManagement": partners(func(w string) trio {
			return withOut(w, at("POST", mine[w]+"/enableRemoteManagement"+v17, "", 200, ""), func() *attempt { return regNotFound("POST", theirs[w]+"/enableRemoteManagement"+v17, "") },
				func() *attempt { return regNotFound("POST", ghost+"/enableRemoteManagement"+v17, "") })
		}),
		"CustomerSubscriptions_List": partners(func(w string) trio {
			return withOut(w, getA(mine[w]+"/customerSubscriptions"+v17, 200, ""), func() *attempt { return regNotFound("GET", theirs[w]+"/customerSubscriptions"+v17, "") },
				func() *attempt { return regNotFound("GET", ghost+"/customerSubscriptions"+v17, "") })
		}),
		"CustomerSubscriptions_Get": partners(func(w string) trio {
			in := getA(cs(mine[w], myCSub[w]), 200, "")
			if w == "operator" {
				in = getA(cs(tailspin, W.Relecloud.Subscription), 200, "")
			}
			if w == "reseller" {
				// Wingtip's customer on Tailspin's stamp, mapped by their
				// provider, is not Tailspin's to see.
				return scoped(in, getA(cs(tailspin, W.Relecloud.Subscription), 404, "CustomerSubscriptionNotFound"), getA(cs(tailspin, randomGUID()), 404, "CustomerSubscriptionNotFound"))
			}
			return withOut(w, in, func() *attempt { return regNotFound("GET", cs(theirs[w], theirCSub[w]), "") }, func() *attempt { return regNotFound("GET", cs(ghost, randomGUID()), "") })
		}),
		"CustomerSubscriptions_Create": partners(func(w string) trio {
			in := at("PUT", cs(mine[w], myCSub[w]), csBody(map[string]string{"operator": W.Relecloud.Tenant, "partner": W.Adatum.Tenant, "provider": W.Relecloud.Tenant, "reseller": W.Proseware.Tenant}[w]), 200, "")
			if w == "reseller" {
				// A sibling reseller's customer answers as a subscription
				// that does not exist.
				return scoped(in, at("PUT", cs(tailspin, W.Relecloud.Subscription), csBody(W.Relecloud.Tenant), 400, "InvalidCustomerSubscriptionId"),
					at("PUT", cs(tailspin, randomGUID()), csBody(randomGUID()), 400, "InvalidCustomerSubscriptionId"))
			}
			return withOut(w, in, func() *attempt { return regNotFound("PUT", cs(theirs[w], theirCSub[w]), csBody(W.Proseware.Tenant)) },
				func() *attempt { return regNotFound("PUT", cs(ghost, randomGUID()), csBody(randomGUID())) })
		}),
		"CustomerSubscriptions_Delete": partners(func(w string) trio {
			if w == "reseller" {
				return scoped(at("DELETE", cs(tailspin, W.Proseware.Subscription), "", 200, ""), at("DELETE", cs(tailspin, W.Relecloud.Subscription), "", 404, "CustomerSubscriptionNotFound"),
					at("DELETE", cs(tailspin, randomGUID()), "", 404, "CustomerSubscriptionNotFound"))
			}
			in := at("DELETE", cs(mine[w], myCSub[w]), "", 200, "")
			if w == "operator" {
				in = at("DELETE", cs(tailspin, W.Relecloud.Subscription), "", 200, "")
			}
			return withOut(w, in, func() *attempt { return regNotFound("DELETE", cs(theirs[w], theirCSub[w]), "") }, func() *attempt { return regNotFound("DELETE", cs(ghost, randomGUID()), "") })
		}),

		// The partner directory.
		"Directory_ListPartners": partners(func(string) trio { return trio{in: getA("/v1/partners", 200, "")} }),
		"Directory_GetPartner": partners(func(w string) trio {
			return withOut(w, getA("/v1/partners/"+partnerID[w], 200, ""), func() *attempt { return getA("/v1/partners/"+otherPartner[w], 404, "PartnerNotFound") },
				func() *attempt { return getA("/v1/partners/nobody", 404, "PartnerNotFound") })
		}),
		"Directory_PutPartner":    {"operator": {in: at("PUT", "/v1/partners/hostile", `{"name":"Hostile","type":"DirectCSP"}`, 201, "")}},
		"Directory_DeletePartner": {"operator": {in: at("DELETE", "/v1/partners/hostile", "", 200, ""), missing: at("DELETE", "/v1/partners/nobody", "", 404, "PartnerNotFound")}},
		"Directory_ListCustomers": partners(func(string) trio { return trio{in: getA("/v1/customers", 200, "")} }),
		"Directory_GetCustomer": partners(func(w string) trio {
			return withOut(w, getA("/v1/customers/"+myCustomer[w], 200, ""), func() *attempt { return getA("/v1/customers/"+theirCustomer[w], 404, "CustomerNotFound") },
				func() *attempt { return getA("/v1/customers/"+randomGUID(), 404, "CustomerNotFound") })
		}),
		"Directory_PutCustomer": partners(func(w string) trio {
			in := at("PUT", "/v1/customers/"+newCustomer[w], `{"name":"New","partner":"`+customerOwner[w]+`"}`, 201, "")
			if w == "operator" {
				return trio{in: in}
			}
			return scoped(in, at("PUT", "/v1/customers/"+fresh(), `{"name":"Grab","partner":"`+otherPartner[w]+`"}`, 403, "AuthorizationFailed"),
				at("PUT", "/v1/customers/"+fresh(), `{"name":"Ghost","partner":"nobody"}`, 403, "AuthorizationFailed"))
		}),
		"Directory_DeleteCustomer": partners(func(w string) trio {
			return withOut(w, at("DELETE", "/v1/customers/"+newCustomer[w], "", 200, ""), func() *attempt { return at("DELETE", "/v1/customers/"+theirCustomer[w], "", 404, "CustomerNotFound") },
				func() *attempt { return at("DELETE", "/v1/customers/"+randomGUID(), "", 404, "CustomerNotFound") })
		}),
		"Directory_ListSubscriptions": partners(func(string) trio { return trio{in: getA("/v1/subscriptions", 200, "")} }),
		"Directory_GetSubscription": partners(func(w string) trio {
			return withOut(w, getA("/v1/subscriptions/"+myCSub[w], 200, ""), func() *attempt { return getA("/v1/subscriptions/"+theirCSub[w], 404, "SubscriptionNotFound") },
				func() *attempt { return getA("/v1/subscriptions/"+randomGUID(), 404, "SubscriptionNotFound") })
		}),
		"Directory_PutSubscription": partners(func(w string) trio {
			owner := map[string]string{"operator": "fabrikam", "partner": "contoso", "provider": "fabrikam", "reseller": "fabrikam"}[w]
			in := at("PUT", "/v1/subscriptions/"+newSub[w], `{"offer":"CSP","partner":"`+owner+`","customerTenantId":"`+myCustomer[w]+`"}`, 201, "")
			if w == "operator" {
				return trio{in: in}
			}
			return scoped(in, at("PUT", "/v1/subscriptions/"+fresh(), `{"offer":"CSP","partner":"`+map[string]string{"partner": "fabrikam", "provider": "contoso", "reseller": "fabrikam"}[w]+`","customerTenantId":"`+theirCustomer[w]+`"}`, 403, "AuthorizationFailed"),
				at("PUT", "/v1/subscriptions/"+fresh(), `{"offer":"CSP","partner":"nobody","customerTenantId":"`+randomGUID()+`"}`, 403, "AuthorizationFailed"))
		}),
		"Directory_DeleteSubscription": partners(func(w string) trio {
			return withOut(w, at("DELETE", "/v1/subscriptions/"+newSub[w], "", 200, ""), func() *attempt {
				return at("DELETE", "/v1/subscriptions/"+theirCSub[w], "", 404, "SubscriptionNotFound")
			},
				func() *attempt {
					return at("DELETE", "/v1/subscriptions/"+randomGUID(), "", 404, "SubscriptionNotFound")
				})
		}),
		"Directory_History": {"operator": {in: getA("/v1/directory/history/partners/contoso", 200, "")}},
		"Directory_Import":  {"operator": {in: at("POST", "/v1/directory/import", string(storetest.WorldJSON()), 200, "")}},
		"Directory_Resolve": {"operator": {in: getA("/v1/directory/resolve/subscriptions/"+W.Adatum.Subscription, 200, ""), missing: getA("/v1/directory/resolve/subscriptions/"+randomGUID(), 404, "SubscriptionNotFound")}},

		// The bridge and forwarded usage.
		"Bridge_PostUsage": {"bridge": {in: at("POST", "/v1/bridge/usage", `{"cloudId":"`+h.bridgeReg.CloudID+`","records":[]}`, 200, ""),
			out:     at("POST", "/v1/bridge/usage", `{"cloudId":"`+randomGUID()+`","records":[]}`, 403, "CloudIdMismatch"),
			missing: at("POST", "/v1/bridge/usage", `{"cloudId":"`+randomGUID()+`","records":[]}`, 403, "CloudIdMismatch")}},
		// A stamp asks which of its tenants budgets hold; only a bridge may.
		"Bridge_Holds": {"bridge": {in: getA("/v1/bridge/holds", 200, "")}},
		"Usage_Forwarded": partners(func(w string) trio {
			return withOut(w, getA("/v1/usage/forwarded?subscriptionId="+myCSub[w], 200, ""), func() *attempt {
				return getA("/v1/usage/forwarded?subscriptionId="+theirCSub[w], 404, "SubscriptionNotFound")
			},
				func() *attempt {
					return getA("/v1/usage/forwarded?subscriptionId="+randomGUID(), 404, "SubscriptionNotFound")
				})
		}),
		"MeterMap_Get": partners(func(string) trio { return trio{in: getA("/v1/meter-map", 200, "")} }),
		"MeterMap_Publish": {"operator": {in: at("PUT", "/v1/meter-map", `{"effectiveFrom":"`+now.AddDate(1, 0, 0).Format(time.RFC3339)+
			`","meters":[{"localMeterId":"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5","billingMeterId":"9c23489b-c01c-5893-b898-412bd252b0db","name":"1 Core","category":"Azure Stack Hub","subCategory":"Base VM","unit":"1 Hour","factor":1}]}`, 201, "")}},

		// Billing.
		"PriceLists_Import": {"operator": {in: csv(at("POST", "/v1/billing/price-lists", testPriceListEUR, 201, ""))}},
		"PriceLists_List":   {"operator": {in: getA("/v1/billing/price-lists", 200, "")}, "partner": {in: getA("/v1/billing/price-lists", 200, "")}, "provider": {in: getA("/v1/billing/price-lists", 200, "")}, "reseller": {in: getA("/v1/billing/price-lists", 403, "AuthorizationFailed")}},
		"PriceLists_Get": {"operator": {in: getA("/v1/billing/price-lists/1", 200, ""), missing: getA("/v1/billing/price-lists/999", 404, "PriceListNotFound")},
			"partner":  {in: getA("/v1/billing/price-lists/1", 200, ""), missing: getA("/v1/billing/price-lists/999", 404, "PriceListNotFound")},
			"provider": {in: getA("/v1/billing/price-lists/1", 200, "")}, "reseller": {in: getA("/v1/billing/price-lists/1", 403, "AuthorizationFailed")}},
		"Agreements_List": partners(func(string) trio { return trio{in: getA("/v1/billing/agreements", 200, "")} }),
		"Agreements_Put":  {"operator": {in: at("PUT", "/v1/billing/agreements/northwind", `{"currency":"USD"}`, 200, "")}},
		"Invoices_List":   partners(func(string) trio { return trio{in: getA("/v1/billing/invoices?period="+h.period, 200, "")} }),
		"Invoices_Get": partners(func(w string) trio {
			inv := map[string]string{"operator": h.invoiceFabrikam, "partner": h.invoiceContoso, "provider": h.invoiceFabrikam}
			other := map[string]string{"partner": h.invoiceFabrikam, "provider": h.invoiceContoso, "reseller": h.invoiceFabrikam}
			if w == "reseller" {
				// A reseller is billed by its provider, not by commerce.
				return trio{out: getA("/v1/billing/invoices/"+other[w], 404, "InvoiceNotFound"), missing: getA("/v1/billing/invoices/SB-209901-nobody", 404, "InvoiceNotFound")}
			}
			return withOut(w, getA("/v1/billing/invoices/"+inv[w], 200, ""), func() *attempt { return getA("/v1/billing/invoices/"+other[w], 404, "InvoiceNotFound") },
				func() *attempt { return getA("/v1/billing/invoices/SB-209901-nobody", 404, "InvoiceNotFound") })
		}),
		"CreditNotes_Create": {"operator": {in: at("POST", "/v1/billing/invoices/"+h.invoiceFabrikam+"/credit-notes", `{"reason":"x","lines":[{"line":1,"amount":1}]}`, 400, "InvoiceNotFinal"),
			missing: at("POST", "/v1/billing/invoices/SB-209901-nobody/credit-notes", `{"reason":"x","lines":[{"line":1,"amount":1}]}`, 404, "InvoiceNotFound")}},
		"Periods_Get":      {"operator": {in: getA("/v1/billing/periods/"+h.period, 200, "")}},
		"Periods_Finalize": {"operator": {in: at("POST", "/v1/billing/periods/"+h.period+"/finalize", "", 400, "PeriodNotClosed")}},
		"Reconciliation_Get": partners(func(w string) trio {
			q := func(partner string) string {
				return "/v1/billing/reconciliation?partner=" + partner + "&period=" + h.period
			}
			if w == "reseller" {
				return trio{in: getA(q("tailspin"), 403, "AuthorizationFailed"), out: getA(q("fabrikam"), 403, "AuthorizationFailed"), missing: getA(q("nobody"), 403, "AuthorizationFailed")}
			}
			return withOut(w, getA(q(partnerID[w]), 200, ""), func() *attempt { return getA(q(otherPartner[w]), 404, "PartnerNotFound") }, func() *attempt { return getA(q("nobody"), 404, "PartnerNotFound") })
		}),
		"Exports_Start": partners(func(w string) trio {
			body := func(partner string) string { return `{"partner":"` + partner + `","period":"` + h.period + `"}` }
			if w == "reseller" {
				return trio{in: at("POST", "/v1/billing/exports", body("tailspin"), 403, "AuthorizationFailed"), out: at("POST", "/v1/billing/exports", body("fabrikam"), 403, "AuthorizationFailed"),
					missing: at("POST", "/v1/billing/exports", body("nobody"), 403, "AuthorizationFailed")}
			}
			return withOut(w, at("POST", "/v1/billing/exports", body(partnerID[w]), 202, ""), func() *attempt {
				return at("POST", "/v1/billing/exports", body(otherPartner[w]), 404, "PartnerNotFound")
			},
				func() *attempt { return at("POST", "/v1/billing/exports", body("nobody"), 404, "PartnerNotFound") })
		}),
		"Exports_Get": partners(func(w string) trio {
			mineE := map[string]string{"operator": "{export-fabrikam}", "partner": "{export-contoso}", "provider": "{export-fabrikam}"}
			theirsE := map[string]string{"partner": "{export-fabrikam}", "provider": "{export-contoso}", "reseller": "{export-fabrikam}"}
			if w == "reseller" {
				return trio{out: getA("/v1/billing/exports/"+theirsE[w], 404, "ExportNotFound"), missing: getA("/v1/billing/exports/999999", 404, "ExportNotFound")}
			}
			return withOut(w, getA("/v1/billing/exports/"+mineE[w], 200, ""), func() *attempt { return getA("/v1/billing/exports/"+theirsE[w], 404, "ExportNotFound") },
				func() *attempt { return getA("/v1/billing/exports/999999", 404, "ExportNotFound") })
		}),
		"Exports_File": partners(func(w string) trio {
			mineE := map[string]string{"operator": "{export-fabrikam}", "partner": "{export-contoso}", "provider": "{export-fabrikam}"}
			theirsE := map[string]string{"partner": "{export-fabrikam}", "provider": "{export-contoso}", "reseller": "{export-fabrikam}"}
			if w == "reseller" {
				return trio{out: getA("/v1/billing/exports/"+theirsE[w]+"/file", 404, "ExportNotFound"), missing: getA("/v1/billing/exports/999999/file", 404, "ExportNotFound")}
			}
			return withOut(w, getA("/v1/billing/exports/"+mineE[w]+"/file", 200, ""), func() *attempt { return getA("/v1/billing/exports/"+theirsE[w]+"/file", 404, "ExportNotFound") },
				func() *attempt { return getA("/v1/billing/exports/999999/file", 404, "ExportNotFound") })
		}),
		"PriceBooks_List": partners(func(w string) trio {
			return withOut(w, getA("/v1/billing/price-books/"+bookOwner[w], 200, ""), func() *attempt { return getA("/v1/billing/price-books/"+otherPartner[w], 404, "PartnerNotFound") },
				func() *attempt { return getA("/v1/billing/price-books/nobody", 404, "PartnerNotFound") })
		}),
		"PriceBooks_Put": partners(func(w string) trio {
			body := `{"markupPercent":5}`
			return withOut(w, at("PUT", "/v1/billing/price-books/"+bookOwner[w]+"/default", body, 200, ""), func() *attempt {
				return at("PUT", "/v1/billing/price-books/"+otherPartner[w]+"/default", body, 404, "PartnerNotFound")
			},
				func() *attempt {
					return at("PUT", "/v1/billing/price-books/nobody/default", body, 404, "PartnerNotFound")
				})
		}),
		"PriceBooks_Delete": partners(func(w string) trio {
			return withOut(w, at("DELETE", "/v1/billing/price-books/"+bookOwner[w]+"/default", "", 204, ""), func() *attempt {
				return at("DELETE", "/v1/billing/price-books/"+otherPartner[w]+"/default", "", 404, "PartnerNotFound")
			},
				func() *attempt {
					return at("DELETE", "/v1/billing/price-books/nobody/default", "", 404, "PartnerNotFound")
				})
		}),
		"Statements_List": partners(func(w string) trio {
			q := func(who string) string { return "/v1/billing/statements/" + who + "?period=" + h.period }
			return withOut(w, getA(q(partnerID[w]), 200, ""), func() *attempt { return getA(q(otherPartner[w]), 404, "PartnerNotFound") }, func() *attempt { return getA(q("nobody"), 404, "PartnerNotFound") })
		}),
		"Audit_List": partners(func(string) trio { return trio{in: getA("/v1/audit", 200, "")} }),
		// Budgets: each its own; a reseller not its provider's, a provider
		// not its reseller's.
		"Budgets_List": partners(func(string) trio { return trio{in: getA("/v1/budgets", 200, "")} }),
		"Budgets_Create": partners(func(w string) trio {
			return trio{in: at("POST", "/v1/budgets", `{"name":"new","currency":"USD","amount":"10"}`, 201, ""),
				missing: at("POST", "/v1/budgets", `{"name":"new","currency":"USD","amount":"10","scope":{"kind":"subscription","id":"`+randomGUID()+`"}}`, 404, "SubscriptionNotFound")}
		}),
		"Budgets_Get": budgetRow(h, "GET", "", 200),
		// No budget of the world holds anything: the caller's own answers
		// that, another's (or none) that there is no such budget.
		"Budgets_ReleaseHold": partners(func(w string) trio {
			rel := func(id string) string { return "/v1/budgets/" + id + "/holds/" + W.Adatum.Tenant + "/release" }
			return withOut(w, at("POST", rel(h.budgets[w]), "", 404, "HoldNotFound"), func() *attempt { return at("POST", rel(h.budgets[theirBudget(w)]), "", 404, "BudgetNotFound") },
				func() *attempt { return at("POST", rel("bud_nothing"), "", 404, "BudgetNotFound") })
		}),
		"Budgets_Update": budgetRow(h, "PATCH", `{"amount":"20"}`, 200),
		"Budgets_Delete": partners(func(w string) trio {
			return withOut(w, at("DELETE", "/v1/budgets/"+h.budgetsGone[w], "", 200, ""), func() *attempt {
				return at("DELETE", "/v1/budgets/"+h.budgets[theirHook[w]], "", 404, "BudgetNotFound")
			},
				func() *attempt { return at("DELETE", "/v1/budgets/bud_nothing", "", 404, "BudgetNotFound") })
		}),
		// Events: each its own; a reseller not its provider's.
		"Events_List": partners(func(string) trio { return trio{in: getA("/v1/events", 200, "")} }),
		"Events_Get": partners(func(w string) trio {
			mineEv := map[string]string{"operator": h.eventFabrikam, "partner": h.eventContoso, "provider": h.eventTailspin, "reseller": h.eventTailspin}
			theirEv := map[string]string{"partner": h.eventFabrikam, "provider": h.eventContoso, "reseller": h.eventFabrikam}
			return withOut(w, getA("/v1/events/"+mineEv[w], 200, ""), func() *attempt { return getA("/v1/events/"+theirEv[w], 404, "EventNotFound") },
				func() *attempt { return getA("/v1/events/msg_nothing", 404, "EventNotFound") })
		}),
		// Webhooks: each principal its own endpoints; another's (a
		// provider's, for a reseller) answer as missing ones. A URL
		// inside the network is refused.
		"Webhooks_List": partners(func(string) trio { return trio{in: getA("/v1/webhooks", 200, "")} }),
		"Webhooks_Create": partners(func(w string) trio {
			return trio{in: at("POST", "/v1/webhooks", `{"url":"https://hooks.example.com/new-`+w+`","types":["invoice.finalized"]}`, 201, ""),
				missing: at("POST", "/v1/webhooks", `{"url":"http://169.254.169.254/latest/meta-data"}`, 400, "InvalidRequestContent")}
		}),
		"Webhooks_Get":          hookRow(h, "GET", "", "", 200, "WebhookNotFound"),
		"Webhooks_Update":       hookRow(h, "PATCH", "", `{"description":"changed"}`, 200, "WebhookNotFound"),
		"Webhooks_RotateSecret": hookRow(h, "POST", "/rotate-secret", "", 200, "WebhookNotFound"),
		"Webhooks_Delete": partners(func(w string) trio {
			return withOut(w, at("DELETE", "/v1/webhooks/"+h.hooksGone[w], "", 200, ""), func() *attempt {
				return at("DELETE", "/v1/webhooks/"+h.hooks[theirHook[w]], "", 404, "WebhookNotFound")
			},
				func() *attempt { return at("DELETE", "/v1/webhooks/ep_nothing", "", 404, "WebhookNotFound") })
		}),
		"Webhooks_Deliveries": hookRow(h, "GET", "/deliveries", "", 200, "WebhookNotFound"),
		"Webhooks_Delivery": partners(func(w string) trio {
			return withOut(w, getA(fmt.Sprintf("/v1/webhooks/%s/deliveries/%d", h.hooks[w], h.delivery[w]), 200, ""),
				func() *attempt {
					return getA(fmt.Sprintf("/v1/webhooks/%s/deliveries/%d", h.hooks[theirHook[w]], h.delivery[theirHook[w]]), 404, "WebhookNotFound")
				},
				func() *attempt {
					return getA(fmt.Sprintf("/v1/webhooks/ep_nothing/deliveries/%d", h.delivery[w]), 404, "WebhookNotFound")
				})
		}),
		"Webhooks_Replay": partners(func(w string) trio {
			return withOut(w, at("POST", fmt.Sprintf("/v1/webhooks/%s/deliveries/%d/replay", h.hooks[w], h.delivery[w]), "", 202, ""),
				func() *attempt {
					return at("POST", fmt.Sprintf("/v1/webhooks/%s/deliveries/%d/replay", h.hooks[theirHook[w]], h.delivery[theirHook[w]]), "", 404, "WebhookNotFound")
				},
				func() *attempt {
					return at("POST", fmt.Sprintf("/v1/webhooks/ep_nothing/deliveries/%d/replay", h.delivery[w]), "", 404, "WebhookNotFound")
				})
		}),
		// A deployment license: the partner's own subscription; another's
		// does not exist for it; a reseller owns none.
		"DeploymentLicense_Create": partners(func(w string) trio {
			q := func(sub string) string {
				return "/subscriptions/" + sub + "/providers/Microsoft.AzureStack/generateDeploymentLicense?api-version=2022-06-01"
			}
			body := `{"verificationVersion":"latest"}`
			missing := at("POST", q("99999999-0000-4000-8000-000000000009"), body, 404, "SubscriptionNotFound")
			if w == "reseller" {
				return trio{in: at("POST", q(mySub[w]), body, 404, "SubscriptionNotFound"), out: at("POST", q(theirSub[w]), body, 404, "SubscriptionNotFound"), missing: missing}
			}
			return withOut(w, at("POST", q(mySub[w]), body, 200, ""), func() *attempt { return at("POST", q(theirSub[w]), body, 404, "SubscriptionNotFound") }, func() *attempt { return missing })
		}),
		// Marketplace syndication is out of scope, for everyone alike.
		"Products_List": partners(func(w string) trio {
			return trio{in: getA(regsPath(mySub[w])+"/any/products?api-version=2017-06-01", 400, "MarketplaceSyndicationNotSupported")}
		}),
		"Products_Get": partners(func(w string) trio {
			return trio{in: getA(regsPath(mySub[w])+"/any/products/p1?api-version=2017-06-01", 400, "MarketplaceSyndicationNotSupported")}
		}),
		"Products_ListDetails": partners(func(w string) trio {
			return trio{in: at("POST", regsPath(mySub[w])+"/any/products/p1/listDetails?api-version=2017-06-01", "", 400, "MarketplaceSyndicationNotSupported")}
		}),
		// Partner Center's billing API. The world's invoices are this
		// month's drafts, which Partner Center does not list as invoices:
		// each partner's answers 404 as another's and a missing one do (the
		// finalized path is TestPartnerCenterBilling's).
		"PartnerCenter_Invoices": partners(func(string) trio { return trio{in: getA("/partnercenter/v1/invoices", 200, "")} }),
		"PartnerCenter_Invoice": partners(func(w string) trio {
			return pcInvoiceTrio(w, h, func(n string) string { return "/partnercenter/v1/invoices/" + n })
		}),
		"PartnerCenter_LineItems": partners(func(w string) trio {
			return pcInvoiceTrio(w, h, func(n string) string {
				return "/partnercenter/v1/invoices/" + n + "/lineitems?provider=Azure&invoicelineitemtype=BillingLineItems"
			})
		}),
		"PartnerCenter_LineItemsByPath": partners(func(w string) trio {
			return pcInvoiceTrio(w, h, func(n string) string { return "/partnercenter/v1/invoices/" + n + "/lineitems/Azure/BillingLineItems" })
		}),
		"PartnerCenter_Utilization": partners(func(w string) trio {
			q := func(c storetest.Customer) string {
				return "/partnercenter/v1/customers/" + c.Tenant + "/subscriptions/" + c.Subscription + "/utilizations/azure?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z"
			}
			mine := map[string]storetest.Customer{"operator": W.Relecloud, "partner": W.Adatum, "provider": W.Relecloud, "reseller": W.Proseware}
			theirs := map[string]storetest.Customer{"partner": W.Relecloud, "provider": W.Adatum, "reseller": W.Relecloud}
			missing := func() *attempt {
				return getA(q(storetest.Customer{Tenant: W.Adatum.Tenant, Subscription: "99999999-0000-4000-8000-000000000009"}), 404, "SubscriptionNotFound")
			}
			return withOut(w, getA(q(mine[w]), 200, ""), func() *attempt { return getA(q(theirs[w]), 404, "SubscriptionNotFound") }, missing)
		}),
		"PartnerCenter_RateCard": {"operator": {in: getA("/partnercenter/v1/ratecards/azure?currency=USD", 200, "")},
			"partner": {in: getA("/partnercenter/v1/ratecards/azure?currency=USD", 200, "")}, "provider": {in: getA("/partnercenter/v1/ratecards/azure?currency=USD", 200, "")},
			"reseller": {in: getA("/partnercenter/v1/ratecards/azure?currency=USD", 403, "AuthorizationFailed")}},
		// The rate card: a partner's own subscription; a customer's is
		// refused (end customers see no CSP prices), another partner's does
		// not exist.
		"RateCard_Get": partners(func(w string) trio {
			q := func(sub string) string {
				return "/subscriptions/" + sub + "/providers/Microsoft.Commerce/RateCard?api-version=2015-06-01-preview&%24filter=" +
					url.QueryEscape("OfferDurableId eq 'MS-AZR-0145P' and Currency eq 'USD' and Locale eq 'en-US' and RegionInfo eq 'US'")
			}
			missing := func() *attempt { return getA(q("99999999-0000-4000-8000-000000000009"), 404, "SubscriptionNotFound") }
			if w == "reseller" {
				return trio{in: getA(q(mySub[w]), 403, "RateCardNotAvailable"), out: getA(q(theirSub[w]), 404, "SubscriptionNotFound"), missing: missing()}
			}
			return withOut(w, getA(q(mySub[w]), 200, ""), func() *attempt { return getA(q(theirSub[w]), 404, "SubscriptionNotFound") }, missing)
		}),

		// Quarantine: the operator's, and the stamp's own stack operator's
		// for the stack's stages.
		"Quarantine_List": {"operator": {in: getA("/v1/quarantine", 200, "")}, "stack-operator": {in: getA("/v1/quarantine", 200, "")}, "delegated": {in: getA("/v1/quarantine", 403, "AuthorizationFailed")}},
		"Quarantine_Get": {"operator": {in: getA(fmt.Sprintf("/v1/quarantine/%d", h.heldCommerce[0]), 200, ""), missing: getA("/v1/quarantine/999999", 404, "QuarantineItemNotFound")},
			"stack-operator": {in: getA(fmt.Sprintf("/v1/quarantine/%d", h.heldStack[0]), 200, ""), out: getA(fmt.Sprintf("/v1/quarantine/%d", h.heldCommerce[0]), 404, "QuarantineItemNotFound"), missing: getA("/v1/quarantine/999999", 404, "QuarantineItemNotFound")},
			"delegated":      {in: getA(fmt.Sprintf("/v1/quarantine/%d", h.heldStack[0]), 403, "AuthorizationFailed")}},
		"Quarantine_Release": {"operator": {in: at("POST", fmt.Sprintf("/v1/quarantine/%d/release", h.heldStack[1]), "", 200, ""), missing: at("POST", "/v1/quarantine/999999/release", "", 404, "QuarantineItemNotFound")},
			"stack-operator": {in: at("POST", fmt.Sprintf("/v1/quarantine/%d/release", h.heldStack[2]), "", 200, ""), out: at("POST", fmt.Sprintf("/v1/quarantine/%d/release", h.heldCommerce[0]), "", 404, "QuarantineItemNotFound"),
				missing: at("POST", "/v1/quarantine/999999/release", "", 404, "QuarantineItemNotFound")},
			"delegated": {in: at("POST", fmt.Sprintf("/v1/quarantine/%d/release", h.heldStack[3]), "", 403, "AuthorizationFailed")}},
		"Quarantine_Drop": {"operator": {in: at("POST", fmt.Sprintf("/v1/quarantine/%d/drop", h.heldCommerce[1]), "", 200, ""), missing: at("POST", "/v1/quarantine/999999/drop", "", 404, "QuarantineItemNotFound")},
			"stack-operator": {in: at("POST", fmt.Sprintf("/v1/quarantine/%d/drop", h.heldStack[3]), "", 200, ""), out: at("POST", fmt.Sprintf("/v1/quarantine/%d/drop", h.heldCommerce[0]), "", 404, "QuarantineItemNotFound"),
				missing: at("POST", "/v1/quarantine/999999/drop", "", 404, "QuarantineItemNotFound")},
			"delegated": {in: at("POST", fmt.Sprintf("/v1/quarantine/%d/drop", h.heldStack[0]), "", 403, "AuthorizationFailed")}},

		// Native registration actions.
		"Registrations_ListAll": partners(func(w string) trio {
			if w == "operator" {
				return trio{in: getA("/v1/registrations", 200, "")}
			}
			return scoped(getA("/v1/registrations?subscriptionId="+mySub[w], 200, ""), getA("/v1/registrations?subscriptionId="+theirSub[w], 403, "AuthorizationFailed"),
				getA("/v1/registrations?subscriptionId="+randomGUID(), 403, "AuthorizationFailed"))
		}),
		"Registrations_Approve": {"operator": {in: at("POST", "/v1/registrations/approve", `{"subscriptionId":"`+W.FabrikamDefault+`","resourceGroup":"azurestack","name":"fabrikam-stamp"}`, 200, ""),
			missing: at("POST", "/v1/registrations/approve", `{"subscriptionId":"`+W.FabrikamDefault+`","resourceGroup":"azurestack","name":"ghost"}`, 404, "RegistrationNotFound")}},
		"Registrations_RevokeApproval": {"operator": {in: at("POST", "/v1/registrations/revoke-approval", `{"subscriptionId":"`+W.ContosoDefault+`","resourceGroup":"azurestack","name":"contoso-stamp"}`, 200, "")}},
		"Registrations_History": partners(func(w string) trio {
			q := func(path string) string {
				parts := strings.Split(strings.TrimPrefix(path, "/subscriptions/"), "/")
				return "/v1/registrations/history?subscriptionId=" + parts[0] + "&resourceGroup=azurestack&name=" + parts[len(parts)-1]
			}
			return withOut(w, getA(q(mine[w]), 200, ""), func() *attempt { return regNotFound("GET", q(theirs[w]), "") }, func() *attempt { return regNotFound("GET", q(ghost), "") })
		}),

		// The stack's tenancy: the stamp's own operator manages all of it; a
		// delegated provider's token only its own tenants' subscriptions.
		"DirectoryTenants_List": stackOps(getA(dirTenants(h.provider)+vAdmin, 200, ""), getA(dirTenants(h.dp)+vAdmin, 403, "AuthorizationFailed"), nil, nil),
		"DirectoryTenants_Get": {"operator": {in: getA(dirTenants(h.provider)+"/t-"+h.localTenant[:8]+vAdmin, 200, ""), missing: getA(dirTenants(h.provider)+"/nobody"+vAdmin, 404, "DirectoryTenantNotFound")},
			"stack-operator": {in: getA(dirTenants(h.provider)+"/t-"+h.localTenant[:8]+vAdmin, 200, ""), missing: getA(dirTenants(h.provider)+"/nobody"+vAdmin, 404, "DirectoryTenantNotFound")},
			"delegated":      {in: getA(dirTenants(h.dp)+"/t-"+h.dpTenant[:8]+vAdmin, 403, "AuthorizationFailed")}},
		"DirectoryTenants_CreateOrUpdate": {"operator": {in: at("PUT", dirTenants(h.provider)+"/hostile-op"+vAdmin, `{"location":"local","properties":{"tenantId":"`+randomGUID()+`"}}`, 201, "")},
			"stack-operator": {in: at("PUT", dirTenants(h.provider)+"/hostile-so"+vAdmin, `{"location":"local","properties":{"tenantId":"`+randomGUID()+`"}}`, 201, "")},
			"delegated":      {in: at("PUT", dirTenants(h.dp)+"/x"+vAdmin, `{"location":"local","properties":{"tenantId":"`+randomGUID()+`"}}`, 403, "AuthorizationFailed")}},
		"DirectoryTenants_Delete": {"operator": {in: at("DELETE", dirTenants(h.provider)+"/hostile-op"+vAdmin, "", 200, "")}, "stack-operator": {in: at("DELETE", dirTenants(h.provider)+"/hostile-so"+vAdmin, "", 200, "")},
			"delegated": {in: at("DELETE", dirTenants(h.dp)+"/t-"+h.dpTenant[:8]+vAdmin, "", 403, "AuthorizationFailed")}},
		"Subscriptions_List": stackOps(getA(userSubs(h.provider)+vAdmin, 200, ""), getA(userSubs(h.dp)+vAdmin, 200, ""), getA(userSubs(h.provider)+vAdmin, 403, "AuthorizationFailed"), getA(userSubs(randomGUID())+vAdmin, 403, "AuthorizationFailed")),
		"Subscriptions_Get": stackOps(getA(userSubs(h.provider)+"/"+h.localSub+vAdmin, 200, ""), getA(userSubs(h.dp)+"/"+h.dpUser+vAdmin, 200, ""),
			getA(userSubs(h.dp)+"/"+h.localSub+vAdmin, 404, "SubscriptionNotFound"), getA(userSubs(h.dp)+"/"+randomGUID()+vAdmin, 404, "SubscriptionNotFound")),
		"Subscriptions_CreateOrUpdate": stackOps(at("PUT", userSubs(h.provider)+"/"+h.newUser+vAdmin, `{"properties":{"tenantId":"`+h.localTenant+`","owner":"o","offerId":"o"}}`, 201, ""),
			at("PUT", userSubs(h.dp)+"/"+h.dpUser+vAdmin, `{"properties":{"tenantId":"`+h.dpTenant+`","owner":"o2","offerId":"o"}}`, 200, ""),
			at("PUT", userSubs(h.dp)+"/"+h.otherSub+vAdmin, `{"properties":{"tenantId":"`+h.localTenant+`","owner":"grab","offerId":"o"}}`, 403, "AuthorizationFailed"),
			at("PUT", userSubs(randomGUID())+"/"+randomGUID()+vAdmin, `{"properties":{"tenantId":"`+h.localTenant+`","owner":"o","offerId":"o"}}`, 403, "AuthorizationFailed")),
		"Subscriptions_Delete": stackOps(at("DELETE", userSubs(h.provider)+"/"+h.newUser+vAdmin, "", 200, ""), nil,
			at("DELETE", userSubs(h.dp)+"/"+h.localSub+vAdmin, "", 204, ""), at("DELETE", userSubs(h.dp)+"/"+randomGUID()+vAdmin, "", 204, "")),
		"Subscriptions_History": stackOps(getA("/v1/stack/subscriptions/"+h.localSub+"/history", 200, ""), nil, nil, nil),
		"Stack_Info":            stackOps(getA("/v1/stack/info", 200, ""), getA("/v1/stack/info", 200, ""), nil, nil),
		"Stack_BridgeStatus":    stackOps(getA("/v1/stack/bridge", 200, ""), getA("/v1/stack/bridge", 403, "AuthorizationFailed"), nil, nil),
		"Meters_Put": stackOps(at("PUT", "/v1/meters/dddddddd-9999-4000-8000-000000000001", `{"name":"Hostile","unit":"1 Hour"}`, 200, ""),
			at("PUT", "/v1/meters/dddddddd-9999-4000-8000-000000000002", `{"name":"Hostile","unit":"1 Hour"}`, 403, "AuthorizationFailed"), nil, nil),
		"Usage_PostEvents": {"operator": {in: ndjson(at("POST", "/v1/usage/events", event(), 200, ""))}, "stack-operator": {in: ndjson(at("POST", "/v1/usage/events", event(), 200, ""))},
			"usage-writer": {in: ndjson(at("POST", "/v1/usage/events", event(), 200, ""))}, "delegated": {in: ndjson(at("POST", "/v1/usage/events", event(), 403, "AuthorizationFailed"))}},
		"UsageAggregates_List": {"operator": {in: getA(usageAt(h.otherSub), 200, "")}, "stack-operator": {in: getA(usageAt(h.otherSub), 200, "")},
			"tenant":    {in: getA(usageAt(h.localSub), 200, ""), out: getA(usageAt(h.otherSub), 403, "AuthorizationFailed"), missing: getA(usageAt(randomGUID()), 403, "AuthorizationFailed")},
			"delegated": {in: getA(usageAt(h.dpUser), 200, ""), out: getA(usageAt(h.localSub), 403, "AuthorizationFailed"), missing: getA(usageAt(randomGUID()), 403, "AuthorizationFailed")}},
		"SubscriberUsageAggregates_List": stackOps(getA(adminUsage(h.provider), 200, ""), getA(adminUsage(h.dp), 200, ""), getA(adminUsage(h.provider), 403, "AuthorizationFailed"), getA(adminUsage(randomGUID()), 403, "AuthorizationFailed")),
	}
	// Delegated rows with nothing of their own are refusals.
	for name, row := range rows {
		if d, ok := row["delegated"]; ok && d.in == nil && d.out == nil && d.missing == nil {
			delete(row, "delegated")
			rows[name] = row
		}
	}
	return rows
}

// theirHook is whose endpoint each partner principal tries outside its
// scope: a reseller its own provider's.
var theirHook = map[string]string{"partner": "provider", "provider": "partner", "reseller": "provider"}

// hookRow is a webhook endpoint route's attempts: on the principal's own
// endpoint, another's, and none.
func hookRow(h *hostileWorld, method, suffix, body string, status int, code string) map[string]trio {
	m := map[string]trio{}
	for _, w := range []string{"operator", "partner", "provider", "reseller"} {
		t := trio{in: at(method, "/v1/webhooks/"+h.hooks[w]+suffix, body, status, ""), missing: at(method, "/v1/webhooks/ep_nothing"+suffix, body, 404, code)}
		if w != "operator" {
			t.out = at(method, "/v1/webhooks/"+h.hooks[theirHook[w]]+suffix, body, 404, code)
		}
		m[w] = t
	}
	return m
}

// theirBudget is whose budget each partner principal tries outside its
// scope: a reseller its provider's, a provider its reseller's.
func theirBudget(w string) string {
	if w == "provider" {
		return "reseller"
	}
	return theirHook[w]
}

// budgetRow is a budget route's attempts: on the principal's own budget,
// another's (a reseller's provider's, a provider's reseller's), and none.
func budgetRow(h *hostileWorld, method, body string, status int) map[string]trio {
	m := map[string]trio{}
	for _, w := range []string{"operator", "partner", "provider", "reseller"} {
		t := trio{in: at(method, "/v1/budgets/"+h.budgets[w], body, status, ""), missing: at(method, "/v1/budgets/bud_nothing", body, 404, "BudgetNotFound")}
		if w != "operator" {
			t.out = at(method, "/v1/budgets/"+h.budgets[theirBudget(w)], body, 404, "BudgetNotFound")
		}
		m[w] = t
	}
	return m
}

// writeRank orders routes so that creations come before reads, reads before
// deletions, and approval changes last.
func writeRank(route string) int {
	switch {
	case strings.HasSuffix(route, "_Delete") || strings.HasPrefix(route, "Directory_Delete"):
		return 3
	case strings.Contains(route, "Approve") || strings.Contains(route, "RevokeApproval") || route == "Directory_Import":
		return 4
	case strings.HasSuffix(route, "_CreateOrUpdate") || strings.HasSuffix(route, "_Create") || strings.HasPrefix(route, "Directory_Put") || route == "Exports_Start" || route == "PriceLists_Import" || route == "PriceBooks_Put":
		return 1
	case strings.HasPrefix(route, "Exports_"):
		return 2
	}
	return 2
}
