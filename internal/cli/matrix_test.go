package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/httpapi"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/tenancy"
)

// matrixRoles are the principals of the authorization matrix: each role, plus
// anonymous. Partner is Contoso (a direct CSP), reseller is Tailspin (under
// Fabrikam), tenant reads one local subscription, bridge is Contoso's stamp.
var matrixRoles = []string{"operator", "partner", "reseller", "stack-operator", "tenant", "bridge", "usage-writer", "anonymous"}

// probe is one request of the matrix with the status it must get.
type probe struct {
	scope  string // "in" or "out" of the principal's scope
	method string
	path   string
	body   string
	ctype  string
	want   int
}

// TestAuthorizationMatrix sends every HTTP route to every role, in and out
// of the role's scope, and checks the status. A role without a row for a
// route must be refused (403; 401 when anonymous). A route missing from the
// matrix fails the test, so a new route cannot ship unexamined.
func TestAuthorizationMatrix(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := context.Background()
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		e.createRegistration(W.ContosoDefault, "azurestack", "contoso-stamp", registration.PayAsYouUse, true)
		e.createRegistration(W.FabrikamDefault, "azurestack", "fabrikam-stamp", registration.PayAsYouUse, true)
		e.createRegistration(W.Proseware.Subscription, "azurestack", "tailspin-stamp", registration.PayAsYouUse, true)
		// Usage for Contoso's and Fabrikam's stamps this month, so that both
		// have an invoice to read (and to be refused).
		if _, err := e.app.Billing.ImportPriceList(ctx, op, "matrix", []byte(testPriceListUSD), time.Time{}); err != nil {
			t.Fatal(err)
		}
		hourNow := e.app.Clock.Now().Truncate(time.Hour)
		for i, name := range []string{"contoso-stamp", "fabrikam-stamp"} {
			sub := map[int]string{0: W.ContosoDefault, 1: W.FabrikamDefault}[i]
			r, err := e.app.Registrations.Get(ctx, op, regKey(sub, "azurestack", name))
			if err != nil {
				t.Fatal(err)
			}
			rec := bridge.Record{SubscriptionID: randomGUID(), TenantID: randomGUID(),
				MeterID: "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", Quantity: money.FromInt(10), UsageHour: hourNow.Add(-2 * time.Hour), ReportedHour: hourNow.Add(-time.Hour)}
			rec.SetID(r.CloudID)
			b := bridge.Batch{CloudID: r.CloudID, Records: []bridge.Record{rec}}
			if _, err := e.app.Ingestor.Ingest(ctx, auth.Principal{Role: auth.RoleBridge, RegistrationUID: r.UID, TokenID: "b"}, b); err != nil {
				t.Fatal(err)
			}
		}
		// The bridge credential belongs to a stamp of its own, whose
		// activation key the matrix never re-issues (a new key revokes it).
		e.createRegistration(W.NorthwindDefault, "azurestack", "bridge-stamp", registration.PayAsYouUse, true)
		reg, _ := e.app.Registrations.Get(ctx, op, regKey(W.NorthwindDefault, "azurestack", "bridge-stamp"))
		// The stack side: a provider subscription with two local tenants.
		provider := e.app.Tenancy.Provider()
		sop := auth.Principal{Role: auth.RoleStackOperator, TokenID: "t"}
		localSub, otherSub, localTenant := randomGUID(), randomGUID(), randomGUID()
		for _, s := range []string{localSub, otherSub} {
			if _, _, err := e.app.Tenancy.PutDirectoryTenant(ctx, sop, provider, tenancy.DirectoryTenant{Name: "t-" + s[:8], TenantID: localTenant}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.app.Tenancy.PutSubscription(ctx, sop, provider, s, tenancy.Subscription{TenantID: localTenant, Owner: "o", OfferID: "o"}); err != nil {
				t.Fatal(err)
			}
		}
		tok := map[string]string{"operator": e.operator, "partner": e.tokens["contoso"], "reseller": e.tokens["tailspin"], "anonymous": ""}
		tok["stack-operator"], _, _ = e.app.Auth.Create(ctx, auth.RoleStackOperator, "", "", "", 0)
		tok["tenant"], _, _ = e.app.Auth.Create(ctx, auth.RoleTenant, "", localSub, "", 0)
		tok["usage-writer"], _, _ = e.app.Auth.Create(ctx, auth.RoleUsageWriter, "", "", "", 0)
		var err error
		if tok["bridge"], err = e.app.Auth.CreateBridge(ctx, "test", "", reg.UID, "matrix"); err != nil {
			t.Fatal(err)
		}
		now := e.app.Clock.Now()
		period := now.Format("2006-01")
		hour := now.Truncate(time.Hour)

		const v17, vUsage, vAdmin = "?api-version=2017-06-01", "api-version=2015-06-01-preview", "?api-version=2015-11-01"
		regs := func(sub string) string {
			return "/subscriptions/" + sub + "/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations"
		}
		contoso, fabrikam, tailspin := regs(W.ContosoDefault)+"/contoso-stamp", regs(W.FabrikamDefault)+"/fabrikam-stamp", regs(W.Proseware.Subscription)+"/tailspin-stamp"
		regToken := func() string { return *registrationToken(randomGUID(), registration.PayAsYouUse, "") }
		regBody := func() string { return `{"location":"global","properties":{"registrationToken":"` + regToken() + `"}}` }
		csBody := func(tenant string) string { return `{"properties":{"tenantId":"` + tenant + `"}}` }
		usageQ := "reportedStartTime=" + hour.Add(-2*time.Hour).Format(time.RFC3339) + "&reportedEndTime=" + hour.Format(time.RFC3339) + "&aggregationGranularity=Hourly&" + vUsage
		event := fmt.Sprintf(`{"id":"m-%s","subscriptionId":"%s","meterId":"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5","quantity":"1","startTime":"%s","endTime":"%s"}`,
			randomGUID(), localSub, hour.Add(-time.Hour).Format(time.RFC3339), hour.Format(time.RFC3339))
		dirTenants := "/subscriptions/" + provider + "/resourceGroups/system.local/providers/Microsoft.Subscriptions.Admin/directoryTenants"
		userSubs := "/subscriptions/" + provider + "/providers/Microsoft.Subscriptions.Admin/subscriptions"
		foreignProvider := randomGUID()
		in := func(method, path, body string, want int) probe {
			return probe{"in", method, path, body, "application/json", want}
		}
		out := func(method, path, body string, want int) probe {
			return probe{"out", method, path, body, "application/json", want}
		}
		csv := func(p probe) probe { p.ctype = "text/csv"; return p }
		ndjson := func(p probe) probe { p.ctype = "application/x-ndjson"; return p }
		// Partners are Contoso; resellers are Tailspin. Out of scope for them
		// is Fabrikam's and Wingtip's. The operator has no out of scope, nor
		// has the stack operator on its own stamp; a stack-operator token
		// acting on another provider subscription (a delegated provider's)
		// may not write there.
		matrix := map[string]map[string][]probe{
			"Operations_List": {"operator": {in("GET", "/providers/Microsoft.AzureStack/operations"+v17, "", 200)}, "partner": {in("GET", "/providers/Microsoft.AzureStack/operations"+v17, "", 200)},
				"reseller": {in("GET", "/providers/Microsoft.AzureStack/operations"+v17, "", 200)}, "stack-operator": {in("GET", "/providers/Microsoft.AzureStack/operations"+v17, "", 200)},
				"tenant": {in("GET", "/providers/Microsoft.AzureStack/operations"+v17, "", 200)}, "bridge": {in("GET", "/providers/Microsoft.AzureStack/operations"+v17, "", 200)},
				"usage-writer": {in("GET", "/providers/Microsoft.AzureStack/operations"+v17, "", 200)}},
			"Registrations_ListBySubscription": {
				"operator": {in("GET", "/subscriptions/"+W.FabrikamDefault+"/providers/Microsoft.AzureStack/registrations"+v17, "", 200)},
				"partner":  {in("GET", "/subscriptions/"+W.ContosoDefault+"/providers/Microsoft.AzureStack/registrations"+v17, "", 200), out("GET", "/subscriptions/"+W.FabrikamDefault+"/providers/Microsoft.AzureStack/registrations"+v17, "", 403)},
				"reseller": {in("GET", "/subscriptions/"+W.Proseware.Subscription+"/providers/Microsoft.AzureStack/registrations"+v17, "", 200), out("GET", "/subscriptions/"+W.FabrikamDefault+"/providers/Microsoft.AzureStack/registrations"+v17, "", 403)}},
			"Registrations_List": {"operator": {in("GET", regs(W.FabrikamDefault)+v17, "", 200)},
				"partner":  {in("GET", regs(W.ContosoDefault)+v17, "", 200), out("GET", regs(W.FabrikamDefault)+v17, "", 403)},
				"reseller": {in("GET", regs(W.Proseware.Subscription)+v17, "", 200), out("GET", regs(W.FabrikamDefault)+v17, "", 403)}},
			"Registrations_Get": {"operator": {in("GET", fabrikam+v17, "", 200)},
				"partner":  {in("GET", contoso+v17, "", 200), out("GET", fabrikam+v17, "", 404)},
				"reseller": {in("GET", tailspin+v17, "", 200), out("GET", fabrikam+v17, "", 404)}},
			"Registrations_CreateOrUpdate": {"operator": {in("PUT", regs(W.NorthwindDefault)+"/op-new"+v17, regBody(), 201)},
				"partner":  {in("PUT", regs(W.ContosoDefault)+"/contoso-new"+v17, regBody(), 201), out("PUT", regs(W.FabrikamDefault)+"/grab"+v17, regBody(), 403)},
				"reseller": {in("PUT", regs(W.Proseware.Subscription)+"/tailspin-new"+v17, regBody(), 201), out("PUT", regs(W.Relecloud.Subscription)+"/grab"+v17, regBody(), 403)}},
			"Registrations_Update": {"operator": {in("PATCH", fabrikam+v17, `{"tags":{"a":"1"}}`, 200)},
				"partner":  {in("PATCH", contoso+v17, `{"tags":{"a":"1"}}`, 200), out("PATCH", fabrikam+v17, `{"tags":{"a":"1"}}`, 404)},
				"reseller": {in("PATCH", tailspin+v17, `{"tags":{"a":"1"}}`, 200), out("PATCH", fabrikam+v17, `{"tags":{"a":"1"}}`, 404)}},
			"Registrations_Delete": {"operator": {in("DELETE", regs(W.NorthwindDefault)+"/op-new"+v17, "", 200)},
				"partner":  {in("DELETE", regs(W.ContosoDefault)+"/contoso-new"+v17, "", 200), out("DELETE", fabrikam+v17, "", 404)},
				"reseller": {in("DELETE", regs(W.Proseware.Subscription)+"/tailspin-new"+v17, "", 200), out("DELETE", fabrikam+v17, "", 404)}},
			"Registrations_GetActivationKey": {"operator": {in("POST", fabrikam+"/getactivationkey"+v17, "", 200)},
				"partner":  {in("POST", contoso+"/getactivationkey"+v17, "", 200), out("POST", fabrikam+"/getactivationkey"+v17, "", 404)},
				"reseller": {in("POST", tailspin+"/getactivationkey"+v17, "", 200), out("POST", fabrikam+"/getactivationkey"+v17, "", 404)}},
			"Registrations_EnableRemoteManagement": {"operator": {in("POST", fabrikam+"/enableRemoteManagement"+v17, "", 200)},
				"partner":  {in("POST", contoso+"/enableRemoteManagement"+v17, "", 200), out("POST", fabrikam+"/enableRemoteManagement"+v17, "", 404)},
				"reseller": {in("POST", tailspin+"/enableRemoteManagement"+v17, "", 200), out("POST", fabrikam+"/enableRemoteManagement"+v17, "", 404)}},
			"CustomerSubscriptions_List": {"operator": {in("GET", fabrikam+"/customerSubscriptions"+v17, "", 200)},
				"partner":  {in("GET", contoso+"/customerSubscriptions"+v17, "", 200), out("GET", fabrikam+"/customerSubscriptions"+v17, "", 404)},
				"reseller": {in("GET", tailspin+"/customerSubscriptions"+v17, "", 200), out("GET", fabrikam+"/customerSubscriptions"+v17, "", 404)}},
			"CustomerSubscriptions_Create": {"operator": {in("PUT", fabrikam+"/customerSubscriptions/"+W.Relecloud.Subscription+v17, csBody(W.Relecloud.Tenant), 200)},
				"partner":  {in("PUT", contoso+"/customerSubscriptions/"+W.Adatum.Subscription+v17, csBody(W.Adatum.Tenant), 200), out("PUT", fabrikam+"/customerSubscriptions/"+W.Proseware.Subscription+v17, csBody(W.Proseware.Tenant), 404)},
				"reseller": {in("PUT", tailspin+"/customerSubscriptions/"+W.Proseware.Subscription+v17, csBody(W.Proseware.Tenant), 200), out("PUT", tailspin+"/customerSubscriptions/"+W.Relecloud.Subscription+v17, csBody(W.Relecloud.Tenant), 403)}},
			"CustomerSubscriptions_Get": {"operator": {in("GET", fabrikam+"/customerSubscriptions/"+W.Relecloud.Subscription+v17, "", 200)},
				"partner":  {in("GET", contoso+"/customerSubscriptions/"+W.Adatum.Subscription+v17, "", 200), out("GET", fabrikam+"/customerSubscriptions/"+W.Relecloud.Subscription+v17, "", 404)},
				"reseller": {in("GET", tailspin+"/customerSubscriptions/"+W.Proseware.Subscription+v17, "", 200), out("GET", fabrikam+"/customerSubscriptions/"+W.Relecloud.Subscription+v17, "", 404)}},
			"CustomerSubscriptions_Delete": {"operator": {in("DELETE", fabrikam+"/customerSubscriptions/"+W.Relecloud.Subscription+v17, "", 200)},
				"partner":  {in("DELETE", contoso+"/customerSubscriptions/"+W.Adatum.Subscription+v17, "", 200), out("DELETE", fabrikam+"/customerSubscriptions/"+W.Relecloud.Subscription+v17, "", 404)},
				"reseller": {in("DELETE", tailspin+"/customerSubscriptions/"+W.Proseware.Subscription+v17, "", 200), out("DELETE", fabrikam+"/customerSubscriptions/"+W.Relecloud.Subscription+v17, "", 404)}},

			"Directory_ListPartners":          {"operator": {in("GET", "/v1/partners", "", 200)}, "partner": {in("GET", "/v1/partners", "", 200)}, "reseller": {in("GET", "/v1/partners", "", 200)}},
			"Directory_GetPartner":            {"operator": {in("GET", "/v1/partners/fabrikam", "", 200)}, "partner": {in("GET", "/v1/partners/contoso", "", 200), out("GET", "/v1/partners/fabrikam", "", 404)}, "reseller": {in("GET", "/v1/partners/tailspin", "", 200), out("GET", "/v1/partners/wingtip", "", 404)}},
			"Directory_PutPartner":            {"operator": {in("PUT", "/v1/partners/matrix", `{"name":"Matrix","type":"DirectCSP"}`, 201)}},
			"Directory_DeletePartner":         {"operator": {in("DELETE", "/v1/partners/matrix", "", 200)}},
			"Directory_ListCustomers":         {"operator": {in("GET", "/v1/customers", "", 200)}, "partner": {in("GET", "/v1/customers", "", 200)}, "reseller": {in("GET", "/v1/customers", "", 200)}},
			"Directory_GetCustomer":           {"operator": {in("GET", "/v1/customers/"+W.Relecloud.Tenant, "", 200)}, "partner": {in("GET", "/v1/customers/"+W.Adatum.Tenant, "", 200), out("GET", "/v1/customers/"+W.Relecloud.Tenant, "", 404)}, "reseller": {in("GET", "/v1/customers/"+W.Proseware.Tenant, "", 200), out("GET", "/v1/customers/"+W.Relecloud.Tenant, "", 404)}},
			"Directory_PutCustomer":           {"operator": {in("PUT", "/v1/customers/aaaaaaaa-9999-4000-8000-000000000001", `{"name":"M1","partner":"northwind"}`, 201)}, "partner": {in("PUT", "/v1/customers/aaaaaaaa-9999-4000-8000-000000000002", `{"name":"M2","partner":"contoso"}`, 201), out("PUT", "/v1/customers/aaaaaaaa-9999-4000-8000-000000000003", `{"name":"M3","partner":"northwind"}`, 403)}, "reseller": {in("PUT", "/v1/customers/aaaaaaaa-9999-4000-8000-000000000004", `{"name":"M4","partner":"tailspin"}`, 201), out("PUT", "/v1/customers/aaaaaaaa-9999-4000-8000-000000000005", `{"name":"M5","partner":"wingtip"}`, 403)}},
			"Directory_DeleteCustomer":        {"operator": {in("DELETE", "/v1/customers/aaaaaaaa-9999-4000-8000-000000000001", "", 200)}, "partner": {in("DELETE", "/v1/customers/aaaaaaaa-9999-4000-8000-000000000002", "", 200), out("DELETE", "/v1/customers/"+W.Woodgrove.Tenant, "", 404)}, "reseller": {in("DELETE", "/v1/customers/aaaaaaaa-9999-4000-8000-000000000004", "", 200), out("DELETE", "/v1/customers/"+W.Relecloud.Tenant, "", 404)}},
			"Directory_ListSubscriptions":     {"operator": {in("GET", "/v1/subscriptions", "", 200)}, "partner": {in("GET", "/v1/subscriptions", "", 200)}, "reseller": {in("GET", "/v1/subscriptions", "", 200)}},
			"Directory_GetSubscription":       {"operator": {in("GET", "/v1/subscriptions/"+W.Relecloud.Subscription, "", 200)}, "partner": {in("GET", "/v1/subscriptions/"+W.Adatum.Subscription, "", 200), out("GET", "/v1/subscriptions/"+W.Relecloud.Subscription, "", 404)}, "reseller": {in("GET", "/v1/subscriptions/"+W.Proseware.Subscription, "", 200), out("GET", "/v1/subscriptions/"+W.Relecloud.Subscription, "", 404)}},
			"Directory_PutSubscription":       {"operator": {in("PUT", "/v1/subscriptions/bbbbbbbb-9999-4000-8000-000000000001", `{"offer":"CSP","partner":"northwind","customerTenantId":"`+W.Woodgrove.Tenant+`"}`, 201)}, "partner": {in("PUT", "/v1/subscriptions/bbbbbbbb-9999-4000-8000-000000000002", `{"offer":"CSP","partner":"contoso","customerTenantId":"`+W.Adatum.Tenant+`"}`, 201), out("PUT", "/v1/subscriptions/bbbbbbbb-9999-4000-8000-000000000003", `{"offer":"CSP","partner":"northwind","customerTenantId":"`+W.Woodgrove.Tenant+`"}`, 403)}, "reseller": {in("PUT", "/v1/subscriptions/bbbbbbbb-9999-4000-8000-000000000004", `{"offer":"CSP","partner":"fabrikam","customerTenantId":"`+W.Proseware.Tenant+`"}`, 201), out("PUT", "/v1/subscriptions/bbbbbbbb-9999-4000-8000-000000000005", `{"offer":"CSP","partner":"fabrikam","customerTenantId":"`+W.Relecloud.Tenant+`"}`, 403)}},
			"Directory_DeleteSubscription":    {"operator": {in("DELETE", "/v1/subscriptions/bbbbbbbb-9999-4000-8000-000000000001", "", 200)}, "partner": {in("DELETE", "/v1/subscriptions/bbbbbbbb-9999-4000-8000-000000000002", "", 200), out("DELETE", "/v1/subscriptions/"+W.Woodgrove.Subscription, "", 404)}, "reseller": {in("DELETE", "/v1/subscriptions/bbbbbbbb-9999-4000-8000-000000000004", "", 200), out("DELETE", "/v1/subscriptions/"+W.Relecloud.Subscription, "", 404)}},
			"Directory_History":               {"operator": {in("GET", "/v1/directory/history/partners/contoso", "", 200)}},
			"Directory_Import":                {"operator": {in("POST", "/v1/directory/import", string(storetest.WorldJSON()), 200)}},
			"Directory_Resolve":               {"operator": {in("GET", "/v1/directory/resolve/subscriptions/"+W.Adatum.Subscription, "", 200)}},
			"Bridge_PostUsage":                {"bridge": {in("POST", "/v1/bridge/usage", `{"cloudId":"`+reg.CloudID+`","records":[]}`, 200), out("POST", "/v1/bridge/usage", `{"cloudId":"`+randomGUID()+`","records":[]}`, 403)}},
			"Usage_Forwarded":                 {"operator": {in("GET", "/v1/usage/forwarded?subscriptionId="+W.Relecloud.Subscription, "", 200)}, "partner": {in("GET", "/v1/usage/forwarded?subscriptionId="+W.Adatum.Subscription, "", 200), out("GET", "/v1/usage/forwarded?subscriptionId="+W.Relecloud.Subscription, "", 404)}, "reseller": {in("GET", "/v1/usage/forwarded?subscriptionId="+W.Proseware.Subscription, "", 200), out("GET", "/v1/usage/forwarded?subscriptionId="+W.Relecloud.Subscription, "", 404)}},
			"MeterMap_Get":                    {"operator": {in("GET", "/v1/meter-map", "", 200)}, "partner": {in("GET", "/v1/meter-map", "", 200)}, "reseller": {in("GET", "/v1/meter-map", "", 200)}},
			"MeterMap_Publish":                {"operator": {in("PUT", "/v1/meter-map", `{"effectiveFrom":"`+now.AddDate(1, 0, 0).Format(time.RFC3339)+`","meters":[{"localMeterId":"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5","billingMeterId":"9c23489b-c01c-5893-b898-412bd252b0db","name":"1 Core","category":"Azure Stack Hub","subCategory":"Base VM","unit":"1 Hour","factor":1}]}`, 201)}},
			"PriceLists_Import":               {"operator": {csv(in("POST", "/v1/billing/price-lists", testPriceListEUR, 201))}},
			"PriceLists_List":                 {"operator": {in("GET", "/v1/billing/price-lists", "", 200)}, "partner": {in("GET", "/v1/billing/price-lists", "", 200)}, "reseller": {in("GET", "/v1/billing/price-lists", "", 403)}},
			"PriceLists_Get":                  {"operator": {in("GET", "/v1/billing/price-lists/1", "", 200)}, "partner": {in("GET", "/v1/billing/price-lists/1", "", 200)}, "reseller": {in("GET", "/v1/billing/price-lists/1", "", 403)}},
			"Agreements_List":                 {"operator": {in("GET", "/v1/billing/agreements", "", 200)}, "partner": {in("GET", "/v1/billing/agreements", "", 200)}, "reseller": {in("GET", "/v1/billing/agreements", "", 200)}},
			"Agreements_Put":                  {"operator": {in("PUT", "/v1/billing/agreements/northwind", `{"currency":"USD"}`, 200)}},
			"Invoices_List":                   {"operator": {in("GET", "/v1/billing/invoices?period="+period, "", 200)}, "partner": {in("GET", "/v1/billing/invoices?period="+period, "", 200)}, "reseller": {in("GET", "/v1/billing/invoices?period="+period, "", 200)}},
			"Invoices_Get":                    {"operator": {in("GET", "/v1/billing/invoices/SB-"+strings.ReplaceAll(period, "-", "")+"-fabrikam", "", 200)}, "partner": {in("GET", "/v1/billing/invoices/SB-"+strings.ReplaceAll(period, "-", "")+"-contoso", "", 200), out("GET", "/v1/billing/invoices/SB-"+strings.ReplaceAll(period, "-", "")+"-fabrikam", "", 404)}, "reseller": {out("GET", "/v1/billing/invoices/SB-"+strings.ReplaceAll(period, "-", "")+"-fabrikam", "", 404)}},
			"CreditNotes_Create":              {"operator": {in("POST", "/v1/billing/invoices/SB-"+strings.ReplaceAll(period, "-", "")+"-fabrikam/credit-notes", `{"reason":"x","lines":[{"line":1,"amount":1}]}`, 400)}},
			"Periods_Get":                     {"operator": {in("GET", "/v1/billing/periods/"+period, "", 200)}},
			"Periods_Finalize":                {"operator": {in("POST", "/v1/billing/periods/"+period+"/finalize", "", 400)}},
			"Reconciliation_Get":              {"operator": {in("GET", "/v1/billing/reconciliation?partner=fabrikam&period="+period, "", 200)}, "partner": {in("GET", "/v1/billing/reconciliation?partner=contoso&period="+period, "", 200), out("GET", "/v1/billing/reconciliation?partner=fabrikam&period="+period, "", 404)}, "reseller": {out("GET", "/v1/billing/reconciliation?partner=fabrikam&period="+period, "", 403)}},
			"Exports_Start":                   {"operator": {in("POST", "/v1/billing/exports", `{"partner":"fabrikam","period":"`+period+`"}`, 202)}, "partner": {in("POST", "/v1/billing/exports", `{"partner":"contoso","period":"`+period+`"}`, 202), out("POST", "/v1/billing/exports", `{"partner":"fabrikam","period":"`+period+`"}`, 404)}, "reseller": {out("POST", "/v1/billing/exports", `{"partner":"fabrikam","period":"`+period+`"}`, 403)}},
			"Exports_Get":                     {"operator": {in("GET", "/v1/billing/exports/{export}", "", 200)}, "partner": {out("GET", "/v1/billing/exports/{export}", "", 404)}, "reseller": {out("GET", "/v1/billing/exports/{export}", "", 404)}},
			"Exports_File":                    {"operator": {in("GET", "/v1/billing/exports/{export}/file", "", 200)}, "partner": {out("GET", "/v1/billing/exports/{export}/file", "", 404)}, "reseller": {out("GET", "/v1/billing/exports/{export}/file", "", 404)}},
			"PriceBooks_List":                 {"operator": {in("GET", "/v1/billing/price-books/fabrikam", "", 200)}, "partner": {in("GET", "/v1/billing/price-books/contoso", "", 200), out("GET", "/v1/billing/price-books/fabrikam", "", 404)}, "reseller": {in("GET", "/v1/billing/price-books/tailspin", "", 200), out("GET", "/v1/billing/price-books/wingtip", "", 404)}},
			"PriceBooks_Put":                  {"operator": {in("PUT", "/v1/billing/price-books/fabrikam/default", `{"markupPercent":5}`, 200)}, "partner": {in("PUT", "/v1/billing/price-books/contoso/default", `{"markupPercent":5}`, 200), out("PUT", "/v1/billing/price-books/fabrikam/default", `{"markupPercent":5}`, 404)}, "reseller": {in("PUT", "/v1/billing/price-books/tailspin/default", `{"markupPercent":5}`, 200), out("PUT", "/v1/billing/price-books/wingtip/default", `{"markupPercent":5}`, 404)}},
			"PriceBooks_Delete":               {"operator": {in("DELETE", "/v1/billing/price-books/fabrikam/default", "", 204)}, "partner": {in("DELETE", "/v1/billing/price-books/contoso/default", "", 204), out("DELETE", "/v1/billing/price-books/fabrikam/default", "", 404)}, "reseller": {in("DELETE", "/v1/billing/price-books/tailspin/default", "", 204), out("DELETE", "/v1/billing/price-books/wingtip/default", "", 404)}},
			"Statements_List":                 {"operator": {in("GET", "/v1/billing/statements/fabrikam?period="+period, "", 200)}, "partner": {in("GET", "/v1/billing/statements/contoso?period="+period, "", 200), out("GET", "/v1/billing/statements/fabrikam?period="+period, "", 404)}, "reseller": {in("GET", "/v1/billing/statements/tailspin?period="+period, "", 200), out("GET", "/v1/billing/statements/wingtip?period="+period, "", 404)}},
			"Quarantine_List":                 {"operator": {in("GET", "/v1/quarantine", "", 200)}, "stack-operator": {in("GET", "/v1/quarantine?stage=seal", "", 200)}},
			"Quarantine_Get":                  {"operator": {in("GET", "/v1/quarantine/999", "", 404)}, "stack-operator": {in("GET", "/v1/quarantine/999", "", 404)}},
			"Quarantine_Release":              {"operator": {in("POST", "/v1/quarantine/999/release", "", 404)}, "stack-operator": {in("POST", "/v1/quarantine/999/release", "", 404)}},
			"Quarantine_Drop":                 {"operator": {in("POST", "/v1/quarantine/999/drop", "", 404)}, "stack-operator": {in("POST", "/v1/quarantine/999/drop", "", 404)}},
			"Audit_List":                      {"operator": {in("GET", "/v1/audit", "", 200)}, "partner": {in("GET", "/v1/audit", "", 200)}, "reseller": {in("GET", "/v1/audit", "", 200)}},
			"Registrations_ListAll":           {"operator": {in("GET", "/v1/registrations", "", 200)}, "partner": {in("GET", "/v1/registrations?subscriptionId="+W.ContosoDefault, "", 200), out("GET", "/v1/registrations", "", 403)}, "reseller": {in("GET", "/v1/registrations?subscriptionId="+W.Proseware.Subscription, "", 200), out("GET", "/v1/registrations?subscriptionId="+W.FabrikamDefault, "", 403)}},
			"Registrations_Approve":           {"operator": {in("POST", "/v1/registrations/approve", `{"subscriptionId":"`+W.FabrikamDefault+`","resourceGroup":"azurestack","name":"fabrikam-stamp"}`, 200)}},
			"Registrations_RevokeApproval":    {"operator": {in("POST", "/v1/registrations/revoke-approval", `{"subscriptionId":"`+W.ContosoDefault+`","resourceGroup":"azurestack","name":"contoso-stamp"}`, 200)}},
			"Registrations_History":           {"operator": {in("GET", "/v1/registrations/history?subscriptionId="+W.FabrikamDefault+"&resourceGroup=azurestack&name=fabrikam-stamp", "", 200)}, "partner": {in("GET", "/v1/registrations/history?subscriptionId="+W.ContosoDefault+"&resourceGroup=azurestack&name=contoso-stamp", "", 200), out("GET", "/v1/registrations/history?subscriptionId="+W.FabrikamDefault+"&resourceGroup=azurestack&name=fabrikam-stamp", "", 404)}, "reseller": {in("GET", "/v1/registrations/history?subscriptionId="+W.Proseware.Subscription+"&resourceGroup=azurestack&name=tailspin-stamp", "", 200), out("GET", "/v1/registrations/history?subscriptionId="+W.FabrikamDefault+"&resourceGroup=azurestack&name=fabrikam-stamp", "", 404)}},
			"DirectoryTenants_List":           {"operator": {in("GET", dirTenants+vAdmin, "", 200)}, "stack-operator": {in("GET", dirTenants+vAdmin, "", 200)}},
			"DirectoryTenants_Get":            {"operator": {in("GET", dirTenants+"/t-"+localSub[:8]+vAdmin, "", 200)}, "stack-operator": {in("GET", dirTenants+"/t-"+localSub[:8]+vAdmin, "", 200)}},
			"DirectoryTenants_CreateOrUpdate": {"operator": {in("PUT", dirTenants+"/matrix-op"+vAdmin, `{"location":"local","properties":{"tenantId":"`+randomGUID()+`"}}`, 201)}, "stack-operator": {in("PUT", dirTenants+"/matrix-so"+vAdmin, `{"location":"local","properties":{"tenantId":"`+randomGUID()+`"}}`, 201), out("PUT", "/subscriptions/"+foreignProvider+"/resourceGroups/system.local/providers/Microsoft.Subscriptions.Admin/directoryTenants/x"+vAdmin, `{"location":"local","properties":{"tenantId":"`+randomGUID()+`"}}`, 403)}},
			"DirectoryTenants_Delete":         {"operator": {in("DELETE", dirTenants+"/matrix-op"+vAdmin, "", 200)}, "stack-operator": {in("DELETE", dirTenants+"/matrix-so"+vAdmin, "", 200)}},
			"Subscriptions_List":              {"operator": {in("GET", userSubs+vAdmin, "", 200)}, "stack-operator": {in("GET", userSubs+vAdmin, "", 200)}},
			"Subscriptions_Get":               {"operator": {in("GET", userSubs+"/"+localSub+vAdmin, "", 200)}, "stack-operator": {in("GET", userSubs+"/"+localSub+vAdmin, "", 200)}},
			"Subscriptions_CreateOrUpdate":    {"operator": {in("PUT", userSubs+"/cccccccc-9999-4000-8000-000000000001"+vAdmin, `{"properties":{"tenantId":"`+localTenant+`","owner":"o","offerId":"o"}}`, 201)}, "stack-operator": {in("PUT", userSubs+"/cccccccc-9999-4000-8000-000000000002"+vAdmin, `{"properties":{"tenantId":"`+localTenant+`","owner":"o","offerId":"o"}}`, 201)}},
			"Subscriptions_Delete":            {"operator": {in("DELETE", userSubs+"/cccccccc-9999-4000-8000-000000000001"+vAdmin, "", 200)}, "stack-operator": {in("DELETE", userSubs+"/cccccccc-9999-4000-8000-000000000002"+vAdmin, "", 200)}},
			"Subscriptions_History":           {"operator": {in("GET", "/v1/stack/subscriptions/"+localSub+"/history", "", 200)}, "stack-operator": {in("GET", "/v1/stack/subscriptions/"+localSub+"/history", "", 200)}},
			"Stack_Info":                      {"operator": {in("GET", "/v1/stack/info", "", 200)}, "stack-operator": {in("GET", "/v1/stack/info", "", 200)}},
			"Stack_BridgeStatus":              {"operator": {in("GET", "/v1/stack/bridge", "", 200)}, "stack-operator": {in("GET", "/v1/stack/bridge", "", 200)}},
			"Meters_List": {"operator": {in("GET", "/v1/meters", "", 200)}, "partner": {in("GET", "/v1/meters", "", 200)}, "reseller": {in("GET", "/v1/meters", "", 200)}, "stack-operator": {in("GET", "/v1/meters", "", 200)},
				"tenant": {in("GET", "/v1/meters", "", 200)}, "bridge": {in("GET", "/v1/meters", "", 200)}, "usage-writer": {in("GET", "/v1/meters", "", 200)}},
			"Meters_Put":       {"operator": {in("PUT", "/v1/meters/dddddddd-9999-4000-8000-000000000001", `{"name":"Matrix","unit":"1 Hour"}`, 200)}, "stack-operator": {in("PUT", "/v1/meters/dddddddd-9999-4000-8000-000000000002", `{"name":"Matrix","unit":"1 Hour"}`, 200)}},
			"Usage_PostEvents": {"operator": {ndjson(in("POST", "/v1/usage/events", event, 200))}, "stack-operator": {ndjson(in("POST", "/v1/usage/events", event, 200))}, "usage-writer": {ndjson(in("POST", "/v1/usage/events", event, 200))}},
			"UsageAggregates_List": {"operator": {in("GET", "/subscriptions/"+otherSub+"/providers/Microsoft.Commerce/UsageAggregates?"+usageQ, "", 200)}, "stack-operator": {in("GET", "/subscriptions/"+otherSub+"/providers/Microsoft.Commerce/UsageAggregates?"+usageQ, "", 200)},
				"tenant": {in("GET", "/subscriptions/"+localSub+"/providers/Microsoft.Commerce/UsageAggregates?"+usageQ, "", 200), out("GET", "/subscriptions/"+otherSub+"/providers/Microsoft.Commerce/UsageAggregates?"+usageQ, "", 403)}},
			"SubscriberUsageAggregates_List": {"operator": {in("GET", "/subscriptions/"+provider+"/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?"+usageQ, "", 200)}, "stack-operator": {in("GET", "/subscriptions/"+provider+"/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?"+usageQ, "", 200)}},
			"WhoAmI": {"operator": {in("GET", "/v1/whoami", "", 200)}, "partner": {in("GET", "/v1/whoami", "", 200)}, "reseller": {in("GET", "/v1/whoami", "", 200)}, "stack-operator": {in("GET", "/v1/whoami", "", 200)},
				"tenant": {in("GET", "/v1/whoami", "", 200)}, "bridge": {in("GET", "/v1/whoami", "", 200)}, "usage-writer": {in("GET", "/v1/whoami", "", 200)}},
		}
		// Routes handled before routing, with their own rules.
		special := map[string]map[string][]probe{
			"healthz":         {"*": {in("GET", "/healthz", "", 200)}},
			"Activation_Keys": {"*": {in("GET", "/v1/activation/keys", "", 200)}},
			"metrics":         {"operator": {in("GET", "/metrics", "", 200)}, "stack-operator": {in("GET", "/metrics", "", 200)}},
		}

		names := httpapi.RouteNames()
		var missing []string
		for _, n := range names {
			if _, ok := matrix[n]; !ok {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			t.Fatalf("routes missing from the authorization matrix (add a row for each role): %v", missing)
		}
		if len(matrix) != len(names) {
			t.Fatalf("the matrix has %d rows for %d routes: remove rows of routes that no longer exist", len(matrix), len(names))
		}
		// Each route is probed by every role, in route order so that writes
		// (create, then delete) meet the state they expect.
		var export string
		requests := 0
		run := func(route, role string, p probe, want int) {
			t.Helper()
			p.path = strings.ReplaceAll(p.path, "{export}", export)
			resp, body := e.raw(p.method, p.path, tok[role], p.ctype, strings.NewReader(p.body))
			requests++
			if resp.StatusCode != want {
				t.Errorf("%s as %s (%s of scope) %s %s: %d %s, want %d", route, role, p.scope, p.method, p.path, resp.StatusCode, errCode(body), want)
			}
			if route == "Exports_Start" && role == "operator" {
				var job struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal([]byte(body), &job)
				export = job.ID
				// Let the export finish before its file is read.
				if err := e.app.Billing.RunExports(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		order := append([]string{}, names...)
		sort.SliceStable(order, func(i, j int) bool { return writeRank(order[i]) < writeRank(order[j]) })
		for _, route := range order {
			rows := matrix[route]
			var any probe
			for _, ps := range rows {
				any = ps[0]
				break
			}
			for _, role := range matrixRoles {
				ps, allowed := rows[role]
				switch {
				case role == "anonymous":
					run(route, role, any, 401)
				case !allowed:
					run(route, role, any, 403)
				default:
					for _, p := range ps {
						run(route, role, p, p.want)
					}
				}
			}
		}
		for route, rows := range special {
			for _, role := range matrixRoles {
				ps, ok := rows[role]
				if !ok {
					ps, ok = rows["*"]
				}
				switch {
				case ok:
					run(route, role, ps[0], ps[0].want)
				case role == "anonymous":
					run(route, role, rows["operator"][0], 401)
				default:
					run(route, role, rows["operator"][0], 403)
				}
			}
		}
		t.Logf("authorization matrix: %d routes (+%d outside routing) × %d roles, %d requests", len(names), len(special), len(matrixRoles), requests)
	})
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
