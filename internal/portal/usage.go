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
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
)

// usageScope is who the subscriptions in a principal's scope belong to, for
// naming them on usage pages: a customer, or the partner itself (its own
// subscriptions, each shown as a customer of its own).
type usageScope struct {
	custName map[string]string // customer key → name
	owner    map[string]string // subscription (lower case) → customer key
	subName  map[string]string // subscription (lower case) → name
	ids      []string          // every subscription, lower case
}

func (p *Portal) usageScope(ctx context.Context, pr auth.Principal) (usageScope, error) {
	sc := usageScope{custName: map[string]string{}, owner: map[string]string{}, subName: map[string]string{}}
	subs, err := p.d.Directory.ListSubscriptions(ctx, pr)
	if err != nil {
		return sc, err
	}
	cs, err := p.d.Directory.ListCustomers(ctx, pr, "")
	if err != nil {
		return sc, err
	}
	for _, c := range cs {
		sc.custName[c.TenantID] = c.Name
	}
	for _, x := range subs {
		id := strings.ToLower(x.ID)
		key := x.CustomerTenantID
		if key == "" {
			key = "sub:" + id
			sc.custName[key] = "Default subscription " + x.ID[:8] + " (" + string(x.Offer) + ")"
		}
		name := x.Name
		if name == "" {
			name = string(x.Offer) + " " + x.ID[:8] + "…"
		}
		sc.owner[id], sc.subName[id] = key, name
		sc.ids = append(sc.ids, id)
	}
	return sc, nil
}

// subscription reads a page's ?subscription= and checks it is in scope: one
// outside it answers as if it did not exist.
func (sc usageScope) subscription(v string) (string, error) {
	id, ok := arm.CanonicalGUID(v)
	if !ok {
		return "", arm.InvalidRequest("subscription", "'%s' is not a subscription ID.", v)
	}
	id = strings.ToLower(id)
	if _, ok := sc.owner[id]; !ok {
		return "", arm.Errorf(arm.NotFound, "SubscriptionNotFound", "Subscription '%s' is not among the subscriptions you can see.", v)
	}
	return id, nil
}

// usageHref is the usage page for one subscription and meter over the
// usage days [from, to]: what an invoice or statement line links to.
func usageHref(sub, meterID string, from, to time.Time) string {
	q := url.Values{"subscription": {sub}, "meter": {meterID}, "from": {from.UTC().Format("2006-01-02")}, "to": {to.UTC().Format("2006-01-02")}}
	return "/portal/usage?" + q.Encode()
}

// usageRow is one row of the usage page's table, a step of the drill-down.
type usageRow struct {
	Name, Href string
	Qty        money.Quantity
	// Invoiced splits Qty by the invoice period that billed it, so that a
	// day's usage billed late on a later invoice shows where it went.
	Invoiced []ledger.PeriodQuantity
}

func (u *usageRow) addInvoiced(parts []ledger.PeriodQuantity) {
next:
	for _, x := range parts {
		for i := range u.Invoiced {
			if u.Invoiced[i].Period == x.Period {
				u.Invoiced[i].Quantity = u.Invoiced[i].Quantity.Add(x.Quantity)
				continue next
			}
		}
		u.Invoiced = append(u.Invoiced, x)
	}
	sort.Slice(u.Invoiced, func(i, j int) bool {
		// Periods in order, what is not billed yet last.
		a, b := u.Invoiced[i].Period, u.Invoiced[j].Period
		return a != "" && (b == "" || a < b)
	})
}

// crumb is one step back up a drill-down.
type crumb struct{ Name, Href string }

// commerceUsage charts forwarded usage of the subscriptions in scope, for one
// billing meter at a time (quantities of different meters do not add up).
// It drills down: all customers, one customer's subscriptions, one
// subscription's days, and from a day to its hourly records.
func (p *Portal) commerceUsage(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	rg, err := parseRange(r, p.now(ctx), 30)
	if err != nil {
		return err
	}
	sc, err := p.usageScope(ctx, s.P)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	customerFilter, subFilter := q.Get("customer"), ""
	if v := q.Get("subscription"); v != "" {
		if subFilter, err = sc.subscription(v); err != nil {
			return err
		}
		customerFilter = sc.owner[subFilter]
	}
	ids := []string{}
	for _, id := range sc.ids {
		if (customerFilter == "" || sc.owner[id] == customerFilter) && (subFilter == "" || id == subFilter) {
			ids = append(ids, id)
		}
	}
	if s.P.Role == auth.RoleOperator && customerFilter == "" && subFilter == "" {
		ids = nil // every subscription, without a list of them all
	}
	// Sums per subscription, meter and day (the rating index), not a row
	// per record: the page costs the same for a month of a thousand
	// records as of ten million.
	totals, err := p.d.Ledger.DailyTotals(ctx, ids, rg.From, rg.To, p.now(ctx))
	if err != nil {
		return err
	}
	type meterInfo struct {
		ID, Name, Unit string
		Total          money.Quantity
	}
	meters := map[string]*meterInfo{}
	meterOf := func(billingID, local string) string {
		if billingID == "" {
			return "local:" + local
		}
		return billingID
	}
	for _, t := range totals {
		id := meterOf(t.BillingMeterID, t.LocalMeterID)
		m := meters[id]
		if m == nil {
			m = &meterInfo{ID: id, Name: id, Total: money.Zero}
			meters[id] = m
		}
		m.Total = m.Total.Add(t.Quantity)
	}
	p.nameMeters(ctx, rg.To, func(id string) (*string, *string) {
		if m := meters[id]; m != nil {
			return &m.Name, &m.Unit
		}
		return nil, nil
	})
	var meterList []*meterInfo
	for _, m := range meters {
		meterList = append(meterList, m)
	}
	sort.Slice(meterList, func(i, j int) bool { return meterList[i].Name < meterList[j].Name })
	sel := q.Get("meter")
	if meters[sel] == nil {
		var cs []meterChoice
		for _, m := range meterList {
			cs = append(cs, meterChoice{Key: m.ID, Name: m.Name, Unit: m.Unit})
		}
		sel = defaultMeter(cs)
	}
	// The table is the next step down: customers, then a customer's
	// subscriptions, then a subscription's days.
	base := url.Values{"meter": {sel}, "from": {rg.FromText()}, "to": {rg.ToText()}}
	link := func(k, v string) string {
		u := url.Values{}
		for key, vs := range base {
			u[key] = vs
		}
		u.Set(k, v)
		return "/portal/usage?" + u.Encode()
	}
	level, keyOf, label := "Customer", func(sub string) string { return sc.owner[sub] }, func(k string) string { return sc.custName[k] }
	href := func(k string) string { return link("customer", k) }
	switch {
	case subFilter != "":
		level = "Day"
		label = func(k string) string { return k }
		keyOf = nil
		href = func(day string) string {
			return "/portal/usage/hours?" + url.Values{"subscription": {subFilter}, "meter": {sel}, "day": {day}}.Encode()
		}
	case customerFilter != "":
		level, keyOf, label = "Subscription", func(sub string) string { return sub }, func(k string) string { return sc.subName[k] }
		href = func(k string) string { return link("subscription", k) }
	}
	var pts []point
	rows := map[string]*usageRow{}
	total := money.Zero
	for _, t := range totals {
		if meterOf(t.BillingMeterID, t.LocalMeterID) != sel {
			continue
		}
		sub := strings.ToLower(t.SubscriptionID)
		k := t.Day.Format("2006-01-02")
		if keyOf != nil {
			k = keyOf(sub)
		}
		series := sc.owner[sub]
		if customerFilter != "" {
			series = sub
		}
		pts = append(pts, point{Bucket: t.Day, Key: series, Qty: t.Quantity})
		if rows[k] == nil {
			rows[k] = &usageRow{Name: label(k), Href: href(k), Qty: money.Zero}
		}
		rows[k].Qty = rows[k].Qty.Add(t.Quantity)
		rows[k].addInvoiced(t.Invoiced)
		total = total.Add(t.Quantity)
	}
	table := make([]usageRow, 0, len(rows))
	for _, x := range rows {
		table = append(table, *x)
	}
	sort.Slice(table, func(i, j int) bool {
		if level == "Day" {
			return table[i].Name < table[j].Name
		}
		if c := table[i].Qty.Cmp(table[j].Qty); c != 0 {
			return c > 0
		}
		return table[i].Name < table[j].Name
	})
	unit, title := "", "Usage"
	if m := meters[sel]; m != nil {
		unit, title = m.Unit, m.Name
	}
	legend, by := func(k string) string { return sc.custName[k] }, "customer"
	if customerFilter != "" {
		legend, by = func(k string) string { return sc.subName[k] }, "subscription"
	}
	c := buildChart("usage", title+" per day, by "+by, unit, "bar", pts, rg.From, rg.To, p.now(ctx), 24*time.Hour, legend)
	var custOpts []customerOpt
	seen := map[string]bool{}
	for _, key := range sc.owner {
		if !seen[key] {
			seen[key] = true
			custOpts = append(custOpts, customerOpt{Key: key, Name: sc.custName[key]})
		}
	}
	sort.Slice(custOpts, func(i, j int) bool { return custOpts[i].Name < custOpts[j].Name })
	crumbs := []crumb{{Name: "All customers", Href: link("customer", "")}}
	if customerFilter != "" {
		crumbs = append(crumbs, crumb{Name: sc.custName[customerFilter], Href: link("customer", customerFilter)})
	}
	if subFilter != "" {
		crumbs = append(crumbs, crumb{Name: sc.subName[subFilter] + " (" + subFilter + ")"})
	}
	crumbs[len(crumbs)-1].Href = ""
	p.render(w, r, s, "usage", "Usage", map[string]any{"Range": rg, "Meters": meterList, "Meter": sel, "Chart": c, "Table": table, "Total": total, "Unit": unit,
		"Level": level, "Customers": custOpts, "Customer": customerFilter, "Subscription": subFilter, "Crumbs": crumbs})
	return nil
}

type customerOpt struct{ Key, Name string }

// hourRow is one forwarded record as the hours page shows it.
type hourRow struct {
	Hour                                time.Time
	Stamp, Resource, LocalMeter, Billed string
	Qty, BillingQty                     money.Quantity
	LocalUnit                           string
}

// maxHourRecords bounds one day's hourly records on a page: a subscription
// with hundreds of resources has thousands in a day, and the reconciliation
// file is the place for all of them.
const maxHourRecords = 5000

// usageHours lists the hourly records behind one day of a subscription's
// usage of a meter, as the stack forwarded them: the last step of the
// drill-down from an invoice or a statement.
func (p *Portal) usageHours(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	q := r.URL.Query()
	sc, err := p.usageScope(ctx, s.P)
	if err != nil {
		return err
	}
	sub, err := sc.subscription(q.Get("subscription"))
	if err != nil {
		return err
	}
	day, err := time.Parse("2006-01-02", q.Get("day"))
	if err != nil {
		return arm.InvalidRequest("day", "'%s' is not a date (YYYY-MM-DD).", q.Get("day"))
	}
	mtr, local := q.Get("meter"), false
	if k, ok := strings.CutPrefix(mtr, "local:"); ok {
		norm, ok := meter.Normalize(k)
		if !ok {
			return arm.InvalidRequest("meter", "'%s' is not a meter ID.", k)
		}
		mtr, local = norm, true
	} else if id, ok := arm.CanonicalGUID(mtr); ok {
		mtr = id
	} else {
		return arm.InvalidRequest("meter", "'%s' is not a meter ID.", mtr)
	}
	recs, more, err := p.d.Ledger.HourRecords(ctx, sub, mtr, local, day, day.Add(24*time.Hour), maxHourRecords)
	if err != nil {
		return err
	}
	localMeters := p.localMeters(ctx)
	// Stamps are their registrations', which belong to the partner that
	// registered them: a reseller sees its customers' usage, not whose
	// stamp it ran on.
	showStamp := s.P.Role != auth.RoleReseller
	stamps := map[string]string{}
	if showStamp {
		regs, err := p.visibleRegistrations(ctx, s.P)
		if err != nil {
			return err
		}
		for _, x := range regs {
			stamps[x.CloudID] = x.Key.Name
		}
	}
	key := mtr
	if local {
		key = "local:" + mtr
	}
	name, unit := key, ""
	p.nameMeters(ctx, day, func(id string) (*string, *string) {
		if id == key {
			return &name, &unit
		}
		return nil, nil
	})
	rows := make([]hourRow, 0, len(recs))
	total := money.Zero
	var uris []point
	for _, x := range recs {
		uris = append(uris, point{Key: x.ResourceURI})
	}
	resource := resourceLabels(uris)
	for _, x := range recs {
		lm := localMeters[x.LocalMeterID]
		stamp := stamps[x.CloudID]
		if stamp == "" && showStamp {
			stamp = x.CloudID
		}
		rows = append(rows, hourRow{Hour: x.Hour, Stamp: stamp, Resource: resource(x.ResourceURI), LocalMeter: lm.Name, LocalUnit: lm.Unit,
			Qty: x.Quantity, BillingQty: x.BillingQuantity, Billed: x.BilledPeriod})
		total = total.Add(x.BillingQuantity)
	}
	pageRows, pg := paginate(r, rows)
	from := clock.DayStart(day)
	back := usageHref(sub, key, clock.MonthStart(from), clock.NextMonth(from).Add(-24*time.Hour))
	crumbs := []crumb{{Name: "All customers", Href: "/portal/usage?" + url.Values{"meter": {key}}.Encode()},
		{Name: sc.custName[sc.owner[sub]], Href: "/portal/usage?" + url.Values{"meter": {key}, "customer": {sc.owner[sub]}}.Encode()},
		{Name: sc.subName[sub] + " (" + sub + ")", Href: back}, {Name: from.Format("2006-01-02")}}
	p.render(w, r, s, "usagehours", "Hourly records, "+from.Format("2006-01-02"), map[string]any{"Rows": pageRows, "Pager": pg, "Count": len(rows), "More": more,
		"Max": maxHourRecords, "Total": total, "ShowStamp": showStamp, "Meter": name, "Unit": unit, "Crumbs": crumbs, "Day": from})
	return nil
}
