package cli

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/services/azurestack/mgmt/2017-06-01/azurestack"
	"github.com/Azure/go-autorest/autorest"
	"github.com/Azure/go-autorest/autorest/azure"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bench"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/tenancy"
)

// testEnv is a whole stackbill (Build) on a fresh database, served over real
// HTTP, with the storetest World imported and a token per role.
type testEnv struct {
	t        *testing.T
	app      *App
	srv      *httptest.Server
	url      string
	operator string
	tokens   map[string]string // partner id -> partner or reseller token
	dsn      string
}

func newTestEnv(t *testing.T, backend string, mutate ...func(*Options)) *testEnv {
	t.Helper()
	o := Options{DB: storetest.DSN(t, backend), OperatorToken: "op-" + randomGUID(), PageSize: 2, Logger: storetest.Logger()}
	for _, m := range mutate {
		m(&o)
	}
	app := buildApp(t, o)
	if _, err := app.Directory.Import(context.Background(), "test", storetest.WorldJSON()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.Handler)
	t.Cleanup(srv.Close)
	e := &testEnv{t: t, app: app, srv: srv, url: srv.URL, operator: o.OperatorToken, tokens: map[string]string{}, dsn: o.DB}
	for id, role := range map[string]auth.Role{"contoso": auth.RolePartner, "fabrikam": auth.RolePartner, "northwind": auth.RolePartner,
		"tailspin": auth.RoleReseller, "wingtip": auth.RoleReseller} {
		tok, _, err := app.Auth.Create(context.Background(), role, id, "", "test", 0)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[id] = tok
	}
	return e
}

type staticToken string

func (s staticToken) OAuthToken() string { return string(s) }

func (e *testEnv) authorizer(token string) autorest.Authorizer {
	return autorest.NewBearerAuthorizer(staticToken(token))
}

func (e *testEnv) regClient(sub, token string) azurestack.RegistrationsClient {
	c := azurestack.NewRegistrationsClientWithBaseURI(e.url, sub)
	c.Authorizer = e.authorizer(token)
	c.RetryAttempts, c.RetryDuration = 1, 0
	return c
}

func (e *testEnv) csClient(sub, token string) azurestack.CustomerSubscriptionsClient {
	c := azurestack.NewCustomerSubscriptionsClientWithBaseURI(e.url, sub)
	c.Authorizer = e.authorizer(token)
	c.RetryAttempts, c.RetryDuration = 1, 0
	return c
}

// armError reads an SDK error the way an SDK user does: the service error
// code and the HTTP status. A 409 arrives as a value, not a pointer (see
// wire-contract §1.4), so both forms are tried.
func armError(err error) (int, string, string) {
	var re *azure.RequestError
	if errors.As(err, &re) && re.ServiceError != nil {
		st, _ := re.StatusCode.(int)
		return st, re.ServiceError.Code, re.ServiceError.Message
	}
	var rv azure.RequestError
	if errors.As(err, &rv) && rv.ServiceError != nil {
		st, _ := rv.StatusCode.(int)
		return st, rv.ServiceError.Code, rv.ServiceError.Message
	}
	var de autorest.DetailedError
	if errors.As(err, &de) {
		st, _ := de.StatusCode.(int)
		return st, "", de.Error()
	}
	return 0, "", fmt.Sprint(err)
}

func wantARMError(t *testing.T, err error, status int, code string) string {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %d %s", status, code)
	}
	st, c, msg := armError(err)
	if st != status || c != code {
		t.Fatalf("got %d %s (%s), want %d %s", st, c, msg, status, code)
	}
	return msg
}

func registrationToken(cloudID string, model registration.BillingModel, agreement string) *string {
	s := storetest.SignedToken(registration.Token{CloudID: cloudID, ObjectID: "0b000000-0000-4000-8000-0000000000b0", BillingModel: model, AgreementNumber: agreement})
	return &s
}

func (e *testEnv) createRegistration(sub, rg, name string, model registration.BillingModel, approve bool) azurestack.Registration {
	e.t.Helper()
	loc := "global"
	agreement := ""
	if model == registration.Capacity {
		agreement = "EA-123"
	}
	r, err := e.regClient(sub, e.operator).CreateOrUpdate(context.Background(), rg, name, azurestack.RegistrationParameter{
		Location: &loc, RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: registrationToken(randomGUID(), model, agreement)}})
	if err != nil {
		e.t.Fatalf("create registration %s: %v", name, err)
	}
	if approve {
		if _, err := e.app.Registrations.Approve(context.Background(), auth.Principal{Role: auth.RoleOperator, TokenID: "t"},
			registration.Key{SubscriptionID: sub, ResourceGroup: rg, Name: name}, true); err != nil {
			e.t.Fatal(err)
		}
	}
	return r
}

// raw sends a request without the SDK, for cases the SDK cannot express.
func (e *testEnv) raw(method, path, token, contentType string, body io.Reader, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	return e2e.Call(e.t, http.DefaultClient, method, e.url+path, token, contentType, body, hdr...)
}

// fingerprint hashes every table but the audit log (which records refusals
// as well as changes; see auditCounts), so a test can prove that a refused
// request changed nothing. Pending audit records are sealed first, so the
// sealer's work between two fingerprints is not a change.
func (e *testEnv) fingerprint() string {
	e.t.Helper()
	ctx := context.Background()
	db := e.app.DB
	if _, err := audit.Seal(ctx, db); err != nil {
		e.t.Fatal(err)
	}
	q := `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
	if db.Dialect == store.Postgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		e.t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		if n != "audit_log" && n != "audit_head" && n != "audit_pending" && !strings.HasPrefix(n, "sqlite_") {
			tables = append(tables, n)
		}
	}
	rows.Close()
	h := sha256.New()
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, "SELECT * FROM "+table+" ORDER BY 1")
		if err != nil {
			e.t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				e.t.Fatal(err)
			}
			fmt.Fprintf(h, "%s:%v\n", table, vals)
		}
		rows.Close()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// auditCounts counts the audit log's records of changes and of refusals.
func (e *testEnv) auditCounts() (changes, refusals int64) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := audit.Seal(ctx, e.app.DB); err != nil {
		e.t.Fatal(err)
	}
	if err := e.app.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_log WHERE action <> 'request.refused'`).Scan(&changes); err != nil {
		e.t.Fatal(err)
	}
	if err := e.app.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_log WHERE action = 'request.refused'`).Scan(&refusals); err != nil {
		e.t.Fatal(err)
	}
	return changes, refusals
}

func errCode(body string) string {
	i := strings.Index(body, `"code":"`)
	if i < 0 {
		return ""
	}
	rest := body[i+8:]
	return rest[:strings.Index(rest, `"`)]
}

var _ = directory.Created

func base64JSON(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func regKey(sub, rg, name string) registration.Key {
	return registration.Key{SubscriptionID: sub, ResourceGroup: rg, Name: name}
}

// activateStack registers stack on commerce under k and activates it with
// the activation key, naming url as commerce's usage endpoint.
func activateStack(t *testing.T, com, stack *App, k registration.Key, url string, now time.Time) {
	t.Helper()
	key, keys, err := bench.RegisterStack(context.Background(), benchInstance(com), stack.DB, k, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bridge.Activate(context.Background(), stack.DB, key, keys, now); err != nil {
		t.Fatal(err)
	}
}

// onboardLocal onboards tenant's directory on stack and a user subscription
// sub it owns.
func onboardLocal(t *testing.T, stack *App, tenant, sub string) {
	t.Helper()
	ctx := t.Context()
	sop := auth.Principal{Role: auth.RoleStackOperator, TokenID: "t"}
	if _, _, err := stack.Tenancy.PutDirectoryTenant(ctx, sop, stack.Tenancy.Provider(), tenancy.DirectoryTenant{Name: tenant, TenantID: tenant}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := stack.Tenancy.PutSubscription(ctx, sop, stack.Tenancy.Provider(), sub, tenancy.Subscription{TenantID: tenant, Owner: "o", OfferID: "o"}); err != nil {
		t.Fatal(err)
	}
}

// newStackPair builds commerce on backend and a stack on a SQLite database
// of its own (operator token "stack-op", bridge batches of batch records),
// both on one manual clock that starts at start.
func newStackPair(t *testing.T, backend string, start time.Time, batch int) (*clock.Clock, *testEnv, *App) {
	t.Helper()
	clk := clock.Manual(start)
	com := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
	return clk, com, buildApp(t, stackOptions(t, clk, batch))
}

// stackOptions are a test stack's: a SQLite database of its own, clk, the
// operator token "stack-op" and bridge batches of batch records. Building
// an App from them again restarts that stack.
func stackOptions(t *testing.T, clk *clock.Clock, batch int) Options {
	return Options{DB: storetest.DSN(t, "sqlite"), Clock: clk, OperatorToken: "stack-op", BridgeBatch: batch}
}

// reportingStack serves stack over loopback until the test ends, activates
// it on commerce as registration name, and onboards a tenant and its user
// subscription; it returns that subscription and a reporter to post usage
// with.
func reportingStack(t *testing.T, com *testEnv, stack *App, name string) (sub string, rp *simulate.Reporter) {
	t.Helper()
	srv := httptest.NewServer(stack.Handler)
	t.Cleanup(srv.Close)
	activateStack(t, com.app, stack, regKey(W.ContosoDefault, "azurestack", name), com.url, stack.Clock.Now())
	tenant, sub := randomGUID(), randomGUID()
	onboardLocal(t, stack, tenant, sub)
	return sub, &simulate.Reporter{Base: srv.URL, Token: "stack-op", HTTP: srv.Client()}
}

// newStackApp builds a stack's services on a SQLite database of its own,
// on clk, closed when the test ends.
func newStackApp(t *testing.T, clk *clock.Clock) *App {
	t.Helper()
	return buildApp(t, Options{DB: storetest.DSN(t, "sqlite"), Clock: clk})
}

// buildApp is the one way a test builds an instance in process: with the
// tests' logger unless o names one, closed when the test ends (closing it
// earlier, to restart it, is fine).
func buildApp(t testing.TB, o Options) *App {
	t.Helper()
	if o.Logger == nil {
		o.Logger = storetest.Logger()
	}
	app, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app
}

// randomGUID is a fresh random GUID.
func randomGUID() string { return tenancy.NewGUID() }
