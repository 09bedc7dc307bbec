package cli

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

type cliResult struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, env map[string]string, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
	return cliResult{code, out.String(), errb.String()}
}

// cliAs returns the environment of a CLI user of url with token, and a
// function that runs a command in it and returns its output, failing the
// test on a non-zero exit.
func cliAs(t *testing.T, url, token string) (map[string]string, func(args ...string) string) {
	env := map[string]string{"STACKBILL_URL": url, "STACKBILL_TOKEN": token, "STACKBILL_DATA": t.TempDir()}
	return env, func(args ...string) string {
		t.Helper()
		r := runCLI(t, env, args...)
		if r.code != 0 {
			t.Fatalf("stackbill %v: exit %d: %s", args, r.code, r.stderr)
		}
		return r.stdout
	}
}

// TestCLIFlow runs the seed's "Add end customer" flow through the CLI against
// a server started with `stackbill serve`, on both engines.
func TestCLIFlow(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		dsn := storetest.DSN(t, backend)
		dir := t.TempDir()
		opTok := "operator-" + randomGUID()
		world := filepath.Join(dir, "world.json")
		if err := os.WriteFile(world, storetest.WorldJSON(), 0o600); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{"STACKBILL_DB": dsn}

		// Directory import, twice: the second changes nothing.
		r := runCLI(t, env, "directory", "import", world)
		if r.code != 0 || !strings.Contains(r.stdout, "partners       created 5, updated 0, unchanged 0") {
			t.Fatalf("import: %+v", r)
		}
		r = runCLI(t, env, "directory", "import", world)
		if r.code != 0 || !strings.Contains(r.stdout, "subscriptions  created 0, updated 0, unchanged 10") {
			t.Fatalf("re-import: %+v", r)
		}
		// A bad file is rejected line by line and nothing is imported.
		bad := filepath.Join(dir, "bad.json")
		os.WriteFile(bad, []byte(`{
  "partners": [
    {"id": "newco", "name": "NewCo", "type": "DirectCSP"},
    {"id": "resell", "name": "R", "type": "IndirectReseller", "provider": "contoso"}
  ],
  "customers": [
    {"tenantId": "not-a-guid", "name": "X", "partner": "newco"}
  ],
  "subscriptions": [
    {"id": "`+randomGUID()+`", "offer": "CSP", "partner": "newco", "customerTenantId": "`+randomGUID()+`", "colour": "red"}
  ]
}`), 0o600)
		r = runCLI(t, env, "directory", "import", bad)
		if r.code != 1 {
			t.Fatalf("bad import exit %d: %s", r.code, r.stderr)
		}
		for _, want := range []string{"nothing was imported", "line 10: subscriptions[0]: json: unknown field \"colour\""} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("bad import output lacks %q:\n%s", want, r.stderr)
			}
		}
		os.WriteFile(bad, []byte("{\n  \"partners\": [\n    {\"id\": \"newco\", \"name\": \"NewCo\", \"type\": \"DirectCSP\"},\n    {\"id\": \"resell\", \"name\": \"R\", \"type\": \"IndirectReseller\", \"provider\": \"contoso\"}\n  ],\n  \"customers\": [\n    {\"tenantId\": \"not-a-guid\", \"name\": \"X\", \"partner\": \"newco\"}\n  ]\n}"), 0o600)
		r = runCLI(t, env, "directory", "import", bad)
		for _, want := range []string{"line 4: partner resell: reseller \"resell\" names provider \"contoso\", which is a DirectCSP", "line 7: customer not-a-guid: customer tenantId \"not-a-guid\" is not a GUID"} {
			if r.code != 1 || !strings.Contains(r.stderr, want) {
				t.Errorf("bad import output lacks %q:\n%s", want, r.stderr)
			}
		}
		if r := runCLI(t, env, "directory", "import", world); !strings.Contains(r.stdout, "partners       created 0, updated 0, unchanged 5") {
			t.Fatalf("a rejected import changed the directory: %+v", r)
		}

		// Tokens: only the token is printed; scopes are checked.
		r = runCLI(t, env, "token", "create", "--role", "partner", "--partner", "contoso")
		partnerTok := strings.TrimSpace(r.stdout)
		if r.code != 0 || !strings.HasPrefix(partnerTok, "sbk_") || strings.Count(r.stdout, "\n") != 1 {
			t.Fatalf("token create: %+v", r)
		}
		if r := runCLI(t, env, "token", "create", "--role", "reseller", "--partner", "contoso"); r.code != 2 {
			t.Fatalf("reseller token for a direct CSP: %+v", r)
		}
		if r := runCLI(t, env, "token", "list"); r.code != 0 || !strings.Contains(r.stdout, "partner") || strings.Contains(r.stdout, partnerTok) {
			t.Fatalf("token list: %+v", r)
		}

		// Serve, then drive it through the CLI.
		addr := e2e.FreeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan cliResult, 1)
		go func() {
			var out, errb bytes.Buffer
			code := Main(ctx, []string{"serve", "--addr", addr, "--log-level", "warn"}, func(k string) string {
				return map[string]string{"STACKBILL_DB": dsn, "STACKBILL_OPERATOR_TOKEN": opTok}[k]
			}, strings.NewReader(""), &out, &errb)
			served <- cliResult{code, out.String(), errb.String()}
		}()
		defer func() {
			cancel()
			if r := <-served; r.code != 0 {
				t.Errorf("serve exited %d: %s", r.code, r.stderr)
			}
		}()
		url := "http://" + addr
		for i := 0; ; i++ {
			resp, err := http.Get(url + "/healthz")
			if err == nil {
				resp.Body.Close()
				break
			}
			if i > 200 {
				t.Fatal("server did not start")
			}
			time.Sleep(25 * time.Millisecond)
		}
		op := map[string]string{"STACKBILL_URL": url, "STACKBILL_OPERATOR_TOKEN": opTok}
		partner := map[string]string{"STACKBILL_URL": url, "STACKBILL_TOKEN": partnerTok}
		cloud := randomGUID()
		tok := *registrationToken(cloud, registration.PayAsYouUse, "")
		reg := []string{"--subscription", W.ContosoDefault, "--resource-group", "azurestack"}

		r = runCLI(t, partner, append([]string{"registration", "create", "--name", "azurestack-" + cloud, "--registration-token", tok}, reg...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "created") || !strings.Contains(r.stdout, "ask the commerce operator to approve") {
			t.Fatalf("registration create: %+v", r)
		}
		tenantAdd := append([]string{"tenant", "add", "--registration", "azurestack-" + cloud, "--customer-subscription", W.Adatum.Subscription, "--tenant", W.Adatum.Tenant}, reg...)
		r = runCLI(t, partner, tenantAdd...)
		if r.code != 1 || !strings.Contains(r.stderr, "UnauthorizedCspRegistration (HTTP 403)") || !strings.Contains(r.stderr, "What this means: A registration needs to be approved for multi-tenancy") {
			t.Fatalf("tenant add before approval: %+v", r)
		}
		if r := runCLI(t, partner, append([]string{"registration", "approve", "--name", "azurestack-" + cloud}, reg...)...); r.code != 1 || !strings.Contains(r.stderr, "AuthorizationFailed") {
			t.Fatalf("partner approving: %+v", r)
		}
		if r := runCLI(t, op, append([]string{"registration", "approve", "--name", "azurestack-" + cloud}, reg...)...); r.code != 0 || !strings.Contains(r.stdout, "approved: true") {
			t.Fatalf("operator approving: %+v", r)
		}
		if r := runCLI(t, partner, tenantAdd...); r.code != 0 || !strings.Contains(r.stdout, "now reports usage to CSP subscription") {
			t.Fatalf("tenant add: %+v", r)
		}
		other := append([]string{"tenant", "add", "--registration", "azurestack-" + cloud, "--customer-subscription", W.Woodgrove.Subscription, "--tenant", W.Woodgrove.Tenant}, reg...)
		if r := runCLI(t, partner, other...); r.code != 1 || !strings.Contains(r.stderr, "BadCustomerSubscriptionId") || !strings.Contains(r.stderr, "billing a CSP partner who is not responsible") {
			t.Fatalf("tenant add of another partner's customer: %+v", r)
		}
		if r := runCLI(t, partner, append([]string{"tenant", "list", "--registration", "azurestack-" + cloud}, reg...)...); r.code != 0 || !strings.Contains(r.stdout, W.Adatum.Tenant) {
			t.Fatalf("tenant list: %+v", r)
		}
		if r := runCLI(t, op, "registration", "list", "--cloud-id", cloud); r.code != 0 || !strings.Contains(r.stdout, "azurestack-"+cloud) || !strings.Contains(r.stdout, "true") {
			t.Fatalf("registration list --cloud-id: %+v", r)
		}
		if r := runCLI(t, partner, append([]string{"tenant", "remove", "--registration", "azurestack-" + cloud, "--customer-subscription", W.Adatum.Subscription}, reg...)...); r.code != 0 || !strings.Contains(r.stdout, "goes to the default subscription") {
			t.Fatalf("tenant remove: %+v", r)
		}
		if r := runCLI(t, partner, append([]string{"registration", "history", "--name", "azurestack-" + cloud}, reg...)...); r.code != 0 ||
			!strings.Contains(r.stdout, "mapping_added") || !strings.Contains(r.stdout, "mapping_removed") || !strings.Contains(r.stdout, "approved") {
			t.Fatalf("registration history: %+v", r)
		}
		if r := runCLI(t, partner, append([]string{"tenant", "show", "--registration", "missing", "--customer-subscription", W.Adatum.Subscription}, reg...)...); r.code != 1 ||
			!strings.Contains(r.stderr, "RegistrationNotFound") || !strings.Contains(r.stderr, "CloudDeploymentID") {
			t.Fatalf("tenant show on a missing registration: %+v", r)
		}
	})
}

func TestServeRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	dsn := filepath.Join(t.TempDir(), "db.sqlite")
	if r := runCLI(t, nil, "migrate", "--db", dsn); r.code != 0 || !strings.Contains(r.stdout, "sqlite schema version ") {
		t.Fatalf("migrate: %+v", r)
	}
	// Pretend a newer stackbill migrated this database.
	db, err := store.Open(context.Background(), dsn, storetest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	err = db.Write(context.Background(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(context.Background(), `INSERT INTO schema_migrations (version, name, checksum, applied_at_us) VALUES (99, 'future', 'x', 0)`)
		return err
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "serve", "--db", dsn, "--addr", e2e.FreeAddr(t))
	if r.code != 1 || !strings.Contains(r.stderr, "newer than this stackbill") {
		t.Fatalf("serve on a newer schema: %+v", r)
	}
}

// TestBenchRefusesSizesItCannotRun: sizes past what a stage can time (a
// rate whose batch interval rounds to zero would offer forever; a stream
// whose duration overflows) are refused as usage errors before any stage
// runs.
func TestBenchRefusesSizesItCannotRun(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--stages", "sustained", "--sustained-rates", "99999999999999"},
		{"--stages", "sustained", "--sustained-rates", "999"},
		{"--stages", "sustained", "--sustained-seconds", "999999"},
		{"--stages", "sustained", "--sustained-hour", "2h"},
		{"--stages", "memory", "--memory-events", "10000000000"},
		{"--stages", "memory", "--memory-events", "10"},
		{"--stages", "memory", "--memory-rate", "99999999"},
		{"--stages", "memry"},
		{"--stages", "registration", "--registration-tenants", "0"},
		{"--stages", "registration", "--registration-tenants", "1000000000"},
		{"registration", "--tenants", "-1"},
		{"registration", "--clients", "100000"},
	} {
		r := runCLI(t, nil, append([]string{"bench"}, args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "stackbill bench: ") {
			t.Errorf("bench %v: exit %d, stderr %q; want a usage error", args, r.code, r.stderr)
		}
	}
}
