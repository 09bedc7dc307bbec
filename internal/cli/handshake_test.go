package cli

import (
	"encoding/base64"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/services/azurestack/mgmt/2017-06-01/azurestack"
	"github.com/Azure/go-autorest/autorest/to"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestRegistrationHandshake walks Azure Stack's registration handshake: the
// stack's registration token, the ARM registration, the activation key from
// getactivationkey, and the stack's activation, plus the refusals.
func TestRegistrationHandshake(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		e := newTestEnv(t, backend)
		stackDB := filepath.Join(t.TempDir(), "stack.db")
		run := func(args ...string) cliResult { return runCLI(t, map[string]string{"STACKBILL_DB": stackDB}, args...) }

		r := run("stack", "registration-token", "--billing-model", "PayAsYouUse")
		token := strings.TrimSpace(r.stdout)
		if r.code != 0 || token == "" {
			t.Fatalf("registration-token: %+v", r)
		}
		if r := run("stack", "registration-token", "--billing-model", "Capacity"); r.code != 2 || !strings.Contains(r.stderr, "agreementNumber") {
			t.Fatalf("Capacity without an agreement number: %+v", r)
		}
		info := run("stack", "info")
		raw, _ := base64.StdEncoding.DecodeString(token)
		if !strings.Contains(info.stdout, "not activated") || !strings.Contains(string(raw), strings.Fields(strings.Split(info.stdout, "\n")[1])[2]) {
			t.Fatalf("stack info %q does not match token %s", info.stdout, raw)
		}

		loc := "global"
		regs := e.regClient(W.ContosoDefault, e.tokens["contoso"])
		if _, err := regs.CreateOrUpdate(ctx, "azurestack", "stamp", azurestack.RegistrationParameter{Location: &loc,
			RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: &token}}); err != nil {
			t.Fatal(err)
		}
		key, err := regs.GetActivationKey(ctx, "azurestack", "stamp")
		if err != nil || strings.Count(to.String(key.ActivationKey), ".") != 2 {
			t.Fatalf("GetActivationKey: %v %q", err, to.String(key.ActivationKey))
		}
		// Another partner cannot get it.
		_, err = e.regClient(W.ContosoDefault, e.tokens["northwind"]).GetActivationKey(ctx, "azurestack", "stamp")
		wantARMError(t, err, 404, "RegistrationNotFound")

		// A tampered key is refused; so is a key for another cloud.
		k := to.String(key.ActivationKey)
		parts := strings.Split(k, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"billingModel":"PayAsYouUse"`, `"billingModel":"Development"`, 1))) + "." + parts[2]
		if r := run("stack", "activate", "--commerce-url", e.url, forged); r.code != 1 || !strings.Contains(r.stderr, "activation key refused") {
			t.Fatalf("tampered key: %+v", r)
		}
		other := *registrationToken(randomGUID(), "PayAsYouUse", "")
		if _, err := regs.CreateOrUpdate(ctx, "azurestack", "other-stamp", azurestack.RegistrationParameter{Location: &loc,
			RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: &other}}); err != nil {
			t.Fatal(err)
		}
		otherKey, _ := regs.GetActivationKey(ctx, "azurestack", "other-stamp")
		if r := run("stack", "activate", "--commerce-url", e.url, to.String(otherKey.ActivationKey)); r.code != 1 || !strings.Contains(r.stderr, "issued for the cloud") {
			t.Fatalf("another cloud's key: %+v", r)
		}
		if r := run("stack", "activate", to.String(key.ActivationKey)); r.code != 1 || !strings.Contains(r.stderr, "--commerce-url") {
			t.Fatalf("no commerce keys: %+v", r)
		}

		// The right key activates the stack.
		if r := run("stack", "activate", "--commerce-url", e.url, k); r.code != 0 || !strings.Contains(r.stdout, "Activated: registration stamp") || !strings.Contains(r.stdout, "usage reporting true") {
			t.Fatalf("activate: %+v", r)
		}
		if info := run("stack", "info"); !strings.Contains(info.stdout, "activation             stamp (PayAsYouUse") {
			t.Fatalf("stack info after activation: %s", info.stdout)
		}
		// The key's bridge credential is a bridge principal for this registration only;
		// a new key revokes it.
		cred := claimValue(t, k, "bridgeToken")
		p, err := e.app.Auth.Authenticate(ctx, cred)
		reg, _ := e.app.Registrations.Get(ctx, auth.Principal{Role: auth.RoleOperator}, regKey(W.ContosoDefault, "azurestack", "stamp"))
		if err != nil || p.Role != auth.RoleBridge || p.RegistrationUID != reg.UID {
			t.Fatalf("bridge credential: %+v %v", p, err)
		}
		if _, err := regs.GetActivationKey(ctx, "azurestack", "stamp"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.app.Auth.Authenticate(ctx, cred); err == nil {
			t.Fatal("the previous bridge credential still works after a new key")
		}
		resp, body := e.raw("GET", "/v1/activation/keys", "", "", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"alg":"RS256"`) {
			t.Fatalf("keys: %d %s", resp.StatusCode, body)
		}
	})
}

func claimValue(t *testing.T, jws, name string) string {
	t.Helper()
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(jws, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(payload), `"`+name+`":"`)
	rest := string(payload)[i+len(name)+4:]
	return rest[:strings.Index(rest, `"`)]
}

// TestRegistrationMoves: registering a cloud again in another subscription
// moves its registration, approval and tenant mappings, but only between
// subscriptions that roll up to the same partner.
func TestRegistrationMoves(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		e := newTestEnv(t, backend)
		e.createRegistration(W.ContosoDefault, "azurestack", "stamp", "PayAsYouUse", true)
		cs := e.csClient(W.ContosoDefault, e.tokens["contoso"])
		if _, err := cs.Create(ctx, "azurestack", "stamp", W.Adatum.Subscription, azurestack.CustomerSubscription{
			CustomerSubscriptionProperties: &azurestack.CustomerSubscriptionProperties{TenantID: to.StringPtr(W.Adatum.Tenant)}}); err != nil {
			t.Fatal(err)
		}
		old, _ := e.regClient(W.ContosoDefault, e.operator).Get(ctx, "azurestack", "stamp")
		cloud := to.String(old.CloudID)
		tok := *registrationToken(cloud, "PayAsYouUse", "")
		loc := "global"
		param := azurestack.RegistrationParameter{Location: &loc, RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: &tok}}
		// Northwind's subscription rolls up to another partner: refused.
		_, err := e.regClient(W.NorthwindDefault, e.operator).CreateOrUpdate(ctx, "azurestack", "stamp", param)
		wantARMError(t, err, 400, "RegistrationMoveNotAllowed")
		// Contoso's PAYG subscription rolls up to contoso: the registration moves.
		moved, err := e.regClient(W.ContosoPAYG, e.tokens["contoso"]).CreateOrUpdate(ctx, "azurestack", "stamp", param)
		if err != nil || moved.StatusCode != 201 {
			t.Fatalf("move: %v", err)
		}
		_, err = e.regClient(W.ContosoDefault, e.tokens["contoso"]).Get(ctx, "azurestack", "stamp")
		wantARMError(t, err, 404, "RegistrationNotFound")
		_, body := e.raw("GET", "/subscriptions/"+W.ContosoPAYG+"/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations/stamp?api-version=2017-06-01", e.operator, "", nil)
		if !strings.Contains(body, `"multiTenancyApproved":true`) {
			t.Fatalf("approval did not move: %s", body)
		}
		if got, err := e.csClient(W.ContosoPAYG, e.tokens["contoso"]).Get(ctx, "azurestack", "stamp", W.Adatum.Subscription); err != nil || to.String(got.TenantID) != W.Adatum.Tenant {
			t.Fatalf("mapping did not move: %v", err)
		}
		// The old registration's history says where it went.
		if r := runCLI(t, map[string]string{"STACKBILL_URL": e.url, "STACKBILL_TOKEN": e.operator}, "registration", "history",
			"--subscription", W.ContosoDefault, "--resource-group", "azurestack", "--name", "stamp"); r.code != 0 || !strings.Contains(r.stdout, "moved") {
			t.Fatalf("history: %+v", r)
		}
	})
}
