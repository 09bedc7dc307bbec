package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestDeploymentLicense: a partner asks commerce for a temporary deployment
// license for a stack on its own subscription (generateDeploymentLicense,
// 2022-06-01), and the stack verifies it offline with the keys of
// commerce's cloud manifest and shows its expiry. A changed license, an
// expired one, an end customer's subscription and another partner's are
// refused.
func TestDeploymentLicense(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		partner := map[string]string{"STACKBILL_URL": e.url, "STACKBILL_TOKEN": e.tokens["contoso"]}
		r := runCLI(t, partner, "registration", "deployment-license", "--subscription", W.ContosoDefault)
		if r.code != 0 || !strings.Contains(r.stdout, "temporaryLicenseChain") {
			t.Fatalf("deployment-license: %+v", r)
		}
		file := filepath.Join(t.TempDir(), "license.json")
		if err := os.WriteFile(file, []byte(r.stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		stackDB := filepath.Join(t.TempDir(), "stack.db")
		r = runCLI(t, nil, "stack", "license", "--db", stackDB, "--commerce-url", e.url, "--key-file", file)
		if r.code != 0 || !strings.Contains(r.stdout, "valid") || !strings.Contains(r.stdout, strings.ToLower(W.ContosoDefault)) || !strings.Contains(r.stdout, "expires") {
			t.Fatalf("stack license: %+v", r)
		}
		var lic bridge.DeploymentLicense
		if err := json.Unmarshal([]byte(r.stdout), &lic); err == nil {
			t.Fatal("stack license printed JSON by default")
		}
		if err := json.Unmarshal(mustRead(t, file), &lic); err != nil {
			t.Fatal(err)
		}
		// Another subscription's claims under the same signature: refused.
		forged := lic
		forged.TemporaryLicenseChain = []string{strings.Replace(lic.TemporaryLicenseChain[0], "A", "B", 1)}
		b, _ := json.Marshal(forged)
		_ = os.WriteFile(file, b, 0o600)
		if r := runCLI(t, nil, "stack", "license", "--db", stackDB, "--commerce-url", e.url, "--key-file", file); r.code == 0 || !strings.Contains(r.stderr, "refused") {
			t.Errorf("a changed license: %+v", r)
		}
		keys, err := e.app.Signer.JWKS(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bridge.VerifyLicense(lic, keys, time.Now().Add(bridge.LicenseTTL+time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Errorf("an expired license: %v", err)
		}
		if c, err := bridge.VerifyLicense(lic, keys, time.Now()); err != nil || c.ExpiresAt.Sub(c.IssuedAt) != bridge.LicenseTTL {
			t.Errorf("the license: %+v %v", c, err)
		}
		// Refusals, each an ARM error that changes nothing.
		post := func(token, sub, version, body string) (int, string) {
			resp, out := e.raw("POST", "/subscriptions/"+sub+"/providers/Microsoft.AzureStack/generateDeploymentLicense?api-version="+version, token, "application/json", strings.NewReader(body))
			return resp.StatusCode, out
		}
		tenant, _, err := e.app.Auth.Create(t.Context(), auth.RoleTenant, "", W.Adatum.Subscription, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name, token, sub, version, body string
			status                          int
			code                            string
		}{
			{"an end customer's subscription", e.tokens["contoso"], W.Adatum.Subscription, "2022-06-01", `{"verificationVersion":"latest"}`, 400, "InvalidSubscriptionForLicense"},
			{"another partner's subscription", e.tokens["contoso"], W.FabrikamDefault, "2022-06-01", `{"verificationVersion":"latest"}`, 404, "SubscriptionNotFound"},
			{"an unknown subscription", e.tokens["contoso"], "99999999-0000-4000-8000-000000000001", "2022-06-01", `{"verificationVersion":"latest"}`, 404, "SubscriptionNotFound"},
			{"a reseller", e.tokens["tailspin"], W.Proseware.Subscription, "2022-06-01", `{"verificationVersion":"latest"}`, 404, "SubscriptionNotFound"},
			{"no version", e.tokens["contoso"], W.ContosoDefault, "2022-06-01", `{}`, 400, "InvalidRequestContent"},
			{"another version", e.tokens["contoso"], W.ContosoDefault, "2022-06-01", `{"verificationVersion":"v9"}`, 400, "InvalidRequestContent"},
			{"an older api-version", e.tokens["contoso"], W.ContosoDefault, "2017-06-01", `{"verificationVersion":"latest"}`, 400, ""},
			{"a tenant", tenant, W.ContosoDefault, "2022-06-01", `{"verificationVersion":"latest"}`, 403, "AuthorizationFailed"},
		} {
			status, out := post(c.token, c.sub, c.version, c.body)
			if status != c.status || !strings.Contains(out, c.code) || status == http.StatusOK {
				t.Errorf("%s: %d %.300s, want %d %s", c.name, status, out, c.status, c.code)
			}
		}
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
