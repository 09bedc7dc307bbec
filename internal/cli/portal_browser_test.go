package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/demo"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// chromium finds the browser for the portal tests: STACKBILL_CHROMIUM, or
// Debian's chromium. Under CI=true a missing browser fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("STACKBILL_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but no Chromium found (apt-get install chromium, or set STACKBILL_CHROMIUM)")
	}
	t.Skip("no Chromium: apt-get install chromium to run the browser tests")
	return ""
}

// browserSession drives one headless Chromium for a test, with screenshots
// saved under STACKBILL_ARTIFACTS (default: a temporary directory).
type browserSession struct {
	t         *testing.T
	ctx       context.Context
	base      string
	shots     string
	downloads string
	n         int
}

func newBrowser(t *testing.T, base string) *browserSession {
	t.Helper()
	exe := chromium(t)
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900)}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	shots := os.Getenv("STACKBILL_ARTIFACTS")
	if shots == "" {
		shots = t.TempDir()
	}
	shots = filepath.Join(shots, "screenshots", t.Name())
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &browserSession{t: t, ctx: ctx, base: base, shots: shots, downloads: t.TempDir()}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/portal/login")); err != nil {
		t.Fatalf("start Chromium %s: %v", exe, err)
	}
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: b.downloads}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browserSession) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed-" + what)
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browserSession) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.shot("failed-text")
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (b *browserSession) shot(name string) {
	b.n++
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	_ = os.WriteFile(filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name)), buf, 0o644)
}

func (b *browserSession) signIn(token string) {
	b.t.Helper()
	b.do("sign in", chromedp.Navigate(b.base+"/portal/login"), chromedp.WaitVisible(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), token))
	b.clickAndLoad("#signin")
	b.do("signed in", chromedp.WaitVisible(chromedp.CSS("nav.side")))
}

// waitChart waits until Chart.js has drawn the page's chart.
func (b *browserSession) waitChart(name string) {
	b.t.Helper()
	b.do("draw "+name, chromedp.WaitVisible(chromedp.CSS(`canvas[data-drawn="true"]`)))
	b.shot(name)
}

// download clicks a link and returns the file the browser saved.
func (b *browserSession) download(sel string) string {
	b.t.Helper()
	before, _ := os.ReadDir(b.downloads)
	b.do("download "+sel, chromedp.Click(chromedp.CSS(sel)))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(b.downloads)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".crdownload") || len(entries) == len(before) {
				continue
			}
			known := false
			for _, o := range before {
				known = known || o.Name() == e.Name()
			}
			if !known {
				data, err := os.ReadFile(filepath.Join(b.downloads, e.Name()))
				if err == nil && len(data) > 0 {
					return string(data)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("download from %s did not complete", sel)
	return ""
}

// submitCustomer fills and submits the "add end customer" form.
func (b *browserSession) submitCustomer(sub, tenant string) {
	b.t.Helper()
	b.do("fill the form", chromedp.WaitVisible(chromedp.CSS("#addcustomer")),
		chromedp.SetValue(chromedp.CSS("#customerSubscription"), sub), chromedp.SetValue(chromedp.CSS("#tenantId"), tenant))
	b.clickAndLoad("#add")
}

// clickAndLoad clicks an element that navigates and waits for the new
// document: a marker set on the old one must be gone and the new one loaded.
func (b *browserSession) clickAndLoad(sel string) {
	b.t.Helper()
	b.do("mark the page", chromedp.Evaluate[chromedp.Void](`window.__stackbillOld = true`), chromedp.Click(chromedp.CSS(sel)))
	// Evaluations fail while the navigation swaps documents; keep asking.
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		done, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__stackbillOld === undefined && document.readyState === "complete"`))
		cancel()
		if err == nil && done {
			return
		}
		last = err
	}
	b.shot("failed-load")
	b.t.Fatalf("after clicking %s, no new page loaded (%v)", sel, last)
}

func demoRegistrationToken(cloud, model, agreement string) string {
	m, _ := registration.ParseBillingModel(model)
	return storetest.SignedToken(registration.Token{CloudID: cloud, ObjectID: "0b5e0000-0000-4000-8000-000000000001", BillingModel: m, AgreementNumber: agreement})
}

// TestPortalInBrowser walks the demo in headless Chromium: every role signs
// in; the partner adds an end customer, seeing each seed error the form can
// produce with its explanation; usage charts draw; an invoice opens and its
// CSV downloads; a tenant downloads its usage; resellers see only their own.
func TestPortalInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests run in the full suite")
	}
	chromium(t)
	pw := newPortalWorld(t, "sqlite", 7)
	ctx := t.Context()
	fabrikam := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "t"}
	loc := "global"
	// Two more registrations of Fabrikam, for the errors of rules 2 and 3.
	unapproved := registration.Key{SubscriptionID: demo.FabrikamCSPSS, ResourceGroup: demo.ResourceGroup, Name: "unapproved-stamp"}
	capacity := registration.Key{SubscriptionID: demo.FabrikamCSPSS, ResourceGroup: demo.ResourceGroup, Name: "capacity-stamp"}
	doomed := registration.Key{SubscriptionID: demo.FabrikamCSPSS, ResourceGroup: demo.ResourceGroup, Name: "doomed-stamp"}
	for _, r := range []struct {
		k                       registration.Key
		cloud, model, agreement string
		approve                 bool
	}{
		{unapproved, "0b5e0000-0000-4000-8000-0000000000a1", "PayAsYouUse", "", false},
		{capacity, "0b5e0000-0000-4000-8000-0000000000a2", "Capacity", "EA-12345", true},
		{doomed, "0b5e0000-0000-4000-8000-0000000000a3", "PayAsYouUse", "", true},
	} {
		tok := demoRegistrationToken(r.cloud, r.model, r.agreement)
		if _, _, err := pw.app.Registrations.Put(ctx, fabrikam, r.k, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{}); err != nil {
			t.Fatal(err)
		}
		if r.approve {
			if _, err := pw.app.Registrations.Approve(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, r.k, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := newBrowser(t, pw.url)

	// Every role signs in and lands on its first page.
	for _, c := range []struct{ key, nav string }{
		{"operator", "Partners"}, {"contoso", "Customers"}, {"tailspin", "Customers"}, {"wingtip", "Customers"},
		{"stack-operator", "Tenants"}, {"tenant", "My usage"}, {"fabrikam", "Invoices"},
	} {
		b.signIn(pw.w.SignIn(c.key))
		if nav := b.text("nav.side"); !strings.Contains(nav, c.nav) {
			t.Errorf("%s's navigation %q lacks %q", c.key, nav, c.nav)
		}
		if commerce := c.key != "stack-operator" && c.key != "tenant"; commerce {
			// Billing roles land on the month so far.
			if kpis := b.text("main"); !strings.Contains(kpis, "Forecast to month end") && !strings.Contains(kpis, "No charges yet") {
				t.Errorf("%s does not land on the overview: %.200q", c.key, kpis)
			}
			// Those invoiced (and the operator) see what needs acting on.
			if c.key == "operator" || c.key == "contoso" || c.key == "fabrikam" {
				if att := b.text("#attention"); !strings.Contains(att, "Needs attention") {
					t.Errorf("%s's overview has no attention section: %.200q", c.key, att)
				}
			}
		}
		b.shot("signed-in-" + c.key)
	}

	// The seed's flow as Fabrikam: open the stamp's registration, add end
	// customers, with one failing case per error the form can produce.
	b.do("open registrations", chromedp.Navigate(pw.url+"/portal/registrations"))
	b.clickAndLoad(`a[href$="/` + demo.RegName + `"]`)
	b.shot("registration")
	next := demo.Registered
	tenantOf := func(i int) string { return pw.w.Sim.Tenants[i].DirectoryID }
	contosoSub, contosoTenant := "c0c05000-1111-4000-8000-000000000001", "c0c05000-0000-4000-8000-000000000001"
	for _, c := range []struct{ name, sub, tenant, code, guidance string }{
		{"invalid-id", "not-a-subscription", tenantOf(next), "InvalidCustomerSubscriptionId", "GUID of an Azure subscription"},
		{"unknown-id", "0d0d0d0d-0000-4000-8000-000000000000", tenantOf(next), "InvalidCustomerSubscriptionId", ""},
		{"not-csp", demo.ContosoCSPSS, tenantOf(next), "InvalidCSPSubscription", "mistyped"},
		{"other-csp", contosoSub, contosoTenant, "BadCustomerSubscriptionId", "billing a CSP partner who is not responsible"},
		{"wrong-tenant", demo.CustomerSub(next), tenantOf(next + 1), "CustomerTenantMismatch", ""},
	} {
		b.submitCustomer(c.sub, c.tenant)
		msg := b.text("#error")
		if !strings.Contains(msg, c.code) || !strings.Contains(msg, c.guidance) {
			t.Errorf("%s: the form showed %q, want %s with its explanation", c.name, msg, c.code)
		}
		b.shot("error-" + c.name)
	}
	b.submitCustomer(demo.CustomerSub(next), tenantOf(next))
	if got := b.text("#added"); !strings.Contains(got, demo.CustomerSub(next)) {
		t.Errorf("after adding: %q", got)
	}
	if got := b.text("#tenants"); !strings.Contains(got, demo.Name(next)) {
		t.Errorf("the registered tenants do not list %s: %q", demo.Name(next), got)
	}
	b.shot("customer-added")
	// And removes one again: one click asks, the second removes.
	b.clickAndLoad(`#tenants form[action*="/customers/` + demo.CustomerSub(next) + `/remove"] button`)
	if got := b.text("#confirm"); !strings.Contains(got, "charged to the registration's default subscription") {
		t.Errorf("removal was not confirmed first: %q", got)
	}
	b.shot("confirm-remove")
	if _, err := pw.app.Registrations.GetCustomerSubscription(ctx, fabrikam, pw.w.RegKey, demo.CustomerSub(next)); err != nil {
		t.Errorf("one click removed the customer: %v", err)
	}
	b.clickAndLoad(`#confirm-remove`)
	if got := b.text("#removed"); !strings.Contains(got, demo.CustomerSub(next)) {
		t.Errorf("after removing: %q", got)
	}
	if got := b.text("#tenants"); strings.Contains(got, demo.Name(next)) {
		t.Errorf("the registered tenants still list %s: %q", demo.Name(next), got)
	}
	b.shot("customer-removed")
	b.submitCustomer(demo.CustomerSub(next), tenantOf(next))
	if got := b.text("#added"); !strings.Contains(got, demo.CustomerSub(next)) {
		t.Errorf("after adding it back: %q", got)
	}
	for _, c := range []struct {
		k           registration.Key
		code, guide string
	}{
		{unapproved, "UnauthorizedCspRegistration", "approved for multi-tenancy"},
		{capacity, "CustomerSubscriptionsNotAllowed", "re-register using the parameter BillingModel PayAsYouUse"},
	} {
		b.do("open "+c.k.Name, chromedp.Navigate(pw.url+regPathOf(c.k)))
		b.submitCustomer(demo.CustomerSub(next+1), tenantOf(next+1))
		if msg := b.text("#error"); !strings.Contains(msg, c.code) || !strings.Contains(msg, c.guide) {
			t.Errorf("%s: the form showed %q, want %s", c.k.Name, msg, c.code)
		}
		// The address bar is the page's, not the form's POST path, so a
		// reload reads the page rather than posting again.
		loc, err := chromedp.Run(b.ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(loc, regPathOf(c.k)) {
			t.Errorf("%s: after the failed form the address is %s, want the page's", c.k.Name, loc)
		}
		b.shot("error-" + c.code)
	}
	// The registration disappears while the form is open.
	b.do("open doomed", chromedp.Navigate(pw.url+regPathOf(doomed)), chromedp.WaitVisible(chromedp.CSS("#addcustomer")))
	if _, err := pw.app.Registrations.Delete(ctx, fabrikam, doomed, registration.Precondition{}); err != nil {
		t.Fatal(err)
	}
	b.submitCustomer(demo.CustomerSub(next+1), tenantOf(next+1))
	if msg := b.text("#error"); !strings.Contains(msg, "RegistrationNotFound") || !strings.Contains(msg, "CloudDeploymentID") {
		t.Errorf("deleted registration: %q", msg)
	}
	b.shot("error-RegistrationNotFound")

	// Usage by customer, with a date range.
	from := pw.app.Clock.Now().AddDate(0, 0, -6).Format("2006-01-02")
	b.do("usage", chromedp.Navigate(pw.url+"/portal/usage?from="+from))
	b.waitChart("usage-chart")
	// Legends name customers, never GUIDs.
	legends, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`Chart.getChart(document.querySelector("canvas[data-chart]")).data.datasets.map(d => d.label)`))
	if err != nil || len(legends) == 0 {
		t.Fatalf("usage chart legends: %v %d", err, len(legends))
	}
	for _, l := range legends {
		if guid.MatchString(l) {
			t.Errorf("the usage chart's legend shows a GUID: %q", l)
		}
	}
	if got := b.text("#usagetable"); !strings.Contains(got, demo.Name(1)) {
		t.Errorf("usage table lacks %s: %q", demo.Name(1), got)
	}
	// An invoice, its CSV, and the reconciliation file.
	b.do("invoices", chromedp.Navigate(pw.url+"/portal/invoices"))
	b.clickAndLoad(`#invoices a[href^="/portal/invoices/SB-"]`)
	b.do("invoice", chromedp.WaitVisible(chromedp.CSS("#total")))
	b.shot("invoice")
	// As the browser shows it: every line's quantity × unit price is its
	// amount, to the cent.
	cells, err := chromedp.Run(b.ctx, chromedp.Evaluate[[][]string](`Array.from(document.querySelectorAll("table.lines tbody tr:not(.subtotal)")).map(r => Array.from(r.cells).map(c => c.innerText))`))
	if err != nil || len(cells) == 0 {
		t.Fatalf("invoice lines in the browser: %v, %d", err, len(cells))
	}
	for _, c := range cells {
		n := len(c)
		qty := money.MustQuantity(strings.Fields(c[n-4])[0])
		price := money.MustQuantity(c[n-3])
		amount := money.MustQuantity(strings.ReplaceAll(strings.Fields(c[n-2])[0], ",", ""))
		if !qty.Mul(price).Round(2).Equal(amount) {
			t.Errorf("invoice line %s: %s × %s shows as %s", c[0], qty, price, amount)
		}
		if guid.MatchString(c[1]) {
			t.Errorf("invoice line %s names its customer by a GUID: %q", c[0], c[1])
		}
	}
	if csv := b.download("#csv"); !strings.Contains(strings.SplitN(csv, "\n", 2)[0], "Meter") {
		t.Errorf("invoice CSV starts %q", strings.SplitN(csv, "\n", 2)[0])
	}
	if csv := b.download("#recon"); !strings.Contains(csv, demo.CustomerSub(0)) {
		t.Errorf("the reconciliation file lacks %s", demo.CustomerSub(0))
	}
	b.do("statements", chromedp.Navigate(pw.url+"/portal/statements"), chromedp.WaitVisible(chromedp.CSS("#margin")))
	b.shot("statements")
	// Drill-down from an invoice line to the hourly records behind it.
	b.do("invoice again", chromedp.Navigate(pw.url+"/portal/invoices/SB-"+pw.app.Clock.Now().Format("200601")+"-fabrikam"), chromedp.WaitVisible(chromedp.CSS("#total")))
	b.drill(`table.lines a.daily`, "invoice-line")

	// Resellers see only their own customers, on every page they have.
	for _, c := range []struct{ key, own, other string }{{"tailspin", demo.Name(0), demo.Name(1)}, {"wingtip", demo.Name(1), demo.Name(0)}} {
		b.signIn(pw.w.SignIn(c.key))
		seen := ""
		for _, pg := range []string{"/portal/customers", "/portal/usage", "/portal/statements", "/portal/registrations"} {
			b.do(c.key+pg, chromedp.Navigate(pw.url+pg), chromedp.WaitVisible(chromedp.CSS("main")))
			body := b.text("main")
			if strings.Contains(body, c.other) {
				t.Errorf("%s's %s shows %s, another reseller's customer", c.key, pg, c.other)
			}
			seen += body
			b.shot(c.key + strings.ReplaceAll(pg, "/", "-"))
		}
		if !strings.Contains(seen, c.own) {
			t.Errorf("%s's pages never show its own customer %s", c.key, c.own)
		}
	}
	// A reseller drills down from its statement: customer → line → days →
	// hours.
	b.signIn(pw.w.SignIn("tailspin"))
	b.do("tailspin statements", chromedp.Navigate(pw.url+"/portal/statements"), chromedp.WaitVisible(chromedp.CSS("#statements")))
	b.clickAndLoad(`#statements a[href^="/portal/statements/"]`)
	b.do("statement", chromedp.WaitVisible(chromedp.CSS("#statementlines")))
	b.shot("statement")
	b.drill(`#statementlines a.daily`, "statement-line")

	// The stack side: explorer and bridge as the stack operator, own usage
	// and its CSV as a tenant.
	b.signIn(pw.w.SignIn("stack-operator"))
	b.homePage("stack-overview", "Directory tenants", "Forwarding")
	b.do("explorer", chromedp.Navigate(pw.url+"/portal/stack/usage?granularity=Hourly&by=resource"))
	b.waitChart("explorer-hourly")
	b.do("bridge", chromedp.Navigate(pw.url+"/portal/stack/bridge"), chromedp.WaitVisible(chromedp.CSS("#bridgestatus")))
	b.waitChart("bridge")
	if st := b.text("#bridgestatus"); !strings.Contains(st, "Forwarding") {
		t.Errorf("bridge status: %q", st)
	}
	b.signIn(pw.w.SignIn("tenant"))
	if home := b.homePage("tenant-overview", pw.w.Tenant, "Usage in"); strings.Contains(home, "USD") {
		t.Error("the tenant's home page shows a CSP price")
	}
	b.do("my usage", chromedp.Navigate(pw.url+"/portal/my/usage"))
	b.waitChart("tenant-usage")
	if csv := b.download("#csv"); !strings.HasPrefix(csv, "subscriptionId,") || !strings.Contains(csv, pw.w.Tenant) {
		t.Errorf("tenant CSV: %.200q", csv)
	}
	// The operator approves the waiting registration for multi-tenancy.
	b.signIn(pw.w.SignIn("operator"))
	b.do("registrations", chromedp.Navigate(pw.url+"/portal/registrations?q=unapproved"))
	if got := b.text("#registrations"); !strings.Contains(got, "Not approved") {
		t.Errorf("before approval: %q", got)
	}
	b.clickAndLoad(`#registrations form button`)
	// One click asks; it does not approve.
	if got := b.text("#confirm"); !strings.Contains(got, "lets its partner register end customers") {
		t.Errorf("approval was not confirmed first: %q", got)
	}
	if reg, err := pw.app.Registrations.Get(ctx, fabrikam, unapproved); err != nil || reg.Approved {
		t.Errorf("one click approved the registration: %v %+v", err, reg.Approved)
	}
	b.clickAndLoad(`#confirm-approve`)
	if got := b.text("main"); !strings.Contains(got, "Approved") {
		t.Errorf("after approval: %q", got)
	}
	b.shot("approved")
	if reg, err := pw.app.Registrations.Get(ctx, fabrikam, unapproved); err != nil || !reg.Approved {
		t.Errorf("the portal's approval did not reach the registration: %v %+v", err, reg.Approved)
	}
	b.signIn(pw.w.SignIn("tenant"))
	// A narrow screen still shows the page (responsive layout).
	b.do("narrow", chromedp.EmulateViewport(390, 844), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("main")))
	b.shot("tenant-narrow")
}

// homePage checks the page a role lands on: its figures, and a compare
// chart drawn with nothing for the days that have not begun.
func (b *browserSession) homePage(name string, mustSee ...string) string {
	b.t.Helper()
	b.waitChart(name)
	body := b.text("main")
	for _, s := range mustSee {
		if !strings.Contains(body, s) {
			b.t.Errorf("%s does not show %q: %.300q", name, s, body)
		}
	}
	// Chart.js's own view of the data: this month's bars stop at today.
	drawn, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]bool](`Chart.getChart(document.querySelector("#chart-trend")).data.datasets[0].data.map(v => v !== null)`))
	if err != nil {
		b.t.Fatalf("%s: read the chart: %v", name, err)
	}
	today := time.Now().UTC().Day()
	for i, d := range drawn {
		if d != (i < today) {
			b.t.Errorf("%s: day %d drawn %v, today is day %d", name, i+1, d, today)
		}
	}
	return body
}

// drill follows a line's usage link (sel) to its days, opens a day, and
// checks that the day's hourly records add up to the day.
func (b *browserSession) drill(sel, name string) {
	b.t.Helper()
	b.clickAndLoad(sel)
	b.waitChart(name + "-days")
	if lvl, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS("#usagetable"), "data-level")); err != nil || lvl.Value != "Day" {
		b.t.Fatalf("%s: the usage link opened level %q (%v), want the days", name, lvl.Value, err)
	}
	dayQty := b.text(`#usagetable tbody tr:first-child td.num`)
	b.clickAndLoad(`#usagetable tbody tr:first-child a`)
	b.do(name+" hours", chromedp.WaitVisible(chromedp.CSS("#hours")))
	b.shot(name + "-hours")
	if total := b.text("#hourstotal"); total != dayQty {
		b.t.Errorf("%s: the day says %q, its hourly records add up to %q", name, dayQty, total)
	}
	if crumbs := b.text("nav.crumbs"); !strings.Contains(crumbs, "All customers") {
		b.t.Errorf("%s: no way back up from the hours: %q", name, crumbs)
	}
}

var guid = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

func regPathOf(k registration.Key) string {
	return "/portal/registrations/" + k.SubscriptionID + "/" + k.ResourceGroup + "/" + k.Name
}

// TestBudgetsInBrowser: Fabrikam makes a budget in the portal's form, the
// evaluator finds it crossed, the bell counts it, and the Alerts page says
// what was crossed; the page loads under the portal's content policy.
func TestBudgetsInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests run in the full suite")
	}
	chromium(t)
	pw := newPortalWorld(t, "sqlite", 7)
	b := newBrowser(t, pw.url)
	b.signIn(pw.w.SignIn("fabrikam"))
	b.do("open budgets", chromedp.Navigate(pw.url+"/portal/budgets"), chromedp.WaitVisible(chromedp.CSS("#newbudget")),
		chromedp.SetValue(chromedp.CSS("#b-name"), "Browser budget"), chromedp.SetValue(chromedp.CSS("#b-amount"), "1"))
	b.clickAndLoad("#create-budget")
	if got := b.text("#budgets"); !strings.Contains(got, "Browser budget") {
		t.Fatalf("the budgets table after creating one: %q", got)
	}
	if err := pw.app.Budgets.Evaluate(t.Context(), pw.app.Logger); err != nil {
		t.Fatal(err)
	}
	b.do("open alerts", chromedp.Navigate(pw.url+"/portal/alerts"), chromedp.WaitVisible(chromedp.CSS("#alerts")))
	b.shot("alerts")
	if got := b.text("#alerts"); !strings.Contains(got, `Budget "Browser budget"`) || !strings.Contains(got, "100% of 1 USD on the actual spend") {
		t.Fatalf("the alerts page: %q", got)
	}
	if n := b.text("#bell-count"); n == "0" || n == "" {
		t.Fatalf("the bell counts %q", n)
	}
	b.do("open budgets again", chromedp.Navigate(pw.url+"/portal/budgets"), chromedp.WaitVisible(chromedp.CSS("#budgets")))
	b.shot("budgets")
	if got := b.text("#budgets"); !strings.Contains(got, "100 % actual") {
		t.Fatalf("the budgets table after evaluation: %q", got)
	}
}
