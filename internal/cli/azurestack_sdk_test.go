package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/services/azurestack/mgmt/2017-06-01/azurestack"
	"github.com/Azure/go-autorest/autorest/to"

	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

var W = storetest.World

// TestAzureStackSDKRegistrations drives every registration operation through
// the real Azure SDK for Go, on both engines.
func TestAzureStackSDKRegistrations(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		c := e.regClient(W.ContosoDefault, e.tokens["contoso"])
		cloud := randomGUID()
		loc := "global"
		param := azurestack.RegistrationParameter{Location: &loc,
			RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: registrationToken(cloud, registration.Development, "")}}

		created, err := c.CreateOrUpdate(ctx, "azurestack", "stamp-a", param)
		if err != nil {
			t.Fatal(err)
		}
		if created.StatusCode != http.StatusCreated {
			t.Fatalf("first PUT status %d, want 201", created.StatusCode)
		}
		if to.String(created.Name) != "stamp-a" || to.String(created.Type) != "Microsoft.AzureStack/registrations" || to.String(created.Location) != "global" ||
			to.String(created.CloudID) != cloud || to.String(created.BillingModel) != "Development" || to.String(created.Etag) == "" ||
			to.String(created.ID) != "/subscriptions/"+W.ContosoDefault+"/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations/stamp-a" {
			t.Fatalf("created registration: %+v %+v", created, created.RegistrationProperties)
		}
		again, err := c.CreateOrUpdate(ctx, "azurestack", "stamp-a", param)
		if err != nil || again.StatusCode != http.StatusOK || to.String(again.Etag) == to.String(created.Etag) {
			t.Fatalf("second PUT: %v status %d etag %s", err, again.StatusCode, to.String(again.Etag))
		}
		got, err := c.Get(ctx, "AzureStack", "STAMP-A") // ARM names are case-insensitive
		if err != nil || to.String(got.CloudID) != cloud || to.String(got.Name) != "stamp-a" {
			t.Fatalf("Get: %v %+v", err, got)
		}
		// Update (PATCH) changes the billing model through a new token.
		upd, err := c.Update(ctx, "azurestack", "stamp-a", azurestack.RegistrationParameter{
			RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: registrationToken(cloud, registration.PayAsYouUse, "")}})
		if err != nil || to.String(upd.BillingModel) != "PayAsYouUse" {
			t.Fatalf("Update: %v %+v", err, upd.RegistrationProperties)
		}
		// A token from another cloud cannot take over the registration.
		_, err = c.CreateOrUpdate(ctx, "azurestack", "stamp-a", azurestack.RegistrationParameter{Location: &loc,
			RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: registrationToken(randomGUID(), registration.PayAsYouUse, "")}})
		wantARMError(t, err, 400, "RegistrationCloudIdMismatch")

		// List by resource group pages through nextLink (page size 2).
		for _, n := range []string{"stamp-b", "stamp-c"} {
			if _, err := c.CreateOrUpdate(ctx, "azurestack", n, azurestack.RegistrationParameter{Location: &loc,
				RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: registrationToken(randomGUID(), registration.Development, "")}}); err != nil {
				t.Fatal(err)
			}
		}
		// Another stamp in another resource group. (The same cloud there
		// would move stamp-a: a cloud has one live registration.)
		if _, err := c.CreateOrUpdate(ctx, "other-rg", "stamp-d", azurestack.RegistrationParameter{Location: &loc,
			RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: registrationToken(randomGUID(), registration.Development, "")}}); err != nil {
			t.Fatal(err)
		}
		page, err := c.List(ctx, "azurestack")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		pages := 0
		for page.NotDone() {
			pages++
			for _, r := range page.Values() {
				names = append(names, to.String(r.Name))
			}
			if err := page.NextWithContext(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if strings.Join(names, ",") != "stamp-a,stamp-b,stamp-c" || pages != 2 {
			t.Fatalf("List by resource group: %v in %d pages", names, pages)
		}
		// ListBySubscription is spec-only (absent from the v68 client): follow
		// nextLink by hand as a client would.
		var all []string
		next := "/subscriptions/" + W.ContosoDefault + "/providers/Microsoft.AzureStack/registrations?api-version=2022-06-01"
		for next != "" {
			resp, body := e.raw("GET", next, e.tokens["contoso"], "", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("ListBySubscription: %d %s", resp.StatusCode, body)
			}
			var pg struct {
				Value []struct {
					Name string `json:"name"`
				}
				NextLink string `json:"nextLink"`
			}
			if err := json.Unmarshal([]byte(body), &pg); err != nil {
				t.Fatal(err)
			}
			for _, v := range pg.Value {
				all = append(all, v.Name)
			}
			if pg.NextLink != "" && !strings.HasPrefix(pg.NextLink, e.url+"/") {
				t.Fatalf("nextLink %q is not absolute on %s", pg.NextLink, e.url)
			}
			next = strings.TrimPrefix(pg.NextLink, e.url)
		}
		if strings.Join(all, ",") != "stamp-a,stamp-b,stamp-c,stamp-d" {
			t.Fatalf("ListBySubscription = %v", all)
		}
		// Filter by cloudId finds the registration of a given cloud (one:
		// a cloud has one live registration).
		resp, body := e.raw("GET", "/v1/registrations?cloudId="+cloud, e.operator, "", nil)
		if resp.StatusCode != 200 || strings.Count(body, `"name":"stamp-`) != 1 || !strings.Contains(body, "stamp-a") {
			t.Fatalf("cloudId filter: %d %s", resp.StatusCode, body)
		}
		// EnableRemoteManagement (spec-only), with and without api-version.
		for _, q := range []string{"?api-version=2017-06-01", ""} {
			resp, body = e.raw("POST", "/subscriptions/"+W.ContosoDefault+"/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations/stamp-a/enableRemoteManagement"+q, e.tokens["contoso"], "application/json", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("enableRemoteManagement%s: %d %s", q, resp.StatusCode, body)
			}
		}
		if got, _ := c.Get(ctx, "azurestack", "stamp-a"); !strings.Contains(mustJSON(got), `"remoteManagementEnabled":true`) {
			// The v68 model drops unknown properties, so read it raw.
			_, raw := e.raw("GET", "/subscriptions/"+W.ContosoDefault+"/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations/stamp-a?api-version=2017-06-01", e.operator, "", nil)
			if !strings.Contains(raw, `"remoteManagementEnabled":true`) {
				t.Fatalf("remote management consent not recorded: %s", raw)
			}
		}
		// Delete: 200 when it existed, 204 when it did not; both succeed in the SDK.
		del, err := c.Delete(ctx, "azurestack", "stamp-b")
		if err != nil || del.StatusCode != 200 {
			t.Fatalf("Delete: %v %d", err, del.StatusCode)
		}
		del, err = c.Delete(ctx, "azurestack", "stamp-b")
		if err != nil || del.StatusCode != 204 {
			t.Fatalf("second Delete: %v %d", err, del.StatusCode)
		}
		_, err = c.Get(ctx, "azurestack", "stamp-b")
		msg := wantARMError(t, err, 404, "RegistrationNotFound")
		for _, v := range []string{W.ContosoDefault, "azurestack", "stamp-b"} {
			if !strings.Contains(msg, "(value provided: "+v+")") {
				t.Errorf("RegistrationNotFound message lacks %q: %s", v, msg)
			}
		}
		// Operations_List.
		ops := azurestack.NewOperationsClientWithBaseURI(e.url, W.ContosoDefault)
		ops.Authorizer = e.authorizer(e.tokens["contoso"])
		opPage, err := ops.List(ctx)
		if err != nil || len(opPage.Values()) == 0 || to.String(opPage.Values()[0].Name) == "" {
			t.Fatalf("Operations_List: %v %+v", err, opPage.Values())
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAzureStackSDKCustomerSubscriptions covers the customerSubscriptions
// operations and every seed error code, read as an SDK user reads them.
func TestAzureStackSDKCustomerSubscriptions(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		e.createRegistration(W.ContosoDefault, "azurestack", "payg", registration.PayAsYouUse, true)
		e.createRegistration(W.ContosoDefault, "azurestack", "capacity", registration.Capacity, false)
		e.createRegistration(W.ContosoDefault, "azurestack", "unapproved", registration.PayAsYouUse, false)
		cs := e.csClient(W.ContosoDefault, e.tokens["contoso"])
		body := func(tenant string) azurestack.CustomerSubscription {
			return azurestack.CustomerSubscription{CustomerSubscriptionProperties: &azurestack.CustomerSubscriptionProperties{TenantID: to.StringPtr(tenant)}}
		}

		// Create answers 200 with the resource (a 201 would fail the SDK).
		got, err := cs.Create(ctx, "azurestack", "payg", strings.ToUpper(W.Adatum.Subscription), body(W.Adatum.Tenant))
		if err != nil || got.StatusCode != 200 || to.String(got.TenantID) != W.Adatum.Tenant ||
			to.String(got.Name) != "payg/"+W.Adatum.Subscription || to.String(got.Type) != "Microsoft.AzureStack/registrations/customerSubscriptions" {
			t.Fatalf("Create: %v %+v", err, got)
		}
		if again, err := cs.Create(ctx, "azurestack", "payg", W.Adatum.Subscription, body(W.Adatum.Tenant)); err != nil || to.String(again.Etag) != to.String(got.Etag) {
			t.Fatalf("idempotent Create changed the etag: %v", err)
		}
		if g, err := cs.Get(ctx, "azurestack", "payg", W.Adatum.Subscription); err != nil || to.String(g.TenantID) != W.Adatum.Tenant {
			t.Fatalf("Get: %v %+v", err, g)
		}
		if _, err := cs.Create(ctx, "azurestack", "payg", W.Litware.Subscription, body(W.Litware.Tenant)); err != nil {
			t.Fatal(err)
		}
		// A second CSP subscription for Adatum replaces its mapping.
		second := randomGUID()
		resp, b := e.raw("PUT", "/v1/subscriptions/"+second, e.tokens["contoso"], "application/json",
			strings.NewReader(`{"offer":"CSP","partner":"contoso","customerTenantId":"`+W.Adatum.Tenant+`"}`))
		if resp.StatusCode != 201 {
			t.Fatalf("add subscription: %d %s", resp.StatusCode, b)
		}
		if _, err := cs.Create(ctx, "azurestack", "payg", second, body(W.Adatum.Tenant)); err != nil {
			t.Fatal(err)
		}
		_, err = cs.Get(ctx, "azurestack", "payg", W.Adatum.Subscription)
		wantARMError(t, err, 404, registration.CodeCustomerSubscriptionNotFound)
		// List pages with nextLink ($skipToken) at page size 2.
		if _, err := cs.Create(ctx, "azurestack", "payg", W.Adatum.Subscription, body(W.Adatum.Tenant)); err != nil {
			t.Fatal(err)
		}
		second2 := randomGUID()
		e.raw("PUT", "/v1/subscriptions/"+second2, e.tokens["contoso"], "application/json",
			strings.NewReader(`{"offer":"CSP","partner":"contoso","customerTenantId":"`+W.Litware.Tenant+`"}`))
		if _, err := cs.Create(ctx, "azurestack", "payg", second2, body(W.Litware.Tenant)); err != nil {
			t.Fatal(err)
		}
		lp, err := cs.List(ctx, "azurestack", "payg")
		if err != nil {
			t.Fatal(err)
		}
		var tenants []string
		for lp.NotDone() {
			for _, v := range lp.Values() {
				tenants = append(tenants, to.String(v.TenantID))
			}
			if err := lp.NextWithContext(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if len(tenants) != 2 {
			t.Fatalf("List after replacements = %v, want Adatum and Litware once each", tenants)
		}
		// Delete: 200, then 204 on retry; a never-added subscription is CustomerSubscriptionNotFound.
		if r, err := cs.Delete(ctx, "azurestack", "payg", second2); err != nil || r.StatusCode != 200 {
			t.Fatalf("Delete: %v %d", err, r.StatusCode)
		}
		if r, err := cs.Delete(ctx, "azurestack", "payg", second2); err != nil || r.StatusCode != 204 {
			t.Fatalf("second Delete: %v %d", err, r.StatusCode)
		}
		_, err = cs.Delete(ctx, "azurestack", "payg", W.Woodgrove.Subscription)
		wantARMError(t, err, 404, registration.CodeCustomerSubscriptionNotFound)

		// Every seed error code, in rule order.
		_, err = cs.Create(ctx, "azurestack", "missing", W.Litware.Subscription, body(W.Litware.Tenant))
		wantARMError(t, err, 404, registration.CodeRegistrationNotFound)
		_, err = cs.Create(ctx, "wrong-rg", "payg", W.Litware.Subscription, body(W.Litware.Tenant))
		wantARMError(t, err, 404, registration.CodeRegistrationNotFound)
		_, err = cs.Create(ctx, "azurestack", "capacity", W.Litware.Subscription, body(W.Litware.Tenant))
		msg := wantARMError(t, err, 400, registration.CodeCustomerSubscriptionsNotAllowed)
		if !strings.Contains(msg, "re-register with Pay As You Use licensing") {
			t.Errorf("message: %s", msg)
		}
		_, err = cs.Create(ctx, "azurestack", "unapproved", W.Litware.Subscription, body(W.Litware.Tenant))
		msg = wantARMError(t, err, 403, registration.CodeUnauthorizedCspRegistration)
		if !strings.HasPrefix(msg, "The provided unapproved is not approved to use multi-tenancy.") {
			t.Errorf("message: %s", msg)
		}
		_, err = cs.Create(ctx, "azurestack", "payg", "not-a-guid", body(W.Litware.Tenant))
		msg = wantARMError(t, err, 400, registration.CodeInvalidCustomerSubscriptionID)
		if msg != "The 'not-a-guid' is not valid. Make sure a valid Azure subscription is provided." {
			t.Errorf("message: %s", msg)
		}
		unknown := randomGUID()
		_, err = cs.Create(ctx, "azurestack", "payg", unknown, body(W.Litware.Tenant))
		wantARMError(t, err, 400, registration.CodeInvalidCustomerSubscriptionID)
		for _, notCSP := range []string{W.ContosoDefault, W.ContosoPAYG} {
			_, err = cs.Create(ctx, "azurestack", "payg", notCSP, body(W.Litware.Tenant))
			msg = wantARMError(t, err, 400, registration.CodeInvalidCSPSubscription)
			if msg != "The provided "+notCSP+" is not a valid CSP subscription. Make sure a valid Azure subscription is provided." {
				t.Errorf("message: %s", msg)
			}
		}
		// Northwind's customer and Fabrikam's reseller's customer roll up to other partners.
		for _, other := range []storetest.Customer{W.Woodgrove, W.Proseware} {
			_, err = cs.Create(ctx, "azurestack", "payg", other.Subscription, body(other.Tenant))
			msg = wantARMError(t, err, 400, registration.CodeBadCustomerSubscriptionID)
			if !strings.HasPrefix(msg, "The provided "+other.Subscription+" and the payg Subscription Identifier are not owned by the same Microsoft Cloud Service Provider.") {
				t.Errorf("message: %s", msg)
			}
		}
		_, err = cs.Get(ctx, "azurestack", "payg", W.Woodgrove.Subscription)
		msg = wantARMError(t, err, 404, registration.CodeCustomerSubscriptionNotFound)
		if !strings.HasPrefix(msg, W.Woodgrove.Subscription+" was not found under payg.") {
			t.Errorf("message: %s", msg)
		}
		// The tenant in the body must own the subscription.
		_, err = cs.Create(ctx, "azurestack", "payg", W.Litware.Subscription, body(W.Adatum.Tenant))
		wantARMError(t, err, 400, "CustomerTenantMismatch")
	})
}

// TestMetadataResolverBadGateway points the registration rules at a remote
// directory that fails in each way, and checks the seed's 502 and that
// nothing was written.
func TestMetadataResolverBadGateway(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		var mode atomic.Value
		mode.Store("ok")
		var directoryEnv *testEnv
		upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch mode.Load() {
			case "500":
				http.Error(w, "boom", 500)
			case "garbage":
				w.Write([]byte("<html>not json</html>"))
			case "hang":
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			default:
				// Answer as a real stackbill directory would.
				directoryEnv.app.Handler.ServeHTTP(w, r)
			}
		}))
		defer upstream.Close()
		directoryEnv = newTestEnv(t, "sqlite")
		// The upstream directory authenticates the resolver with its operator token.
		e2 := newTestEnv(t, backend, func(o *Options) {
			o.DirectoryURL = upstream.URL
			o.DirectoryToken = directoryEnv.operator
			o.DirectoryTimeout = 300 * time.Millisecond
		})
		e2.createRegistration(W.ContosoDefault, "azurestack", "payg", registration.PayAsYouUse, true)
		cs := e2.csClient(W.ContosoDefault, e2.tokens["contoso"])
		body := azurestack.CustomerSubscription{CustomerSubscriptionProperties: &azurestack.CustomerSubscriptionProperties{TenantID: to.StringPtr(W.Adatum.Tenant)}}
		if _, err := cs.Create(context.Background(), "azurestack", "payg", W.Adatum.Subscription, body); err != nil {
			t.Fatalf("through a healthy remote directory: %v", err)
		}
		before := e2.fingerprint()
		for _, m := range []string{"500", "garbage", "hang", "down"} {
			mode.Store(m)
			if m == "down" {
				upstream.Close()
			}
			_, err := cs.Create(context.Background(), "azurestack", "payg", W.Litware.Subscription, azurestack.CustomerSubscription{
				CustomerSubscriptionProperties: &azurestack.CustomerSubscriptionProperties{TenantID: to.StringPtr(W.Litware.Tenant)}})
			msg := wantARMError(t, err, 502, registration.CodeMetadataResolverBadGateway)
			if msg != "One of the upstream servers returned an unexpected error. Try again later. If the problem persists, Contact support." {
				t.Errorf("message: %s", msg)
			}
		}
		if after := e2.fingerprint(); after != before {
			t.Fatal("a failed resolution changed the database")
		}
	})
}
