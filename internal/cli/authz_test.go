package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/services/azurestack/mgmt/2017-06-01/azurestack"
	"github.com/Azure/go-autorest/autorest/to"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestAuthorization proves that no partner, reseller or other role can read
// or change what is not theirs, and that bad tokens are refused.
func TestAuthorization(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		e.createRegistration(W.ContosoDefault, "azurestack", "contoso-stamp", registration.PayAsYouUse, true)
		e.createRegistration(W.FabrikamDefault, "azurestack", "fabrikam-stamp", registration.PayAsYouUse, true)
		// A stamp operated by reseller tailspin, registered to its customer's CSP subscription.
		e.createRegistration(W.Proseware.Subscription, "azurestack", "tailspin-stamp", registration.PayAsYouUse, true)
		regPath := func(sub, name string) string {
			return "/subscriptions/" + sub + "/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations/" + name + "?api-version=2017-06-01"
		}
		usageWriter, _, _ := e.app.Auth.Create(ctx, auth.RoleUsageWriter, "", "", "", 0)
		expired, _, _ := e.app.Auth.Create(ctx, auth.RolePartner, "contoso", "", "", time.Nanosecond)
		revoked, tok, _ := e.app.Auth.Create(ctx, auth.RolePartner, "contoso", "", "", 0)
		if err := e.app.Auth.Revoke(ctx, tok.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		cases := []struct {
			name, token, method, path string
			status                    int
			code                      string
		}{
			{"no token", "", "GET", regPath(W.ContosoDefault, "contoso-stamp"), 401, "AuthenticationFailed"},
			{"garbage token", "nope", "GET", regPath(W.ContosoDefault, "contoso-stamp"), 401, "AuthenticationFailed"},
			{"tampered token", e.tokens["contoso"] + "x", "GET", regPath(W.ContosoDefault, "contoso-stamp"), 401, "AuthenticationFailed"},
			{"expired token", expired, "GET", regPath(W.ContosoDefault, "contoso-stamp"), 401, "AuthenticationFailed"},
			{"revoked token", revoked, "GET", regPath(W.ContosoDefault, "contoso-stamp"), 401, "AuthenticationFailed"},
			{"unauthenticated unknown route", "", "GET", "/nothing/here", 401, "AuthenticationFailed"},
			{"partner reads own", e.tokens["contoso"], "GET", regPath(W.ContosoDefault, "contoso-stamp"), 200, ""},
			{"partner reads another's", e.tokens["contoso"], "GET", regPath(W.FabrikamDefault, "fabrikam-stamp"), 404, "RegistrationNotFound"},
			{"partner deletes another's", e.tokens["northwind"], "DELETE", regPath(W.ContosoDefault, "contoso-stamp"), 404, "RegistrationNotFound"},
			{"partner lists another's subscription", e.tokens["contoso"], "GET", "/subscriptions/" + W.FabrikamDefault + "/providers/Microsoft.AzureStack/registrations?api-version=2017-06-01", 403, "AuthorizationFailed"},
			{"partner lists all", e.tokens["contoso"], "GET", "/v1/registrations", 403, "AuthorizationFailed"},
			{"partner approves", e.tokens["contoso"], "POST", "/v1/registrations/approve", 403, "AuthorizationFailed"},
			{"provider reads its reseller's stamp", e.tokens["fabrikam"], "GET", regPath(W.Proseware.Subscription, "tailspin-stamp"), 200, ""},
			{"reseller reads own stamp", e.tokens["tailspin"], "GET", regPath(W.Proseware.Subscription, "tailspin-stamp"), 200, ""},
			{"reseller reads sibling's stamp", e.tokens["wingtip"], "GET", regPath(W.Proseware.Subscription, "tailspin-stamp"), 404, "RegistrationNotFound"},
			{"reseller reads provider's stamp", e.tokens["tailspin"], "GET", regPath(W.FabrikamDefault, "fabrikam-stamp"), 404, "RegistrationNotFound"},
			{"usage writer on registrations", usageWriter, "GET", regPath(W.ContosoDefault, "contoso-stamp"), 403, "AuthorizationFailed"},
			{"usage writer on metrics", usageWriter, "GET", "/metrics", 403, "AuthorizationFailed"},
			{"partner reads another's customer", e.tokens["contoso"], "GET", "/v1/customers/" + W.Woodgrove.Tenant, 404, "CustomerNotFound"},
			{"reseller reads sibling's customer", e.tokens["tailspin"], "GET", "/v1/customers/" + W.Relecloud.Tenant, 404, "CustomerNotFound"},
			{"reseller reads sibling's subscription", e.tokens["tailspin"], "GET", "/v1/subscriptions/" + W.Relecloud.Subscription, 404, "SubscriptionNotFound"},
			{"provider reads reseller's customer", e.tokens["fabrikam"], "GET", "/v1/customers/" + W.Relecloud.Tenant, 200, ""},
			{"partner reads another partner", e.tokens["contoso"], "GET", "/v1/partners/northwind", 404, "PartnerNotFound"},
			{"partner writes a partner", e.tokens["contoso"], "PUT", "/v1/partners/contoso", 403, "AuthorizationFailed"},
			{"partner reads history", e.tokens["contoso"], "GET", "/v1/directory/history/partners/contoso", 403, "AuthorizationFailed"},
			{"partner resolves", e.tokens["contoso"], "GET", "/v1/directory/resolve/subscriptions/" + W.ContosoDefault, 403, "AuthorizationFailed"},
			{"partner imports", e.tokens["contoso"], "POST", "/v1/directory/import", 403, "AuthorizationFailed"},
			{"partner removes another's customer", e.tokens["northwind"], "DELETE", "/v1/customers/" + W.Adatum.Tenant, 404, "CustomerNotFound"},
			{"operator metrics", e.operator, "GET", "/metrics", 200, ""},
			{"health without token", "", "GET", "/healthz", 200, ""},
		}
		// Reading the bridge's state (through /metrics) stores its default
		// watermark once; do it before the fingerprint.
		e.raw("GET", "/metrics", e.operator, "", nil)
		before := e.fingerprint()
		for _, tc := range cases {
			resp, body := e.raw(tc.method, tc.path, tc.token, "application/json", strings.NewReader(`{"id":"contoso","name":"x","type":"DirectCSP","subscriptionId":"`+W.ContosoDefault+`","resourceGroup":"azurestack","name2":""}`))
			if resp.StatusCode != tc.status || (tc.code != "" && errCode(body) != tc.code) {
				t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, errCode(body), tc.status, tc.code)
			}
			if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: no WWW-Authenticate challenge", tc.name)
			}
		}
		if e.fingerprint() != before {
			t.Fatal("a refused request changed the database")
		}

		// Through the SDK: a partner cannot create in a subscription that does
		// not roll up to it, nor register someone else's customers.
		loc := "global"
		_, err := e.regClient(W.NorthwindDefault, e.tokens["contoso"]).CreateOrUpdate(ctx, "azurestack", "grab", azurestack.RegistrationParameter{Location: &loc,
			RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: registrationToken(randomGUID(), registration.PayAsYouUse, "")}})
		wantARMError(t, err, 403, "AuthorizationFailed")
		body := func(tenant string) azurestack.CustomerSubscription {
			return azurestack.CustomerSubscription{CustomerSubscriptionProperties: &azurestack.CustomerSubscriptionProperties{TenantID: to.StringPtr(tenant)}}
		}
		tail := e.csClient(W.Proseware.Subscription, e.tokens["tailspin"])
		if _, err := tail.Create(ctx, "azurestack", "tailspin-stamp", W.Proseware.Subscription, body(W.Proseware.Tenant)); err != nil {
			t.Fatalf("reseller adds its own customer: %v", err)
		}
		// Wingtip's customer rolls up to the same provider, but is not
		// tailspin's: it answers as a subscription that does not exist.
		_, err = tail.Create(ctx, "azurestack", "tailspin-stamp", W.Relecloud.Subscription, body(W.Relecloud.Tenant))
		wantARMError(t, err, 400, "InvalidCustomerSubscriptionId")
		// The provider may add any of its resellers' customers to its resellers' stamps.
		if _, err := e.csClient(W.Proseware.Subscription, e.tokens["fabrikam"]).Create(ctx, "azurestack", "tailspin-stamp", W.Relecloud.Subscription, body(W.Relecloud.Tenant)); err != nil {
			t.Fatalf("provider adds a reseller's customer: %v", err)
		}
		// Approval needs a CSP or CSPSS default subscription.
		e.createRegistration(W.EA, "azurestack", "ea-stamp", registration.PayAsYouUse, false)
		resp, b := e.raw("POST", "/v1/registrations/approve", e.operator, "application/json",
			strings.NewReader(`{"subscriptionId":"`+W.EA+`","resourceGroup":"azurestack","name":"ea-stamp"}`))
		if resp.StatusCode != 400 || errCode(b) != "MultiTenancyRequiresCspSubscription" {
			t.Fatalf("approving an EA registration: %d %s", resp.StatusCode, b)
		}
	})
}
