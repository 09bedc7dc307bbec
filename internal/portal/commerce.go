package portal

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
)

func (p *Portal) routes() {
	p.page("GET /portal/", auth.Anyone, p.home)
	p.page("GET /portal/quarantine", auth.Quarantiners, p.quarantinePage)
	p.page("POST /portal/quarantine/{id}/{action}", auth.Quarantiners, p.quarantineResolve)
	if p.commerce() {
		p.page("GET /portal/overview", auth.Commerce, p.overview)
		p.page("GET /portal/partners", auth.Operators, p.partners)
		p.page("GET /portal/customers", auth.Commerce, p.customers)
		p.page("GET /portal/registrations", auth.Commerce, p.registrations)
		p.page("POST /portal/registrations/approve", auth.Operators, p.approve)
		p.page("GET /portal/registrations/{sub}/{rg}/{name}", auth.Commerce, p.registration)
		p.page("POST /portal/registrations/{sub}/{rg}/{name}/customers", auth.Commerce, p.addCustomer)
		p.page("POST /portal/registrations/{sub}/{rg}/{name}/customers/{cs}/remove", auth.Commerce, p.removeCustomer)
		p.page("GET /portal/pricing", auth.BillTo, p.pricing)
		p.page("GET /portal/ingestion", auth.Operators, p.ingestion)
		p.page("GET /portal/usage", auth.Commerce, p.commerceUsage)
		p.page("GET /portal/usage/hours", auth.Commerce, p.usageHours)
		p.page("GET /portal/invoices", auth.BillTo, p.invoices)
		p.page("GET /portal/invoices/{number}", auth.BillTo, p.invoice)
		p.page("GET /portal/invoices/{number}/download", auth.BillTo, p.invoiceDownload)
		p.page("GET /portal/reconciliation", auth.BillTo, p.reconciliation)
		p.page("GET /portal/statements", auth.Partners, p.statements)
		p.page("GET /portal/statements/{account}", auth.Partners, p.statement)
		p.page("GET /portal/budgets", auth.Commerce, p.budgets)
		p.page("POST /portal/budgets/{id}/holds/{tenant}/release", auth.Commerce, p.releaseHold)
		p.page("POST /portal/budgets", auth.Commerce, p.createBudget)
		p.page("GET /portal/webhooks", auth.Commerce, p.webhooks)
		p.page("POST /portal/webhooks", auth.Commerce, p.createWebhook)
		p.page("POST /portal/webhooks/{id}/deliveries/{n}/replay", auth.Commerce, p.replayDelivery)
		p.page("GET /portal/alerts", auth.Commerce, p.alerts)
	}
	if p.stack() {
		p.page("GET /portal/stack/overview", auth.StackOperators, p.stackHome)
		p.page("GET /portal/stack/tenants", auth.StackOperators, p.stackTenants)
		p.page("GET /portal/stack/meters", auth.StackOperators, p.stackMeters)
		p.page("GET /portal/stack/usage", auth.StackOperators, p.stackUsage)
		p.page("GET /portal/stack/bridge", auth.StackOperators, p.stackBridge)
		p.page("GET /portal/my/overview", auth.Tenants, p.myHome)
		p.page("GET /portal/my/usage", auth.Tenants, p.myUsage)
		p.page("GET /portal/my/usage.csv", auth.Tenants, p.myUsageCSV)
	}
}

// partnerNode is a partner with its resellers, for the hierarchy.
type partnerNode struct {
	directory.Partner
	Resellers []directory.Partner
	Customers int
}

func (p *Portal) partners(w http.ResponseWriter, r *http.Request, s *session) error {
	ps, err := p.d.Directory.ListPartners(r.Context(), s.P)
	if err != nil {
		return err
	}
	cs, err := p.d.Directory.ListCustomers(r.Context(), s.P, "")
	if err != nil {
		return err
	}
	count := map[string]int{}
	for _, c := range cs {
		count[c.Partner]++
	}
	var roots []*partnerNode
	byID := map[string]*partnerNode{}
	for _, x := range ps {
		if x.Provider == "" {
			n := &partnerNode{Partner: x, Customers: count[x.ID]}
			roots = append(roots, n)
			byID[x.ID] = n
		}
	}
	for _, x := range ps {
		if n := byID[x.Provider]; x.Provider != "" && n != nil {
			n.Resellers = append(n.Resellers, x)
			n.Customers += count[x.ID]
		}
	}
	p.render(w, r, s, "partners", "Partners", map[string]any{"Roots": roots, "Count": count})
	return nil
}

// customerRow is an end customer with its subscriptions.
type customerRow struct {
	directory.Customer
	PartnerName   string
	Subscriptions []directory.Subscription
}

func (p *Portal) customers(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	cs, err := p.d.Directory.ListCustomers(ctx, s.P, "")
	if err != nil {
		return err
	}
	subs, err := p.d.Directory.ListSubscriptions(ctx, s.P)
	if err != nil {
		return err
	}
	names := p.partnerNames(ctx, s.P)
	bySub := map[string][]directory.Subscription{}
	var own []directory.Subscription
	for _, x := range subs {
		if x.CustomerTenantID == "" {
			own = append(own, x)
			continue
		}
		bySub[x.CustomerTenantID] = append(bySub[x.CustomerTenantID], x)
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	var rows []customerRow
	for _, c := range cs {
		row := customerRow{Customer: c, PartnerName: names[c.Partner], Subscriptions: bySub[c.TenantID]}
		fields := []string{c.Name, c.TenantID, c.Partner, row.PartnerName}
		for _, x := range row.Subscriptions {
			fields = append(fields, x.ID, x.Name)
		}
		if matches(q, fields...) {
			rows = append(rows, row)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return strings.ToLower(rows[i].Name) < strings.ToLower(rows[j].Name) })
	pageRows, pg := paginate(r, rows)
	p.render(w, r, s, "customers", "Customers", map[string]any{"Rows": pageRows, "Pager": pg, "Q": q, "Own": own})
	return nil
}

// partnerNames maps the partners the principal can see to their names.
func (p *Portal) partnerNames(ctx context.Context, pr auth.Principal) map[string]string {
	out := map[string]string{}
	ps, err := p.d.Directory.ListPartners(ctx, pr)
	if err != nil {
		return out
	}
	for _, x := range ps {
		out[x.ID] = x.Name
	}
	return out
}

// visibleRegistrations lists the registrations a principal may see: all for
// the operator; for partners, those on subscriptions in their scope (the same
// rule the ARM API applies to each subscription).
func (p *Portal) visibleRegistrations(ctx context.Context, pr auth.Principal) ([]registration.Registration, error) {
	var out []registration.Registration
	list := func(q registration.ListQuery) error {
		for {
			page, next, err := p.d.Registrations.List(ctx, pr, q)
			if err != nil {
				return err
			}
			out = append(out, page...)
			if next == "" {
				return nil
			}
			q.After = next
		}
	}
	if pr.Role == auth.RoleOperator {
		return out, list(registration.ListQuery{Limit: 1000})
	}
	subs, err := p.d.Directory.ListSubscriptions(ctx, pr)
	if err != nil {
		return nil, err
	}
	for _, x := range subs {
		if x.CustomerTenantID != "" {
			continue // end customers' subscriptions do not hold registrations
		}
		if err := list(registration.ListQuery{SubscriptionID: x.ID, Limit: 1000}); err != nil {
			if arm.Is(err, arm.Denied) {
				continue
			}
			return nil, err
		}
	}
	return out, nil
}

func (p *Portal) registrations(w http.ResponseWriter, r *http.Request, s *session) error {
	regs, err := p.visibleRegistrations(r.Context(), s.P)
	if err != nil {
		return err
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	var rows []registration.Registration
	for _, x := range regs {
		if matches(q, x.Key.Name, x.Key.SubscriptionID, x.Key.ResourceGroup, x.CloudID, string(x.BillingModel)) {
			rows = append(rows, x)
		}
	}
	pageRows, pg := paginate(r, rows)
	p.render(w, r, s, "registrations", "Registrations", map[string]any{"Rows": pageRows, "Pager": pg, "Q": q, "Operator": s.P.Role == auth.RoleOperator})
	return nil
}

// approve approves a registration for multi-tenancy in two steps: the
// first POST shows what approval lets the partner do and asks again; only
// the confirmed POST approves, so one stray click changes nothing.
func (p *Portal) approve(w http.ResponseWriter, r *http.Request, s *session) error {
	k := registration.Key{SubscriptionID: r.PostFormValue("subscription"), ResourceGroup: r.PostFormValue("resourceGroup"), Name: r.PostFormValue("name")}
	if r.PostFormValue("confirm") != "yes" {
		reg, err := p.d.Registrations.Get(r.Context(), s.P, k)
		if err != nil {
			return err
		}
		p.render(w, r, s, "confirmapprove", "Approve "+reg.Key.Name+"?", map[string]any{"Reg": reg})
		return nil
	}
	if _, err := p.d.Registrations.Approve(r.Context(), s.P, k, r.PostFormValue("approve") != "false"); err != nil {
		return err
	}
	http.Redirect(w, r, regPath(k), http.StatusSeeOther)
	return nil
}

func regPath(k registration.Key) string {
	return "/portal/registrations/" + k.SubscriptionID + "/" + k.ResourceGroup + "/" + k.Name
}

// tenantRow is a registered tenant with what the directory knows of it.
type tenantRow struct {
	registration.CustomerSubscription
	CustomerName string
}

// addForm is the "add end customer" form's state.
type addForm struct {
	CustomerSubscription, TenantID string
	Error                          *viewError
	Added, Removed                 string
}

func (p *Portal) registration(w http.ResponseWriter, r *http.Request, s *session) error {
	return p.showRegistration(w, r, s, addForm{Added: r.URL.Query().Get("added"), Removed: r.URL.Query().Get("removed")}, http.StatusOK)
}

func (p *Portal) showRegistration(w http.ResponseWriter, r *http.Request, s *session, form addForm, status int) error {
	ctx := r.Context()
	k := registration.Key{SubscriptionID: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Name: r.PathValue("name")}
	reg, err := p.d.Registrations.Get(ctx, s.P, k)
	if err != nil {
		return err
	}
	// The customers in scope, read once: they name the registered tenants
	// and offer the unregistered ones to pick from.
	cs, cerr := p.d.Directory.ListCustomers(ctx, s.P, "")
	names := map[string]string{}
	for _, c := range cs {
		names[c.TenantID] = c.Name
	}
	var tenants []tenantRow
	after := ""
	for {
		page, next, err := p.d.Registrations.ListCustomerSubscriptions(ctx, s.P, reg.Key, after, 1000)
		if err != nil {
			return err
		}
		for _, m := range page {
			tenants = append(tenants, tenantRow{CustomerSubscription: m, CustomerName: names[m.TenantID]})
		}
		if next == "" {
			break
		}
		after = next
	}
	var candidates []customerRow
	if cerr == nil {
		registered := map[string]bool{}
		for _, t := range tenants {
			registered[t.TenantID] = true
		}
		subs, _ := p.d.Directory.ListSubscriptions(ctx, s.P)
		bySub := map[string][]directory.Subscription{}
		for _, x := range subs {
			bySub[x.CustomerTenantID] = append(bySub[x.CustomerTenantID], x)
		}
		for _, c := range cs {
			if !registered[c.TenantID] {
				candidates = append(candidates, customerRow{Customer: c, Subscriptions: bySub[c.TenantID]})
			}
		}
	}
	if status != http.StatusOK {
		w.WriteHeader(status)
	}
	p.render(w, r, s, "registration", "Registration "+reg.Key.Name, map[string]any{
		"Reg": reg, "Tenants": tenants, "Form": form, "Candidates": candidates, "Operator": s.P.Role == auth.RoleOperator,
	})
	return nil
}

// addCustomer is the seed's "Add end customer": PUT a customer subscription
// on the registration, with every check of the ARM API.
func (p *Portal) addCustomer(w http.ResponseWriter, r *http.Request, s *session) error {
	k := registration.Key{SubscriptionID: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Name: r.PathValue("name")}
	form := addForm{CustomerSubscription: strings.TrimSpace(r.PostFormValue("customerSubscription")), TenantID: strings.TrimSpace(r.PostFormValue("tenantId"))}
	if form.TenantID == "" {
		ve := toViewError(arm.InvalidRequest("properties.tenantId", "Enter the customer's directory tenant ID (a GUID)."))
		form.Error = &ve
		return p.showRegistration(w, r, s, form, ve.Status)
	}
	cs, err := p.d.Registrations.PutCustomerSubscription(r.Context(), s.P, k, form.CustomerSubscription, form.TenantID, registration.Precondition{})
	if err != nil {
		ve := toViewError(err)
		if ve.Status >= 500 && ve.Code == "InternalError" {
			return err
		}
		form.Error = &ve
		return p.showRegistration(w, r, s, form, ve.Status)
	}
	http.Redirect(w, r, regPath(k)+"?added="+cs.ID, http.StatusSeeOther)
	return nil
}

// removeCustomer removes an end customer's registration (the customer
// subscription's mapping) in two steps, as approval does: the first POST
// says what removal changes and asks again. From the next hour, the tenant's
// usage is charged to the registration's default subscription.
func (p *Portal) removeCustomer(w http.ResponseWriter, r *http.Request, s *session) error {
	k := registration.Key{SubscriptionID: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Name: r.PathValue("name")}
	cs := r.PathValue("cs")
	m, err := p.d.Registrations.GetCustomerSubscription(r.Context(), s.P, k, cs)
	if err != nil {
		return err
	}
	if r.PostFormValue("confirm") != "yes" {
		reg, err := p.d.Registrations.Get(r.Context(), s.P, k)
		if err != nil {
			return err
		}
		p.render(w, r, s, "confirmremove", "Remove "+m.ID+"?", map[string]any{"Reg": reg, "Mapping": m})
		return nil
	}
	if _, err := p.d.Registrations.DeleteCustomerSubscription(r.Context(), s.P, k, cs, registration.Precondition{}); err != nil {
		return err
	}
	http.Redirect(w, r, regPath(k)+"?removed="+url.QueryEscape(m.ID), http.StatusSeeOther)
	return nil
}

func (p *Portal) pricing(w http.ResponseWriter, r *http.Request, s *session) error {
	lists, err := p.d.Billing.PriceLists(r.Context(), s.P)
	if err != nil {
		return err
	}
	var shown *billing.PriceList
	if id := r.URL.Query().Get("list"); id != "" {
		for _, l := range lists {
			if l.ID != 0 && itoa(l.ID) == id {
				full, err := p.d.Billing.PriceList(r.Context(), s.P, l.ID)
				if err != nil {
					return err
				}
				shown = &full
			}
		}
	}
	maps, err := p.d.BillingMap.Versions(r.Context())
	if err != nil {
		return err
	}
	p.render(w, r, s, "pricing", "Price lists and meter maps", map[string]any{"Lists": lists, "Shown": shown, "Maps": maps})
	return nil
}

func (p *Portal) ingestion(w http.ResponseWriter, r *http.Request, s *session) error {
	now := p.now(r.Context())
	since := clock.HourStart(now).Add(-47 * time.Hour)
	health, err := p.d.Ledger.Health(r.Context(), since)
	if err != nil {
		return err
	}
	regs, err := p.visibleRegistrations(r.Context(), s.P)
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, x := range regs {
		names[x.UID] = x.Key.Name
	}
	type stamp struct {
		ledger.StampHealth
		Name  string
		Quiet bool
	}
	var stamps []stamp
	var pts []point
	for _, h := range health {
		stamps = append(stamps, stamp{StampHealth: h, Name: names[h.RegistrationUID], Quiet: now.Sub(h.LastReceived) > quietAfter})
		for _, x := range h.Hours {
			pts = append(pts, point{Bucket: x.Hour, Key: h.CloudID, Qty: money.FromInt(x.Records)})
		}
	}
	c := buildChart("ingest", "Records received per hour, by stamp (cloudId)", "records", "bar", pts, since, clock.HourStart(now).Add(time.Hour), now, time.Hour, func(k string) string {
		return k
	})
	p.render(w, r, s, "ingestion", "Ingestion health", map[string]any{"Stamps": stamps, "Chart": c})
	return nil
}

// nameMeters fills in billing meter names and units from the meter map in
// force at t, and local meter names from the catalogue.
func (p *Portal) nameMeters(ctx context.Context, t time.Time, slot func(id string) (*string, *string)) {
	if vs, err := p.d.BillingMap.Versions(ctx); err == nil {
		for _, v := range vs {
			for _, m := range v.Meters {
				if n, u := slot(m.ID); n != nil {
					// Billing meter names repeat ("1 Core" for base VMs,
					// Windows VMs and App Service); the subcategory tells them apart.
					*n, *u = m.Name, m.Unit
					if m.SubCategory != "" {
						*n = m.SubCategory + " · " + m.Name
					}
				}
			}
		}
	}
	if ms, err := p.d.Meters.List(ctx); err == nil {
		for _, m := range ms {
			key, _ := meter.Normalize(m.ID)
			if n, u := slot("local:" + key); n != nil {
				*n, *u = m.Name+" (local only)", m.Unit
			}
		}
	}
}

func (p *Portal) invoices(w http.ResponseWriter, r *http.Request, s *session) error {
	period := r.URL.Query().Get("period")
	if period == "" {
		period = clock.Period(p.now(r.Context()))
	}
	invs, err := p.d.Billing.Invoices(r.Context(), s.P, period)
	if err != nil {
		return err
	}
	prev, next := p.periodNav(r.Context(), period)
	p.render(w, r, s, "invoices", "Invoices", map[string]any{"Period": period, "Invoices": invs,
		"Prev": prev, "Next": next, "Operator": s.P.Role == auth.RoleOperator})
	return nil
}

func (p *Portal) invoice(w http.ResponseWriter, r *http.Request, s *session) error {
	inv, err := p.d.Billing.Invoice(r.Context(), s.P, r.PathValue("number"))
	if err != nil {
		return err
	}
	p.render(w, r, s, "invoice", "Invoice "+inv.Number, inv)
	return nil
}

func (p *Portal) invoiceDownload(w http.ResponseWriter, r *http.Request, s *session) error {
	inv, err := p.d.Billing.Invoice(r.Context(), s.P, r.PathValue("number"))
	if err != nil {
		return err
	}
	switch r.URL.Query().Get("format") {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+inv.Number+`.csv"`)
		return billing.WriteInvoiceCSV(w, inv)
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+inv.Number+`.html"`)
		return billing.WriteInvoiceHTML(w, inv)
	}
	return arm.InvalidRequest("format", "Unknown format '%s': want csv or html.", r.URL.Query().Get("format"))
}

// reconciliation streams the daily rated usage file of a partner's period.
func (p *Portal) reconciliation(w http.ResponseWriter, r *http.Request, s *session) error {
	partner, period := r.URL.Query().Get("partner"), r.URL.Query().Get("period")
	if partner == "" {
		partner = s.P.PartnerID
	}
	if _, err := clock.ParsePeriod(period); err != nil {
		return arm.InvalidRequest("period", "'%s' is not a billing period (YYYY-MM).", period)
	}
	// Check access before the first byte, so a refusal is a page, not a
	// truncated file.
	if _, err := p.d.Billing.Invoice(r.Context(), s.P, "SB-"+strings.ReplaceAll(period, "-", "")+"-"+partner); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="reconciliation-`+partner+`-`+period+`.csv"`)
	return p.d.Billing.Reconciliation(r.Context(), s.P, partner, period, w, nil)
}

// statements shows a partner's (or reseller's) price books and the
// statements they produce, with the margin per customer.
func (p *Portal) statements(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	period, err := p.periodParam(r)
	if err != nil {
		return err
	}
	books, err := p.d.Billing.PriceBooks(ctx, s.P, s.P.PartnerID)
	if err != nil {
		return err
	}
	sts, err := p.d.Billing.Statements(ctx, s.P, s.P.PartnerID, period)
	if err != nil {
		return err
	}
	cur := ""
	cost, amount, margin := money.Zero, money.Zero, money.Zero
	for _, st := range sts {
		cur = st.Currency
		cost, amount, margin = cost.Add(st.Cost), amount.Add(st.Amount), margin.Add(st.Margin)
	}
	prev, next := p.periodNav(ctx, period)
	p.render(w, r, s, "statements", "Price books and statements", map[string]any{"Period": period, "Books": books, "Statements": sts,
		"Currency": cur, "Cost": cost, "Amount": amount, "Margin": margin, "Prev": prev, "Next": next})
	return nil
}

// periodNav is the month before period and the month after it, the latter
// "" when it has not begun: no page offers a month that has no usage yet.
func (p *Portal) periodNav(ctx context.Context, period string) (prev, next string) {
	start, err := clock.ParsePeriod(period)
	if err != nil {
		return "", ""
	}
	prev = clock.Period(start.AddDate(0, -1, 0))
	if n := clock.NextMonth(start); !n.After(p.now(ctx)) {
		next = clock.Period(n)
	}
	return prev, next
}

// statement is one account's statement for a period, line by line: what the
// account is charged for each subscription and meter, at what price and on
// what basis, beside the owner's cost.
func (p *Portal) statement(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	period, err := p.periodParam(r)
	if err != nil {
		return err
	}
	sts, err := p.d.Billing.Statements(ctx, s.P, s.P.PartnerID, period)
	if err != nil {
		return err
	}
	account := r.PathValue("account")
	for _, st := range sts {
		if st.Account == account {
			prev, next := p.periodNav(ctx, period)
			sc, err := p.usageScope(ctx, s.P)
			if err != nil {
				return err
			}
			p.render(w, r, s, "statement", "Statement "+st.AccountName+" "+period, map[string]any{"St": st, "Prev": prev, "Next": next, "SubNames": sc.subName})
			return nil
		}
	}
	// An account outside the caller's statements, or without usage in the
	// period, answers as one that does not exist.
	return arm.Errorf(arm.NotFound, "StatementNotFound", "No statement for account '%s' in %s among your customers and resellers.", account, period)
}

// periodParam is a page's ?period=, the current one when absent.
func (p *Portal) periodParam(r *http.Request) (string, error) {
	period := r.URL.Query().Get("period")
	if period == "" {
		return clock.Period(p.now(r.Context())), nil
	}
	if _, err := clock.ParsePeriod(period); err != nil {
		return "", arm.InvalidRequest("period", "'%s' is not a billing period (YYYY-MM).", period)
	}
	return period, nil
}
