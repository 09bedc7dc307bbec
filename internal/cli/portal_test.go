package cli

import (
	"encoding/csv"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/demo"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// portalWorld is the demo world served over HTTP with its usage forwarded.
type portalWorld struct {
	app    *App
	url    string
	dsn    string
	w      demo.World
	direct demo.DirectWorld
}

func newPortalWorld(t *testing.T, backend string, days int) *portalWorld {
	t.Helper()
	return newPortalWorldAt(t, backend, days, nil)
}

// newPortalWorldAt is newPortalWorld on clock clk (the real clock when nil).
func newPortalWorldAt(t *testing.T, backend string, days int, clk *clock.Clock) *portalWorld {
	t.Helper()
	ctx := t.Context()
	dsn := storetest.DSN(t, backend)
	app := buildApp(t, Options{DB: dsn, Logger: storetest.Logger(), Clock: clk})
	srv := httptest.NewServer(app.Handler)
	t.Cleanup(srv.Close)
	w, err := seedDemo(ctx, app, dsn, srv.URL, days, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Contoso's stamp, the direct CSP's path, on a stack of its own.
	contoso, dw, err := seedDirectDemo(ctx, app, dsn, filepath.Join(t.TempDir(), "contoso-stamp.db"), srv.URL, days, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { contoso.Close() })
	for _, f := range []*bridge.Forwarder{app.Forwarder, contoso.Forwarder} {
		for {
			n, err := f.Step(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
	}
	return &portalWorld{app: app, url: srv.URL, dsn: dsn, w: w, direct: dw}
}

// signIn returns a client with a portal session for token.
func (pw *portalWorld) signIn(t *testing.T, token string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp := postLogin(t, c, pw.url, url.Values{"token": {token}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path == "/portal/login" {
		t.Fatalf("sign-in: status %d at %s", resp.StatusCode, resp.Request.URL)
	}
	return c
}

var loginCSRF = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// postLogin opens the sign-in form, as a browser does (it sets the form's
// CSRF cookie), and posts form with the form's CSRF field.
func postLogin(t *testing.T, c *http.Client, base string, form url.Values) *http.Response {
	t.Helper()
	_, page := e2e.Call(t, c, "GET", base+"/portal/login", "", "", nil)
	m := loginCSRF.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the sign-in form has no CSRF field: %.300s", page)
	}
	form.Set("csrf", m[1])
	resp, err := c.PostForm(base+"/portal/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// portalPages are every page of the portal without parameters.
var portalPages = []string{"/portal/overview", "/portal/partners", "/portal/customers", "/portal/registrations", "/portal/pricing", "/portal/ingestion", "/portal/usage",
	"/portal/invoices", "/portal/statements", "/portal/stack/overview", "/portal/stack/tenants", "/portal/stack/meters", "/portal/stack/usage", "/portal/stack/bridge",
	"/portal/my/overview", "/portal/my/usage", "/portal/my/usage.csv", "/portal/quarantine", "/portal/budgets", "/portal/alerts", "/portal/webhooks"}

// TestPortalScope signs in as every role and reads every page: each role
// gets exactly its pages, and no page shows a customer, subscription or
// tenant outside the principal's scope.
func TestPortalScope(t *testing.T) {
	t.Parallel()
	for _, backend := range storetest.Backends {
		t.Run(backend, func(t *testing.T) {
			pw := newPortalWorld(t, backend, 3)
			reg := "/portal/registrations/" + demo.FabrikamCSPSS + "/" + demo.ResourceGroup + "/" + demo.RegName
			allowed := map[string][]string{
				"operator":       {"/portal/overview", "/portal/partners", "/portal/customers", "/portal/registrations", "/portal/pricing", "/portal/ingestion", "/portal/usage", "/portal/invoices", "/portal/stack/overview", "/portal/stack/tenants", "/portal/stack/meters", "/portal/stack/usage", "/portal/stack/bridge", "/portal/quarantine", "/portal/budgets", "/portal/alerts", "/portal/webhooks", reg},
				"fabrikam":       {"/portal/overview", "/portal/customers", "/portal/registrations", "/portal/pricing", "/portal/usage", "/portal/invoices", "/portal/statements", "/portal/budgets", "/portal/alerts", "/portal/webhooks", reg},
				"contoso":        {"/portal/overview", "/portal/customers", "/portal/registrations", "/portal/pricing", "/portal/usage", "/portal/invoices", "/portal/statements", "/portal/budgets", "/portal/alerts", "/portal/webhooks"},
				"tailspin":       {"/portal/overview", "/portal/customers", "/portal/registrations", "/portal/usage", "/portal/statements", "/portal/budgets", "/portal/alerts", "/portal/webhooks"},
				"wingtip":        {"/portal/overview", "/portal/customers", "/portal/registrations", "/portal/usage", "/portal/statements", "/portal/budgets", "/portal/alerts", "/portal/webhooks"},
				"stack-operator": {"/portal/stack/overview", "/portal/stack/tenants", "/portal/stack/meters", "/portal/stack/usage", "/portal/stack/bridge", "/portal/quarantine"},
				"tenant":         {"/portal/my/overview", "/portal/my/usage", "/portal/my/usage.csv"},
			}
			// Who must never appear on whose pages.
			var tailspinCustomers, wingtipCustomers, contosoCustomers []string
			for i := range pw.w.Sim.Tenants {
				if i%2 == 0 {
					tailspinCustomers = append(tailspinCustomers, demo.Name(i))
				} else {
					wingtipCustomers = append(wingtipCustomers, demo.Name(i))
				}
			}
			for i := 0; i < demo.ContosoCount; i++ {
				contosoCustomers = append(contosoCustomers, demo.Name(len(pw.w.Sim.Tenants)+i))
			}
			var otherTenants []string
			for _, tn := range pw.w.Sim.Tenants[1:] {
				otherTenants = append(otherTenants, tn.SubscriptionID, tn.DirectoryID)
			}
			forbidden := map[string][]string{
				"tailspin": append(append([]string{}, wingtipCustomers...), contosoCustomers...),
				"wingtip":  append(append([]string{}, tailspinCustomers...), contosoCustomers...),
				"contoso":  append(append([]string{demo.FabrikamCSPSS}, tailspinCustomers...), wingtipCustomers...),
				"fabrikam": append([]string{demo.ContosoCSPSS}, contosoCustomers...),
				"tenant":   otherTenants,
			}
			// Each must see its own: proof the page showed data at all.
			mustSee := map[string]map[string]string{
				"tailspin": {"/portal/customers": tailspinCustomers[0]},
				"wingtip":  {"/portal/customers": wingtipCustomers[0]},
				"contoso":  {"/portal/customers": contosoCustomers[0]},
				"fabrikam": {"/portal/customers": wingtipCustomers[0], reg: demo.Name(0), "/portal/invoices": "SB-"},
				"operator": {"/portal/partners": "Tailspin Cloud", "/portal/ingestion": "records", "/portal/stack/tenants": demo.Name(3)},
				"tenant":   {"/portal/my/usage.csv": pw.w.Tenant},
			}
			for key, pages := range allowed {
				c := pw.signIn(t, pw.w.SignIn(key))
				ok := map[string]bool{}
				for _, pg := range pages {
					ok[pg] = true
				}
				for _, pg := range append(append([]string{}, portalPages...), reg) {
					resp, body := e2e.Call(t, c, "GET", pw.url+pg, "", "", nil)
					status := resp.StatusCode
					switch {
					case ok[pg] && status != http.StatusOK:
						t.Errorf("%s %s: status %d, want 200: %.300s", key, pg, status, body)
					case !ok[pg] && status != http.StatusForbidden && status != http.StatusNotFound:
						t.Errorf("%s %s: status %d, want 403 or 404", key, pg, status)
					}
					if status != http.StatusOK {
						continue
					}
					for _, bad := range forbidden[key] {
						if strings.Contains(body, html.EscapeString(bad)) || strings.Contains(body, bad) {
							t.Errorf("%s %s shows %q, which is outside its scope", key, pg, bad)
						}
					}
					if want, ok := mustSee[key][pg]; ok && !strings.Contains(body, html.EscapeString(want)) {
						t.Errorf("%s %s does not show %q", key, pg, want)
					}
				}
			}
			// Without a session every page sends the browser to sign in.
			noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for _, pg := range append(append([]string{}, portalPages...), reg) {
				resp, err := noRedirect.Get(pw.url + pg)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/portal/login") {
					t.Errorf("anonymous %s: status %d to %q, want 303 to sign-in", pg, resp.StatusCode, resp.Header.Get("Location"))
				}
			}
		})
	}
}

// TestPortalForms proves the portal's state-changing forms are protected:
// without the CSRF field nothing changes, a reseller cannot add customers to
// its provider's registration, and a bad token cannot sign in.
func TestPortalForms(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 1)
	ctx := t.Context()
	reg := "/portal/registrations/" + demo.FabrikamCSPSS + "/" + demo.ResourceGroup + "/" + demo.RegName
	unregistered := demo.Registered // the first tenant not registered by the demo
	form := url.Values{"customerSubscription": {demo.CustomerSub(unregistered)}, "tenantId": {pw.w.Sim.Tenants[unregistered].DirectoryID}}
	count := func() int {
		cs, _, err := pw.app.Registrations.ListCustomerSubscriptions(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, pw.w.RegKey, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}
	before := count()
	fab := pw.signIn(t, pw.w.SignIn("fabrikam"))
	resp, err := fab.PostForm(pw.url+reg+"/customers", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || count() != before {
		t.Fatalf("without CSRF: status %d, %d mappings (had %d); want 403 and no change", resp.StatusCode, count(), before)
	}
	ts := pw.signIn(t, pw.w.SignIn("tailspin"))
	_, page := e2e.Call(t, ts, "GET", pw.url+"/portal/customers", "", "", nil)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF field on the reseller's page")
	}
	form.Set("csrf", m[1])
	resp, err = ts.PostForm(pw.url+reg+"/customers", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || count() != before {
		t.Fatalf("reseller adding to its provider's registration: status %d, want 404 RegistrationNotFound and no change", resp.StatusCode)
	}
	_, page = e2e.Call(t, fab, "GET", pw.url+reg, "", "", nil)
	m = csrfField.FindStringSubmatch(page)
	form.Set("csrf", m[1])
	resp, err = fab.PostForm(pw.url+reg+"/customers", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || count() != before+1 || !strings.Contains(string(body), `id="added"`) {
		t.Fatalf("partner adding an end customer: status %d, %d mappings (had %d)", resp.StatusCode, count(), before)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp = postLogin(t, c, pw.url, url.Values{"token": {"sbk_not_a_token"}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token sign-in: status %d, want 401", resp.StatusCode)
	}
	// A redirect after sign-in never leaves the portal.
	resp = postLogin(t, &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, pw.url,
		url.Values{"token": {pw.w.SignIn("tenant")}, "next": {"//evil.example/"}})
	if loc := resp.Header.Get("Location"); loc != "/portal/" {
		t.Fatalf("open redirect after sign-in: Location %q", loc)
	}
}

var invoiceRow = regexp.MustCompile(`<tr><td>(\d+)</td><td>([^<]*)</td><td>(?:[^<]*<br>)?<code class="id">([^<]*)</code></td><td>([^<]*)(?:<span[^>]*>[^<]*</span>)?</td>(?:<td>[^<]*</td>)?<td class="num">([0-9.]+) ([^<]+)</td><td class="num">([0-9.]+)</td><td class="num">([0-9.,]+) ([A-Z]{3})(?:<div class="note">([^<]*)</div>)?</td><td><a class="daily" href="([^"]*)">Daily usage</a></td></tr>`)

// TestPortalInvoicePageAddsUp: the invoice page showed storage quantities
// in GB-hours under the GB/Month label ("353740.483 1 GB/Month × 0.006 =
// 2.91 USD"), so a partner who checked one line by hand found the bill
// wrong. Every line of the page must now be quantity × unit price, rounded
// to the amount it shows, and the page must be the CSV, line for line.
func TestPortalInvoicePageAddsUp(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 3)
	c := pw.signIn(t, pw.w.SignIn("fabrikam"))
	number := "SB-" + pw.app.Clock.Now().Format("200601") + "-fabrikam"
	resp, page := e2e.Call(t, c, "GET", pw.url+"/portal/invoices/"+number, "", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("invoice page: %d", resp.StatusCode)
	}
	rows := invoiceRow.FindAllStringSubmatch(page, -1)
	if len(rows) < 5 {
		t.Fatalf("found %d lines on the invoice page", len(rows))
	}
	_, file := e2e.Call(t, c, "GET", pw.url+"/portal/invoices/"+number+"/download?format=csv", "", "", nil)
	recs, err := csv.NewReader(strings.NewReader(file)).ReadAll()
	if err != nil || len(recs) != len(rows)+1 {
		t.Fatalf("the CSV has %d lines, the page %d (%v)", len(recs)-1, len(rows), err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	monthly := 0
	for i, r := range rows {
		customer, sub, meter, note := html.UnescapeString(r[2]), r[3], html.UnescapeString(r[4]), html.UnescapeString(r[10])
		qty, unit, price, amount := money.MustQuantity(r[5]), html.UnescapeString(r[6]), money.MustQuantity(r[7]), money.MustQuantity(strings.ReplaceAll(r[8], ",", ""))
		if got := qty.Mul(price).Round(2); !got.Equal(amount) {
			t.Errorf("line %s: %s %s × %s = %s, but the page says %s", r[1], qty, unit, price, got, amount)
		}
		if strings.Contains(unit, "Month") {
			monthly++
		}
		csvLine := recs[i+1]
		// A newcomer could not tell meters apart ("1 Core" for Base VM,
		// Windows VM and App Service), nor subscriptions (one cut prefix),
		// nor whose a line was (a blank customer), nor why a line was 0.
		if want := csvLine[col["MeterCategory"]] + " / " + csvLine[col["MeterSubCategory"]] + " / " + csvLine[col["MeterName"]]; meter != want {
			t.Errorf("line %s: the page names the meter %q, want %q", r[1], meter, want)
		}
		if sub != csvLine[col["SubscriptionId"]] {
			t.Errorf("line %s: the page shows subscription %q, the CSV %q", r[1], sub, csvLine[col["SubscriptionId"]])
		}
		if customer == "" {
			t.Errorf("line %s: no customer shown", r[1])
		}
		if amount.IsZero() != (note != "") {
			t.Errorf("line %s: amount %s with note %q: a zero amount, and only one, says why", r[1], amount, note)
		}
		if csvLine[col["LineNo"]] != r[1] || !money.MustQuantity(csvLine[col["Quantity"]]).Equal(qty) || csvLine[col["UnitOfMeasure"]] != unit ||
			!money.MustQuantity(csvLine[col["UnitPrice"]]).Equal(price) || !money.MustQuantity(csvLine[col["Amount"]]).Equal(amount) {
			t.Errorf("line %s differs: page %s %s × %s = %s; CSV %v", r[1], qty, unit, price, amount, csvLine)
		}
	}
	if monthly == 0 {
		t.Fatal("no line priced per month: the case the review found is not covered")
	}
	// Each customer's lines end in its subtotal, and the subtotals make the
	// invoice's total.
	subtotal := regexp.MustCompile(`<tr class="subtotal"><th colspan="\d">([^<]*): subtotal</th><th class="num">([0-9.,]+) [A-Z]{3}</th>`)
	perCustomer := map[string]money.Quantity{}
	for _, r := range rows {
		c := html.UnescapeString(r[2])
		amount := money.MustQuantity(strings.ReplaceAll(r[8], ",", ""))
		if q, ok := perCustomer[c]; ok {
			perCustomer[c] = q.Add(amount)
		} else {
			perCustomer[c] = amount
		}
	}
	subs := subtotal.FindAllStringSubmatch(page, -1)
	sum := money.Zero
	for _, m := range subs {
		got := money.MustQuantity(strings.ReplaceAll(m[2], ",", ""))
		if want := perCustomer[html.UnescapeString(m[1])]; !got.Equal(want) {
			t.Errorf("%s: subtotal %s, its lines add up to %s", m[1], got, want)
		}
		sum = sum.Add(got)
	}
	inv, err := pw.app.Billing.Invoice(t.Context(), auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "t"}, number)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) < len(perCustomer) || !sum.Equal(inv.Total) {
		t.Errorf("%d customer subtotals for %d customers add up to %s; the invoice's total is %s", len(subs), len(perCustomer), sum, inv.Total)
	}
	if !strings.Contains(page, "Late usage") || !strings.Contains(page, "tier thresholds count") {
		t.Fatal("the invoice page does not state its rules")
	}
}

// TestPortalDeadEnds: pages offer no month that has not begun, and no menu
// item that is empty by construction (a reseller's registrations).
func TestPortalDeadEnds(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 1)
	now := pw.app.Clock.Now()
	this, last, next := clock.Period(now), clock.Period(clock.MonthStart(now).AddDate(0, -1, 0)), clock.Period(clock.NextMonth(now))
	fab := pw.signIn(t, pw.w.SignIn("fabrikam"))
	for _, page := range []string{"/portal/invoices", "/portal/statements"} {
		_, body := e2e.Call(t, fab, "GET", pw.url+page, "", "", nil)
		if strings.Contains(body, "period="+next) || !strings.Contains(body, "period="+last) {
			t.Errorf("%s in %s: links to the month that has not begun (%s) or not to the last (%s)", page, this, next, last)
		}
		_, body = e2e.Call(t, fab, "GET", pw.url+page+"?period="+last, "", "", nil)
		if !strings.Contains(body, "period="+this) {
			t.Errorf("%s?period=%s does not link on to %s", page, last, this)
		}
	}
	_, body := e2e.Call(t, fab, "GET", pw.url+"/portal/", "", "", nil)
	if !strings.Contains(body, `href="/portal/registrations"`) {
		t.Error("a partner's menu lacks Registrations")
	}
	ts := pw.signIn(t, pw.w.SignIn("tailspin"))
	_, body = e2e.Call(t, ts, "GET", pw.url+"/portal/", "", "", nil)
	if strings.Contains(body, `href="/portal/registrations"`) {
		t.Error("a reseller's menu offers Registrations, which it can never have")
	}
}

// TestPortalRemoveTenant: a partner removes an end customer in the portal,
// confirming first; without the CSRF field, or as a reseller on its
// provider's registration, nothing changes.
func TestPortalRemoveTenant(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 1)
	ctx := t.Context()
	reg := "/portal/registrations/" + demo.FabrikamCSPSS + "/" + demo.ResourceGroup + "/" + demo.RegName
	live := func() []string {
		cs, _, err := pw.app.Registrations.ListCustomerSubscriptions(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, pw.w.RegKey, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
		return ids
	}
	before := live()
	if len(before) == 0 {
		t.Fatal("the demo registered no tenants")
	}
	victim := before[0]
	remove := reg + "/customers/" + victim + "/remove"
	post := func(c *http.Client, page string, form url.Values) (int, string) {
		t.Helper()
		_, p := e2e.Call(t, c, "GET", pw.url+page, "", "", nil)
		if m := csrfField.FindStringSubmatch(p); m != nil && form.Get("csrf") == "" {
			form.Set("csrf", m[1])
		}
		resp, err := (&http.Client{Jar: c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).PostForm(pw.url+remove, form)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b) + resp.Header.Get("Location")
	}
	fab := pw.signIn(t, pw.w.SignIn("fabrikam"))
	if code, _ := post(fab, reg, url.Values{"csrf": {"forged"}, "confirm": {"yes"}}); code != http.StatusForbidden || len(live()) != len(before) {
		t.Fatalf("without CSRF: %d, %d tenants (had %d)", code, len(live()), len(before))
	}
	ts := pw.signIn(t, pw.w.SignIn("tailspin"))
	if code, _ := post(ts, "/portal/customers", url.Values{"confirm": {"yes"}}); code != http.StatusNotFound || len(live()) != len(before) {
		t.Fatalf("a reseller removing from its provider's registration: %d, %d tenants (had %d); want 404 and no change", code, len(live()), len(before))
	}
	code, body := post(fab, reg, url.Values{})
	if code != http.StatusOK || !strings.Contains(body, `id="confirm-remove"`) || len(live()) != len(before) {
		t.Fatalf("the first click: %d, %d tenants (had %d); want the confirmation and no change", code, len(live()), len(before))
	}
	code, body = post(fab, reg, url.Values{"confirm": {"yes"}})
	if code != http.StatusSeeOther || !strings.Contains(body, "removed="+victim) || slices.Contains(live(), victim) || len(live()) != len(before)-1 {
		t.Fatalf("confirmed: %d %q; tenants %v", code, body, live())
	}
	_, page := e2e.Call(t, fab, "GET", pw.url+reg+"?removed="+victim, "", "", nil)
	if !strings.Contains(page, `id="removed"`) {
		t.Error("the registration page does not say what was removed")
	}
}

// TestPortalStatementOpens: a statement opens to its lines, which add up to
// the total the list shows; another's account answers as missing.
func TestPortalStatementOpens(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 2)
	fab := pw.signIn(t, pw.w.SignIn("fabrikam"))
	_, list := e2e.Call(t, fab, "GET", pw.url+"/portal/statements", "", "", nil)
	links := regexp.MustCompile(`href="(/portal/statements/([^?"]+)\?period=[0-9-]+)"`).FindAllStringSubmatch(list, -1)
	if len(links) == 0 {
		t.Fatal("the statements page links to no statement")
	}
	charged := regexp.MustCompile(`<td class="num">[^<]*</td><td class="num">[^<]*</td><td class="num">([0-9.,]+) [A-Z]{3}</td><td class="num">[^<]*</td><td class="num">[^<]*</td><td>`)
	for _, l := range links {
		resp, page := e2e.Call(t, fab, "GET", pw.url+html.UnescapeString(l[1]), "", "", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="statementlines"`) {
			t.Fatalf("%s: %d", l[1], resp.StatusCode)
		}
		sum, rows := money.Zero, charged.FindAllStringSubmatch(page, -1)
		if len(rows) == 0 {
			t.Fatalf("%s: no lines", l[2])
		}
		for _, m := range rows {
			sum = sum.Add(money.MustQuantity(strings.ReplaceAll(m[1], ",", "")))
		}
		total := regexp.MustCompile(`<dd id="charged">([0-9.,]+) [A-Z]{3}</dd>`).FindStringSubmatch(page)
		if total == nil || !sum.Equal(money.MustQuantity(strings.ReplaceAll(total[1], ",", ""))) {
			t.Errorf("%s: lines sum to %s, the statement says %v", l[2], sum, total)
		}
	}
	ts := pw.signIn(t, pw.w.SignIn("tailspin"))
	for _, l := range links {
		if resp, _ := e2e.Call(t, ts, "GET", pw.url+html.UnescapeString(l[1]), "", "", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("the reseller opened its provider's statement of %s: %d", l[2], resp.StatusCode)
		}
	}
}

// TestPortalOverview: the first page of a partner is what the month has
// come to, and the figure is its invoice's; a reseller's is what it charges
// its customers; a tenant has none.
func TestPortalOverview(t *testing.T) {
	t.Parallel()
	// A clock that stands still: the page and the test compute the run-rate
	// forecast at the same instant, however slowly the page renders (it took
	// 33 s under the race detector once, and the forecast moved).
	clk := clock.Manual(time.Now().UTC().Truncate(time.Second))
	pw := newPortalWorldAt(t, "sqlite", 2, clk)
	ctx := t.Context()
	fab := pw.signIn(t, pw.w.SignIn("fabrikam"))
	resp, page := e2e.Call(t, fab, "GET", pw.url+"/portal/", "", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="kpis"`) {
		t.Fatalf("a partner's first page is not the overview: %d", resp.StatusCode)
	}
	now := pw.app.Clock.Now()
	invs, err := pw.app.Billing.Invoices(ctx, auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "t"}, clock.Period(now))
	if err != nil || len(invs) != 1 {
		t.Fatalf("invoices: %v %d", err, len(invs))
	}
	soFar := billing.FormatAmountGrouped(invs[0].Total, invs[0].Currency) + " " + invs[0].Currency
	if !strings.Contains(page, `<div class="value">`+soFar+`</div>`) {
		t.Errorf("the overview does not show the invoice's %s", soFar)
	}
	start := clock.MonthStart(now)
	forecast := invs[0].Total.MulFrac(int64(clock.NextMonth(now).Sub(start)/time.Second), int64(now.Sub(start)/time.Second), 2)
	if !strings.Contains(page, billing.FormatAmountGrouped(forecast, invs[0].Currency)) {
		t.Errorf("the overview's forecast is not the run rate %s", forecast)
	}
	if !strings.Contains(page, `id="top"`) || !strings.Contains(page, "/portal/invoices/"+invs[0].Number) {
		t.Error("the overview lists no customers linked to the invoice")
	}
	// The month-against-month chart's bars (read through the rating index)
	// add up to the records themselves (read one by one).
	fabP := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "t"}
	subs, err := pw.app.Directory.ListSubscriptions(ctx, fabP)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range subs {
		ids = append(ids, strings.ToLower(x.ID))
	}
	totals, err := pw.app.Ledger.Totals(ctx, ids, clock.MonthStart(now), clock.NextMonth(now))
	if err != nil {
		t.Fatal(err)
	}
	wantBase := money.Zero
	for _, x := range totals {
		if strings.EqualFold(x.BillingMeterID, "9c23489b-c01c-5893-b898-412bd252b0db") {
			wantBase = wantBase.Add(x.Quantity)
		}
	}
	this, _ := trend(t, page)
	gotBase := money.Zero
	for _, v := range this {
		if v != nil {
			gotBase = gotBase.Add(*v)
		}
	}
	if wantBase.IsZero() || !gotBase.Equal(wantBase) {
		t.Errorf("the overview's base VM bars add up to %s this month; the records to %s", gotBase, wantBase)
	}
	ts := pw.signIn(t, pw.w.SignIn("tailspin"))
	_, page = e2e.Call(t, ts, "GET", pw.url+"/portal/overview", "", "", nil)
	if !strings.Contains(page, "what you charge your customers") || !strings.Contains(page, "/portal/statements/") {
		t.Error("a reseller's overview is not its statements")
	}
	// A reseller's first question after its charge is its margin.
	sts, err := pw.app.Billing.Statements(ctx, auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "t"}, "tailspin", clock.Period(now))
	if err != nil || len(sts) == 0 {
		t.Fatalf("tailspin's statements: %v %d", err, len(sts))
	}
	margin := money.Zero
	for _, st := range sts {
		margin = margin.Add(st.Margin)
	}
	if want := `id="margin-USD">` + billing.FormatAmountGrouped(margin, "USD") + " USD<"; !strings.Contains(page, want) {
		t.Errorf("the reseller's overview does not show its margin %s", margin)
	}
	if !strings.Contains(page, `id="topmeters"`) {
		t.Error("the reseller's overview lists no meters")
	}
	ten := pw.signIn(t, pw.w.SignIn("tenant"))
	if resp, _ := e2e.Call(t, ten, "GET", pw.url+"/portal/overview", "", "", nil); resp.StatusCode == http.StatusOK {
		t.Error("a tenant sees CSP billing on the overview")
	}
}

// TestPortalAttention: the overview says what needs acting on, each role
// only what is its own: a stamp gone quiet is its partner's and the
// operator's, not another partner's; resellers have no such section.
func TestPortalAttention(t *testing.T) {
	t.Parallel()
	clk := clock.Manual(time.Now().UTC().Truncate(time.Second))
	pw := newPortalWorldAt(t, "sqlite", 1, clk)
	overview := func(who string) string {
		c := pw.signIn(t, pw.w.SignIn(who))
		resp, page := e2e.Call(t, c, "GET", pw.url+"/portal/overview", "", "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s's overview: %d", who, resp.StatusCode)
		}
		return page
	}
	for _, who := range []string{"operator", "fabrikam", "contoso"} {
		if page := overview(who); !strings.Contains(page, `id="attention"`) || !strings.Contains(page, "Nothing needs your attention") {
			t.Errorf("%s's overview, with every stamp reporting and everything priced: %s", who, section(page, `id="attention"`))
		}
	}
	clk.Advance(3 * time.Hour)
	quiet := "Stamp " + demo.RegName + " has sent no usage since"
	if page := overview("fabrikam"); !strings.Contains(page, quiet) || !strings.Contains(page, `href="/portal/registrations"`) {
		t.Errorf("the stamp's partner is not told it went quiet: %s", section(page, `id="attention"`))
	}
	if page := overview("operator"); !strings.Contains(page, quiet) || !strings.Contains(page, `<a href="/portal/ingestion">See the stamp</a>`) {
		t.Errorf("the operator is not told the stamp went quiet: %s", section(page, `id="attention"`))
	}
	// Contoso hears about its own stamp, never about Fabrikam's.
	if page := overview("contoso"); strings.Contains(page, demo.RegName) || !strings.Contains(page, "Stamp "+demo.ContosoRegName+" has sent no usage since") {
		t.Errorf("contoso's attention: %s", section(page, `id="attention"`))
	}
	if page := overview("fabrikam"); strings.Contains(page, demo.ContosoRegName) {
		t.Errorf("fabrikam is told about contoso's stamp: %s", section(page, `id="attention"`))
	}
	if page := overview("tailspin"); strings.Contains(page, `id="attention"`) {
		t.Error("a reseller's overview has an attention section")
	}
}

// section is the part of page from marker on, for failure messages.
func section(page, marker string) string {
	if i := strings.Index(page, marker); i >= 0 {
		return page[i:min(len(page), i+600)]
	}
	return "(no " + marker + ")"
}

// TestDemoRestartKeepsItsWord: each start of the demo prints one set of
// sign-in tokens and revokes the last start's, so restarts do not pile up
// live 30-day tokens; and its banner counts the end customers registered
// now, not the ones it seeded.
func TestDemoRestartKeepsItsWord(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 1)
	ctx := t.Context()
	first := pw.w.SignIn("fabrikam")
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
	if _, err := pw.app.Registrations.DeleteCustomerSubscription(ctx, op, pw.w.RegKey, demo.CustomerSub(0), registration.Precondition{}); err != nil {
		t.Fatal(err)
	}
	again, err := seedDemo(ctx, pw.app, pw.dsn, pw.url, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pw.app.Auth.Authenticate(ctx, first); err == nil {
		t.Error("the last start's token still signs in")
	}
	if _, err := pw.app.Auth.Authenticate(ctx, again.SignIn("fabrikam")); err != nil {
		t.Errorf("this start's token: %v", err)
	}
	toks, err := pw.app.Auth.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, tk := range toks {
		if tk.Name == "demo sign-in" && tk.RevokedAt == nil {
			live++
		}
	}
	if live != len(again.Tokens) {
		t.Errorf("%d live demo tokens after a restart, want the %d printed", live, len(again.Tokens))
	}
	if again.Mapped != demo.Registered-1 || !strings.Contains(again.Describe(pw.url), fmt.Sprintf("%d of its", demo.Registered-1)) {
		t.Errorf("the banner counts %d registered customers, want %d", again.Mapped, demo.Registered-1)
	}
}

// TestDemoDirectCSP: the demo shows the direct CSP's path as well as the
// indirect one: Contoso's own stamp forwards its customers' usage, and
// Contoso gets a finalized invoice and a draft with no reseller between,
// its customers named, none of Fabrikam's lines, none of its on Fabrikam's.
func TestDemoDirectCSP(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clk := clock.Manual(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	pw := newPortalWorldAt(t, "sqlite", 10, clk)
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
	if _, err := pw.app.Billing.Finalize(ctx, op, "2026-11"); err != nil {
		t.Fatal(err)
	}
	contoso := auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "t"}
	fabrikam := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "t"}
	contosoSubs := map[string]bool{}
	for i := range pw.direct.Sim.Tenants {
		contosoSubs[demo.ContosoSub(i)] = true
	}
	for _, c := range []struct{ period, status string }{{"2026-11", "final"}, {"2026-12", "draft"}} {
		invs, err := pw.app.Billing.Invoices(ctx, contoso, c.period)
		if err != nil || len(invs) != 1 || invs[0].Status != c.status || invs[0].Total.Sign() <= 0 {
			sum, _ := pw.app.Billing.Period(ctx, op, c.period)
			st, _ := pw.app.Forwarder.Status(ctx)
			t.Fatalf("contoso's %s invoices: %+v %v\nperiod: %+v\nfabrikam's bridge %+v", c.period, invs, err, sum, st)
		}
		inv := invs[0]
		if len(inv.Sections) != 1 || inv.Sections[0].ResellerID != "" {
			t.Errorf("%s: a direct CSP's invoice has one section and no reseller: %d sections", inv.Number, len(inv.Sections))
		}
		for _, l := range inv.Sections[0].Lines {
			if l.SubscriptionID != demo.ContosoCSPSS && !contosoSubs[l.SubscriptionID] {
				t.Errorf("%s bills subscription %s, not Contoso's", inv.Number, l.SubscriptionID)
			}
		}
		fab, err := pw.app.Billing.Invoices(ctx, fabrikam, c.period)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fab {
			for _, sec := range f.Sections {
				for _, l := range sec.Lines {
					if contosoSubs[l.SubscriptionID] {
						t.Errorf("%s bills Contoso's customer subscription %s", f.Number, l.SubscriptionID)
					}
				}
			}
		}
		c2 := pw.signIn(t, pw.w.SignIn("contoso"))
		_, page := e2e.Call(t, c2, "GET", pw.url+"/portal/invoices/"+inv.Number, "", "", nil)
		if !strings.Contains(page, html.EscapeString(demo.Name(demo.StackTenants))) {
			t.Errorf("%s's page does not name Contoso's customer %s", inv.Number, demo.Name(demo.StackTenants))
		}
	}
	c := pw.signIn(t, pw.w.SignIn("contoso"))
	_, page := e2e.Call(t, c, "GET", pw.url+"/portal/registrations/"+demo.ContosoCSPSS+"/"+demo.ResourceGroup+"/"+demo.ContosoRegName, "", "", nil)
	for i := range pw.direct.Sim.Tenants {
		if !strings.Contains(page, demo.ContosoSub(i)) {
			t.Errorf("contoso's stamp does not list its customer subscription %s", demo.ContosoSub(i))
		}
	}
}
