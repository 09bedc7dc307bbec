package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/services/azurestack/mgmt/2017-06-01/azurestack"
	"github.com/Azure/go-autorest/autorest/to"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/budget"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/usage"
)

// TestBudgetsAlertOncePerThreshold: budgets of a partner (at its invoice's
// cost), of a reseller (at its own charges, from its statements) and of the
// operator are evaluated by two instances at once, several rounds: each
// threshold crossed is recorded, with its event, exactly once. A budget's
// spend is its invoice's total. Usage that arrives after the month ended
// and pushes it over a threshold alerts, marked late. Each owner sees its
// own budgets and alerts only: a provider not its reseller's, a reseller
// not its provider's.
func TestBudgetsAlertOncePerThreshold(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		w := newBillingWorld(t, backend)
		e := w.env
		invs, err := e.app.Billing.Invoices(ctx, w.op, "2026-10")
		if err != nil {
			t.Fatal(err)
		}
		var contosoTotal money.Quantity
		for _, inv := range invs {
			if inv.PartnerID == "contoso" {
				contosoTotal = inv.Total
			}
		}
		if contosoTotal.Sign() <= 0 {
			t.Fatalf("contoso's October draft: %+v", invs)
		}
		stmts, err := e.app.Billing.Statements(ctx, w.op, "tailspin", "2026-10")
		if err != nil || len(stmts) == 0 {
			t.Fatalf("tailspin's statements: %v %v", stmts, err)
		}
		tailspinCharge := money.Zero
		for _, st := range stmts {
			tailspinCharge = tailspinCharge.Add(st.Amount)
		}
		create := func(token, body string) budget.Budget {
			t.Helper()
			resp, out := e.raw("POST", "/v1/budgets", token, "application/json", strings.NewReader(body))
			var b budget.Budget
			if resp.StatusCode != 201 || json.Unmarshal([]byte(out), &b) != nil {
				t.Fatalf("create budget %s: %d %s", body, resp.StatusCode, out)
			}
			return b
		}
		// Contoso's budget is exactly its invoice so far: 50, 80 and 100 %
		// are crossed, 120 % is not; the forecast to the month's end is over.
		contoso := create(e.tokens["contoso"], fmt.Sprintf(`{"name":"October cap","currency":"USD","amount":"%s","thresholds":[{"percent":50},{"percent":80},{"percent":100},{"percent":120},{"percent":100,"basis":"forecast"}]}`, contosoTotal))
		// Tailspin's is twice its charges: 50 % only.
		tailspin := create(e.tokens["tailspin"], fmt.Sprintf(`{"name":"Proseware","currency":"EUR","amount":"%s","scope":{"kind":"customer","id":"%s"},"thresholds":[{"percent":50},{"percent":100}]}`,
			tailspinCharge.Mul(money.FromInt(2)), W.Proseware.Tenant))
		// The operator's, on Fabrikam's bill, is far above it.
		create(e.operator, `{"name":"Fabrikam","currency":"EUR","amount":"999999999","scope":{"kind":"partner","id":"fabrikam"}}`)

		second := buildApp(t, Options{DB: e.dsn, Clock: w.clk, Logger: e.app.Logger})
		for range 3 {
			var wg sync.WaitGroup
			for _, app := range []*App{e.app, second} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := app.Budgets.Evaluate(ctx, e.app.Logger); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
		}
		alerts := func(token string) []notify.Event {
			t.Helper()
			resp, out := e.raw("GET", "/v1/events?type=budget.threshold_crossed", token, "", nil)
			var page struct{ Value []notify.Event }
			if resp.StatusCode != 200 || json.Unmarshal([]byte(out), &page) != nil {
				t.Fatalf("events: %d %s", resp.StatusCode, out)
			}
			return page.Value
		}
		describe := func(evs []notify.Event) []string {
			var out []string
			for _, ev := range evs {
				var d struct {
					Name, Basis string
					Percent     money.Quantity
					Late        bool
				}
				_ = json.Unmarshal(ev.Data, &d)
				out = append(out, fmt.Sprintf("%s %s %s%% late=%v", d.Name, d.Basis, d.Percent, d.Late))
			}
			return out
		}
		if got, want := strings.Join(describe(alerts(e.tokens["contoso"])), "; "),
			"October cap actual 50% late=false; October cap actual 80% late=false; October cap actual 100% late=false; October cap forecast 100% late=false"; !sameSet(got, want) {
			t.Fatalf("contoso's alerts after 3 rounds of 2 instances:\n%s\nwant\n%s", got, want)
		}
		if got := describe(alerts(e.tokens["tailspin"])); len(got) != 1 || got[0] != "Proseware actual 50% late=false" {
			t.Fatalf("tailspin's alerts: %v", got)
		}
		if got := alerts(e.tokens["fabrikam"]); len(got) != 0 {
			t.Fatalf("fabrikam sees alerts of budgets not its own: %v", describe(got))
		}
		if got := alerts(e.operator); len(got) != 5 {
			t.Fatalf("the operator sees %d alerts, want all 5: %v", len(got), describe(got))
		}
		// The budget's spend is the invoice's total, as the partner reads both.
		var view struct {
			budget.Budget
			Status []budget.Status
		}
		resp, out := e.raw("GET", "/v1/budgets/"+contoso.ID, e.tokens["contoso"], "", nil)
		if resp.StatusCode != 200 || json.Unmarshal([]byte(out), &view) != nil || len(view.Status) != 2 {
			t.Fatalf("GET budget: %d %s", resp.StatusCode, out)
		}
		oct := view.Status[1]
		if oct.Period != "2026-10" {
			oct = view.Status[0]
		}
		if !oct.Spend.Equal(contosoTotal) || len(oct.Crossings) != 4 || !oct.Used.Equal(money.FromInt(100)) {
			t.Fatalf("October status: spend %s (invoice %s), %d crossings, %s%% used", oct.Spend, contosoTotal, len(oct.Crossings), oct.Used)
		}
		// Each sees only its own budgets.
		for _, c := range []struct{ token, id string }{{e.tokens["tailspin"], contoso.ID}, {e.tokens["fabrikam"], tailspin.ID}, {e.tokens["contoso"], tailspin.ID}} {
			if resp, out := e.raw("GET", "/v1/budgets/"+c.id, c.token, "", nil); resp.StatusCode != 404 || errCode(out) != "BudgetNotFound" {
				t.Fatalf("another's budget: %d %s", resp.StatusCode, out)
			}
		}

		// November 1st: October has ended and is not final (its grace
		// runs a day). Usage of October 31st arrives now and takes
		// Contoso past 120 %: a late alert, once.
		w.clk.Set(time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC))
		w.ingest(t, w.contoso, time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC), []usageRec{
			{"local-adatum", W.Adatum.Tenant, simulate.MeterBaseVM, "100000", W.Adatum.Subscription, "vm-late"},
		})
		for range 2 {
			for _, app := range []*App{e.app, second} {
				if err := app.Budgets.Evaluate(ctx, e.app.Logger); err != nil {
					t.Fatal(err)
				}
			}
		}
		got := describe(alerts(e.tokens["contoso"]))
		if len(got) != 5 || got[4] != "October cap actual 120% late=true" {
			t.Fatalf("after late usage contoso's alerts are %v", got)
		}
		if _, crossings, _ := e.app.Budgets.Counters(); crossings == 0 {
			t.Fatal("the first instance recorded no crossing at all")
		}
	})
}

// sameSet compares two "; "-joined lists in any order.
func sameSet(a, b string) bool {
	as, bs := strings.Split(a, "; "), strings.Split(b, "; ")
	if len(as) != len(bs) {
		return false
	}
	seen := map[string]int{}
	for _, x := range as {
		seen[x]++
	}
	for _, x := range bs {
		if seen[x]--; seen[x] < 0 {
			return false
		}
	}
	return true
}

// TestBudgetInputIsChecked: what a budget may not be is refused with a
// 4xx that changes nothing, and a scope outside the caller's view answers
// as one that does not exist.
func TestBudgetInputIsChecked(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "sqlite")
	for _, c := range []struct {
		token, body string
		status      int
		code        string
	}{
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"-1"}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"1e400"}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"1000000000000000"}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10.001"}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"XXX","amount":"10"}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"","currency":"USD","amount":"10"}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10","period":"weekly"}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10","period":"custom","from":"2026-09","to":"2026-07"}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10","thresholds":[{"percent":0}]}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10","thresholds":[{"percent":50},{"percent":50}]}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10","thresholds":[{"percent":50,"basis":"hope"}]}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10","scope":{"kind":"partner","id":"contoso"}}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10","scope":{"kind":"customer","id":"` + W.Relecloud.Tenant + `"}}`, 404, "CustomerNotFound"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10","scope":{"kind":"subscription","id":"` + W.Proseware.Subscription + `"}}`, 404, "SubscriptionNotFound"},
		{e.tokens["tailspin"], `{"name":"x","currency":"EUR","amount":"10","scope":{"kind":"meterCategory","id":"Storage"}}`, 400, "InvalidRequestContent"},
		{e.tokens["contoso"], `{"name":"x","currency":"USD","amount":"10","unknown":1}`, 400, ""},
	} {
		before := e.fingerprint()
		resp, out := e.raw("POST", "/v1/budgets", c.token, "application/json", strings.NewReader(c.body))
		if resp.StatusCode != c.status || (c.code != "" && errCode(out) != c.code) {
			t.Errorf("%s: %d %s, want %d %s", c.body, resp.StatusCode, out, c.status, c.code)
		}
		if after := e.fingerprint(); after != before {
			t.Errorf("%s was refused but changed the database", c.body)
		}
	}
	// The largest amount every stage holds, and a custom quarter.
	if resp, out := e.raw("POST", "/v1/budgets", e.tokens["contoso"], "application/json",
		strings.NewReader(`{"name":"max","currency":"USD","amount":"999999999999999.99","period":"custom","from":"2026-07","to":"2026-09"}`)); resp.StatusCode != 201 {
		t.Fatalf("the largest amount: %d %s", resp.StatusCode, out)
	}
}

// TestBudgetCLI: a partner keeps a budget with the CLI alone and reads
// where it stands.
func TestBudgetCLI(t *testing.T) {
	t.Parallel()
	w := newBillingWorld(t, "sqlite")
	env, run := cliAs(t, w.env.url, w.env.tokens["contoso"])
	var b budget.Budget
	if err := json.Unmarshal([]byte(run("budget", "create", "--name", "Adatum", "--currency", "USD", "--amount", "1",
		"--scope", "customer:"+W.Adatum.Tenant, "--thresholds", "50,100,150f", "-o", "json")), &b); err != nil || b.Scope.ID != W.Adatum.Tenant || len(b.Thresholds) != 3 {
		t.Fatalf("create: %+v %v", b, err)
	}
	if out := run("budget", "list"); !strings.Contains(out, b.ID) || !strings.Contains(out, "50%, 100%, 150% forecast") {
		t.Fatalf("list:\n%s", out)
	}
	if err := w.env.app.Budgets.Evaluate(t.Context(), w.env.app.Logger); err != nil {
		t.Fatal(err)
	}
	if out := run("budget", "show", b.ID); !strings.Contains(out, "2026-10") || !strings.Contains(out, "100% actual crossed") {
		t.Fatalf("show:\n%s", out)
	}
	if out := run("budget", "update", b.ID, "--amount", "2500.50"); !strings.Contains(out, "2500.5 USD") {
		t.Fatalf("update:\n%s", out)
	}
	if r := runCLI(t, env, "budget", "update", b.ID, "--thresholds", "ten"); r.code != 2 {
		t.Fatalf("a bad threshold: exit %d %s", r.code, r.stderr)
	}
	// Nothing is held in this world: the CLI reaches the hold and says so.
	if r := runCLI(t, env, "budget", "release", b.ID, W.Adatum.Tenant); r.code != 1 || !strings.Contains(r.stderr, "HoldNotFound") {
		t.Fatalf("budget release of nothing held: exit %d %s", r.code, r.stderr)
	}
	if out := run("budget", "delete", b.ID); !strings.Contains(out, "deleted") {
		t.Fatalf("delete:\n%s", out)
	}
}

// TestBudgetEvaluatorSurvivesKill9: the serving process is killed with
// SIGKILL inside the transaction that records a crossing and its event
// (fail point budget-crossed). Restarted, the evaluator records every
// threshold crossed exactly once: nothing half-written, nothing twice.
func TestBudgetEvaluatorSurvivesKill9(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and kills processes")
	}
	bin := e2e.BuildBinary(t, "../..")
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		w := newBillingWorld(t, backend)
		e := w.env
		amount, name, cur := "1", "tiny", "USD"
		ts := []budget.Threshold{{Percent: money.FromInt(50), Basis: budget.Actual}, {Percent: money.FromInt(100), Basis: budget.Actual}, {Percent: money.FromInt(200), Basis: budget.Actual}}
		b, err := e.app.Budgets.Create(ctx, auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "t"}, budget.Input{Name: &name, Currency: &cur, Amount: &amount, Thresholds: &ts})
		if err != nil {
			t.Fatal(err)
		}
		at := w.clk.Now().Format(time.RFC3339)
		dsn := e.dsn
		e.app.Close()
		args := []string{"--clock-start", at, "--auto-finalize=false", "--billing-interval", "200ms"}
		p := serveProc(t, bin, dsn, "op-budget", "budget-crossed", args...)
		p.Launch() // it may die at the fail point before it serves
		if err := p.WaitKilled(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		p = serveProc(t, bin, dsn, "op-budget", "", args...)
		p.Start()
		defer p.Kill9()
		var view struct {
			Status []budget.Status
		}
		for deadline := time.Now().Add(60 * time.Second); ; {
			resp, body := e2e.Call(t, http.DefaultClient, "GET", p.URL+"/v1/budgets/"+b.ID, "op-budget", "", nil)
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &view) != nil {
				t.Fatalf("GET budget: %d %s", resp.StatusCode, body)
			}
			n := 0
			for _, st := range view.Status {
				n += len(st.Crossings)
			}
			if n == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the restart %d of 3 thresholds are recorded: %s", n, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Second) // more rounds: still once each
		resp, body := e2e.Call(t, http.DefaultClient, "GET", p.URL+"/v1/events?type=budget.threshold_crossed", "op-budget", "", nil)
		var page struct{ Value []notify.Event }
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &page) != nil || len(page.Value) != 3 {
			t.Fatalf("events after the restart: %d %s", resp.StatusCode, body)
		}
	})
}

// TestBudgetActionDisablesAndRestores: a partner's budget with the disable
// action, crossed, has its customer's user subscriptions disabled on the
// stamp; raising it enables them again, and a spend past the new amount
// disables them again; a hold released by hand stays released for the
// period; the month's turn releases every hold. Each change is in the
// subscription's history under the budget's name, and another partner
// cannot release a hold.
func TestBudgetActionDisablesAndRestores(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		start := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
		clk, com, stack := newStackPair(t, backend, start, 0)
		if _, err := com.app.Billing.ImportPriceList(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, "test", []byte(testPriceListUSD), time.Time{}); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(stack.Handler)
		defer srv.Close()
		activateStack(t, com.app, stack, regKey(W.ContosoDefault, "azurestack", "held"), com.url, clk.Now())
		adatum1, adatum2, litware := randomGUID(), randomGUID(), randomGUID()
		onboardLocal(t, stack, W.Adatum.Tenant, adatum1)
		onboardLocal(t, stack, W.Adatum.Tenant, adatum2)
		onboardLocal(t, stack, W.Litware.Tenant, litware)
		for _, c := range []storetest.Customer{W.Adatum, W.Litware} {
			if _, err := com.csClient(W.ContosoDefault, com.tokens["contoso"]).Create(ctx, "azurestack", "held", c.Subscription, azurestack.CustomerSubscription{
				CustomerSubscriptionProperties: &azurestack.CustomerSubscriptionProperties{TenantID: to.StringPtr(c.Tenant)}}); err != nil {
				t.Fatal(err)
			}
		}
		rp := &simulate.Reporter{Base: srv.URL, Token: "stack-op", HTTP: srv.Client()}
		use := func(sub, id string, hours int) {
			t.Helper()
			hour := clock.HourStart(clk.Now())
			e := ev(id, sub, simulate.MeterBaseVM, fmt.Sprint(hours), hour, hour.Add(time.Hour), "/subscriptions/"+sub+"/resourceGroups/rg/providers/x/y/vm-"+id)
			if r, err := rp.Post(ctx, []usage.Event{e}); err != nil || r.Accepted != 1 {
				t.Fatalf("post %s: %+v %v", id, r, err)
			}
			clk.Advance(2*time.Hour + bridge.Grace)
			forwardAll(t, stack)
			if err := com.app.Ledger.Settle(ctx); err != nil {
				t.Fatal(err)
			}
		}
		clk.Set(start.Add(3 * 24 * time.Hour))
		use(adatum1, "a1", 1000) // 1,000 core hours: 8.00 USD
		use(litware, "l1", 1000)
		create := func(body string) budget.Budget {
			t.Helper()
			resp, out := com.raw("POST", "/v1/budgets", com.tokens["contoso"], "application/json", strings.NewReader(body))
			var b budget.Budget
			if resp.StatusCode != 201 || json.Unmarshal([]byte(out), &b) != nil {
				t.Fatalf("create budget %s: %d %s", body, resp.StatusCode, out)
			}
			return b
		}
		a := create(`{"name":"Adatum","currency":"USD","amount":"5","action":"disable","scope":{"kind":"customer","id":"` + W.Adatum.Tenant + `"}}`)
		l := create(`{"name":"Litware","currency":"USD","amount":"5","action":"disable","scope":{"kind":"subscription","id":"` + W.Litware.Subscription + `"}}`)
		if resp, out := com.raw("POST", "/v1/budgets", com.tokens["contoso"], "application/json",
			strings.NewReader(`{"name":"all","currency":"USD","amount":"5","action":"disable"}`)); resp.StatusCode != 400 {
			t.Fatalf("the disable action on a whole bill: %d %s", resp.StatusCode, out)
		}
		states := func() string {
			t.Helper()
			var out []string
			for _, sub := range []string{adatum1, adatum2, litware} {
				s, ok, err := stack.Tenancy.Lookup(ctx, sub)
				if err != nil || !ok {
					t.Fatal(err)
				}
				out = append(out, s.State)
			}
			return strings.Join(out, " ")
		}
		round := func() string {
			t.Helper()
			if err := com.app.Budgets.Evaluate(ctx, com.app.Logger); err != nil {
				t.Fatal(err)
			}
			if err := stack.Forwarder.SyncHolds(ctx); err != nil {
				t.Fatal(err)
			}
			return states()
		}
		if got := round(); got != "Disabled Disabled Disabled" {
			t.Fatalf("after both budgets were crossed: %s", got)
		}
		// Raised above the spend: enabled again, by the next sync.
		if resp, out := com.raw("PATCH", "/v1/budgets/"+a.ID, com.tokens["contoso"], "application/json", strings.NewReader(`{"amount":"20"}`)); resp.StatusCode != 200 {
			t.Fatalf("raise: %d %s", resp.StatusCode, out)
		}
		if got := round(); got != "Enabled Enabled Disabled" {
			t.Fatalf("after Adatum's budget was raised: %s", got)
		}
		// Another partner cannot release Contoso's hold; Contoso can.
		path := "/v1/budgets/" + l.ID + "/holds/" + W.Litware.Tenant + "/release"
		if resp, out := com.raw("POST", path, com.tokens["fabrikam"], "", nil); resp.StatusCode != 404 || errCode(out) != "BudgetNotFound" {
			t.Fatalf("fabrikam releases contoso's hold: %d %s", resp.StatusCode, out)
		}
		// In the portal: the form without its CSRF field changes nothing;
		// with it, the hold is released.
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar}
		if resp := postLogin(t, browser, com.url, url.Values{"token": {com.tokens["contoso"]}}); resp.StatusCode != 200 {
			t.Fatalf("sign in: %d", resp.StatusCode)
		}
		_, page := e2e.Call(t, browser, "GET", com.url+"/portal/budgets", "", "", nil)
		form := "/portal/budgets/" + l.ID + "/holds/" + W.Litware.Tenant + "/release"
		m := csrfField.FindStringSubmatch(page)
		if m == nil || !strings.Contains(page, form) {
			t.Fatalf("the budgets page offers no release of Litware's hold:\n%s", page)
		}
		if resp, err := browser.PostForm(com.url+form, url.Values{}); err != nil || resp.StatusCode != 403 {
			t.Fatalf("a release without CSRF: %v %v", resp, err)
		}
		if got := round(); got != "Enabled Enabled Disabled" {
			t.Fatalf("after a refused release: %s", got)
		}
		if resp, err := browser.PostForm(com.url+form, url.Values{"csrf": {m[1]}}); err != nil || resp.StatusCode != 200 || resp.Request.URL.Path != "/portal/budgets" {
			t.Fatalf("release in the portal: %v %v", resp, err)
		}
		if got := round(); got != "Enabled Enabled Enabled" {
			t.Fatalf("after Litware's hold was released by hand: %s", got)
		}
		// More usage: Adatum passes its new amount and is held again;
		// Litware, released by hand, stays enabled this month.
		use(adatum2, "a2", 2000)
		use(litware, "l2", 1000)
		if got := round(); got != "Disabled Disabled Enabled" {
			t.Fatalf("after Adatum passed its raised budget: %s", got)
		}
		// August: every hold ends with July.
		clk.Set(time.Date(2026, 8, 1, 1, 0, 0, 0, time.UTC))
		if got := round(); got != "Enabled Enabled Enabled" {
			t.Fatalf("after the month turned: %s", got)
		}
		hist, err := stack.Tenancy.History(ctx, auth.Principal{Role: auth.RoleStackOperator, TokenID: "t"}, stack.Tenancy.Provider(), adatum1)
		if err != nil {
			t.Fatal(err)
		}
		var actors []string
		for _, h := range hist {
			actors = append(actors, h.Actor)
		}
		want := "commerce:budget/" + a.ID
		if got := strings.Join(actors, " | "); strings.Count(got, want+" released") != 2 || strings.Count(got, want) != 4 {
			t.Fatalf("adatum's subscription history: %s", got)
		}
		var view struct{ Holds []budget.Hold }
		resp, out := com.raw("GET", "/v1/budgets/"+a.ID, com.tokens["contoso"], "", nil)
		if resp.StatusCode != 200 || json.Unmarshal([]byte(out), &view) != nil || len(view.Holds) != 1 || view.Holds[0].ReleaseReason != "the budget's period ended" {
			t.Fatalf("adatum's holds: %d %s", resp.StatusCode, out)
		}
	})
}
