package cli

import (
	"encoding/json"
	"html"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/demo"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/money"
)

var (
	usageDayRow  = regexp.MustCompile(`<tr><td><a href="(/portal/usage/hours\?[^"]*)">(\d{4}-\d\d-\d\d)</a></td><td class="num">([0-9.]+) [^<]*</td><td class="invoiced">(.*?)</td></tr>`)
	hourRow      = regexp.MustCompile(`<tr><td>(\d\d:\d\d)</td><td>([^<]*)</td><td><code class="id">([^<]*)</code></td><td>([^<]*)</td><td class="num">([0-9.]+) [^<]*</td><td class="num">([0-9.]+) [^<]*</td><td>([^<]*)</td></tr>`)
	statementRow = regexp.MustCompile(`<td><a class="daily" href="([^"]*)">([^<]*)</a>`)
	chartData    = regexp.MustCompile(`id="chart-trend" data-chart="([^"]*)"`)
)

// get fetches a portal page as c, failing the test unless it answers 200.
func (pw *portalWorld) get(t *testing.T, c *http.Client, path string) string {
	t.Helper()
	resp, body := e2e.Call(t, c, "GET", pw.url+path, "", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d: %.300s", path, resp.StatusCode, body)
	}
	return body
}

// sumDays adds a usage page's daily rows, all of them and those invoiced
// as period (a row's whole quantity, or its part for period).
func sumDays(t *testing.T, page, period string) (all, inPeriod money.Quantity, rows [][]string) {
	t.Helper()
	all, inPeriod = money.Zero, money.Zero
	rows = usageDayRow.FindAllStringSubmatch(page, -1)
	part := regexp.MustCompile(`data-period="` + period + `">([0-9.]+)<`)
	for _, r := range rows {
		q := money.MustQuantity(r[3])
		all = all.Add(q)
		switch inv := r[4]; {
		case inv == period:
			inPeriod = inPeriod.Add(q)
		case part.MatchString(inv):
			inPeriod = inPeriod.Add(money.MustQuantity(part.FindStringSubmatch(inv)[1]))
		}
	}
	return all, inPeriod, rows
}

// TestPortalDrillDown follows an invoice line and a statement line down
// to the hourly records the stamp forwarded, checking at each step that
// the figures add up to the step above, and that no principal can open
// another's subscription on the way.
func TestPortalDrillDown(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 3)
	ctx := t.Context()
	now := pw.app.Clock.Now()
	period := clock.Period(now)
	fab := pw.signIn(t, pw.w.SignIn("fabrikam"))
	number := "SB-" + now.Format("200601") + "-fabrikam"
	page := pw.get(t, fab, "/portal/invoices/"+number)
	// The invoice line of a customer's base VM vCPU-hours: an hourly meter,
	// so its quantity is the records' sum.
	var line []string
	for _, r := range invoiceRow.FindAllStringSubmatch(page, -1) {
		if strings.Contains(html.UnescapeString(r[4]), "Base VM") && !strings.Contains(r[2], "partner") {
			line = r
			break
		}
	}
	if line == nil {
		t.Fatal("no base VM line of a customer on the invoice page")
	}
	lineQty := money.MustQuantity(line[5])
	daily := pw.get(t, fab, html.UnescapeString(line[11]))
	all, billed, days := sumDays(t, daily, "draft")
	if len(days) == 0 {
		t.Fatalf("the line's daily usage lists no days: %.2000s", daily)
	}
	if !billed.Equal(lineQty) {
		t.Errorf("the line's days add up to %s on the draft (%s in all), the line says %s", billed, all, lineQty)
	}
	if !strings.Contains(daily, html.EscapeString(line[2])) || !strings.Contains(daily, `class="crumbs"`) {
		t.Errorf("the daily page does not name the customer %q, or has no way back up", line[2])
	}
	// A day down to its hours.
	day := days[len(days)/2]
	hours := pw.get(t, fab, html.UnescapeString(day[1]))
	recs := hourRow.FindAllStringSubmatch(hours, -1)
	if len(recs) == 0 {
		t.Fatalf("day %s lists no hourly records", day[2])
	}
	sum := money.Zero
	for _, h := range recs {
		sum = sum.Add(money.MustQuantity(h[6]))
		if h[2] != "fabrikam-stamp-1" {
			t.Errorf("an hourly record names its stamp %q, not its registration", h[2])
		}
		if strings.Count(h[3], "/") > 3 {
			t.Errorf("resource %q is shown as a whole URI where its type and name are unique", h[3])
		}
	}
	if !sum.Equal(money.MustQuantity(day[3])) {
		t.Errorf("day %s: the hourly records add up to %s, the day says %s", day[2], sum, day[3])
	}

	// A reseller's statement: statement → customer → line → days.
	ts := pw.signIn(t, pw.w.SignIn("tailspin"))
	sts, err := pw.app.Billing.Statements(ctx, auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "t"}, "tailspin", period)
	if err != nil || len(sts) == 0 {
		t.Fatalf("tailspin's statements: %v, %d", err, len(sts))
	}
	st := sts[0]
	spage := pw.get(t, ts, "/portal/statements/"+st.Account+"?period="+period)
	links := statementRow.FindAllStringSubmatch(spage, -1)
	if len(links) != len(st.Lines) {
		t.Fatalf("the statement page links %d lines to their usage, it has %d", len(links), len(st.Lines))
	}
	for i, l := range st.Lines {
		if l.LocalOnly || !strings.Contains(l.MeterName, "Base VM") {
			continue
		}
		daily := pw.get(t, ts, html.UnescapeString(links[i][1]))
		all, _, _ := sumDays(t, daily, "draft")
		if !all.Equal(l.Quantity) {
			t.Errorf("statement line %s %s: its days add up to %s, the line says %s", l.SubscriptionID, l.MeterName, all, l.Quantity)
		}
		if strings.Contains(spage, ">"+l.SubscriptionID+"<") && !strings.Contains(spage, "<br><code class=\"id\">"+l.SubscriptionID) {
			t.Errorf("statement line %s shows the subscription's ID without its name", l.SubscriptionID)
		}
	}

	// A reseller sees its customers' hours, not the provider's stamp.
	reg, err := pw.app.Registrations.Get(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, pw.w.RegKey)
	if err != nil {
		t.Fatal(err)
	}
	tsDaily := pw.get(t, ts, html.UnescapeString(links[0][1]))
	_, _, tsDays := sumDays(t, tsDaily, "draft")
	if len(tsDays) == 0 {
		t.Fatal("tailspin's statement line has no days")
	}
	if tsHours := pw.get(t, ts, html.UnescapeString(tsDays[0][1])); strings.Contains(tsHours, reg.CloudID) || strings.Contains(tsHours, demo.RegName) || !strings.Contains(tsHours, `id="hourstotal"`) {
		t.Error("a reseller's hourly records name its provider's stamp, or show no total")
	}

	// Nobody opens a subscription outside their scope, and bad input is a
	// 400, not a 500.
	wingtipSub := demo.CustomerSub(1) // odd customers are Wingtip's
	meterParam := regexp.MustCompile(`meter=([0-9a-f-]{36})`).FindStringSubmatch(html.UnescapeString(line[11]))[1]
	contoso := pw.signIn(t, pw.w.SignIn("contoso"))
	ten := pw.signIn(t, pw.w.SignIn("tenant"))
	for _, c := range []struct {
		who    string
		client *http.Client
		path   string
		want   int
	}{
		{"tailspin", ts, "/portal/usage/hours?subscription=" + wingtipSub + "&meter=" + meterParam + "&day=" + day[2], http.StatusNotFound},
		{"tailspin", ts, "/portal/usage?subscription=" + wingtipSub, http.StatusNotFound},
		{"contoso", contoso, "/portal/usage/hours?subscription=" + wingtipSub + "&meter=" + meterParam + "&day=" + day[2], http.StatusNotFound},
		{"contoso", contoso, "/portal/usage?subscription=" + wingtipSub, http.StatusNotFound},
		{"tenant", ten, "/portal/usage/hours?subscription=" + pw.w.Tenant + "&meter=" + meterParam + "&day=" + day[2], http.StatusForbidden},
		{"fabrikam", fab, "/portal/usage/hours?subscription=" + wingtipSub + "&meter=" + meterParam + "&day=31-12-2026", http.StatusBadRequest},
		{"fabrikam", fab, "/portal/usage/hours?subscription=" + wingtipSub + "&meter=nope&day=" + day[2], http.StatusBadRequest},
		{"fabrikam", fab, "/portal/usage/hours?subscription=not-a-guid&meter=" + meterParam + "&day=" + day[2], http.StatusBadRequest},
		{"fabrikam", fab, "/portal/usage?subscription=not-a-guid", http.StatusBadRequest},
	} {
		resp, body := e2e.Call(t, c.client, "GET", pw.url+c.path, "", "", nil)
		if resp.StatusCode != c.want {
			t.Errorf("%s GET %s: %d, want %d: %.200s", c.who, c.path, resp.StatusCode, c.want, body)
		}
	}
	// Wingtip's own subscription opens for Fabrikam, its provider.
	pw.get(t, fab, "/portal/usage/hours?subscription="+wingtipSub+"&meter="+meterParam+"&day="+day[2])
}

// trend reads a page's compare chart: this month's values (nil for days
// that have not begun) and last month's.
func trend(t *testing.T, page string) (this, last []*money.Quantity) {
	t.Helper()
	m := chartData.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the page has no this-month-against-last chart")
	}
	var spec struct {
		Stacked  bool `json:"stacked"`
		Datasets []struct {
			Data []json.RawMessage `json:"data"`
		} `json:"datasets"`
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &spec); err != nil || len(spec.Datasets) != 2 {
		t.Fatalf("chart data: %v, %d series", err, len(spec.Datasets))
	}
	if spec.Stacked {
		t.Error("a comparison is drawn stacked: this month would sit on top of last")
	}
	read := func(raw []json.RawMessage) []*money.Quantity {
		out := make([]*money.Quantity, len(raw))
		for i, v := range raw {
			if string(v) != "null" {
				q := money.MustQuantity(string(v))
				out[i] = &q
			}
		}
		return out
	}
	return read(spec.Datasets[0].Data), read(spec.Datasets[1].Data)
}

// TestPortalHomePages: the stack operator and the tenant each open on a
// page that answers their first question, and the tenant's shows no price.
// Each compare chart draws nothing for days that have not begun, and its
// figures are the sums of its bars.
func TestPortalHomePages(t *testing.T) {
	t.Parallel()
	pw := newPortalWorld(t, "sqlite", 3)
	now := pw.app.Clock.Now()
	noRedirect := func(c *http.Client) *http.Client {
		cc := *c
		cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return &cc
	}
	check := func(who, home string, mustSee ...string) string {
		c := pw.signIn(t, pw.w.SignIn(who))
		resp, _ := e2e.Call(t, noRedirect(c), "GET", pw.url+"/portal/", "", "", nil)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != home {
			t.Errorf("%s's first page is %d %q, want %s", who, resp.StatusCode, loc, home)
		}
		page := pw.get(t, c, home)
		for _, s := range mustSee {
			if !strings.Contains(page, s) {
				t.Errorf("%s's home page does not show %q", who, s)
			}
		}
		this, last := trend(t, page)
		sum := money.Zero
		for i, v := range this {
			if i >= now.Day() && v != nil {
				t.Errorf("%s: day %d of this month has not begun, yet the chart draws %s", who, i+1, v)
			}
			if v != nil {
				sum = sum.Add(*v)
			}
		}
		lastDays := clock.NextMonth(clock.MonthStart(now).AddDate(0, 0, -1)).Sub(clock.MonthStart(clock.MonthStart(now).AddDate(0, 0, -1))).Hours() / 24
		for i, v := range last {
			if (v == nil) != (i >= int(lastDays)) {
				t.Errorf("%s: last month's day %d is drawn %v, and last month had %v days", who, i+1, v != nil, lastDays)
			}
		}
		if !strings.Contains(page, "to day "+strconv.Itoa(now.Day())+": <strong>"+sum.String()+"</strong>") {
			t.Errorf("%s: the chart's bars add up to %s, which its summary does not say", who, sum)
		}
		return page
	}
	check("stack-operator", "/portal/stack/overview", "Directory tenants", `id="bridgetile"`, "Forwarding", `id="metermonths"`, "Base VM")
	page := check("tenant", "/portal/my/overview", `id="metermonths"`, pw.w.Tenant)
	for _, bad := range []string{"USD", "EUR", "price list", "/portal/invoices"} {
		if strings.Contains(page, bad) {
			t.Errorf("the tenant's home page shows %q: tenants see no CSP prices", bad)
		}
	}
	// Each home page is its role's only: others get 403 or 404.
	for _, who := range []string{"fabrikam", "tailspin", "tenant"} {
		c := pw.signIn(t, pw.w.SignIn(who))
		if resp, _ := e2e.Call(t, c, "GET", pw.url+"/portal/stack/overview", "", "", nil); resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s opens the stack overview: %d", who, resp.StatusCode)
		}
	}
	for _, who := range []string{"fabrikam", "stack-operator"} {
		c := pw.signIn(t, pw.w.SignIn(who))
		if resp, _ := e2e.Call(t, c, "GET", pw.url+"/portal/my/overview", "", "", nil); resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s opens a tenant's overview: %d", who, resp.StatusCode)
		}
	}
}
