package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/wire"
)

var truthWorlds = flag.Int("truth-worlds", 0, "worlds TestBillingTruthProperty generates per engine (default 200 on each engine)")

// TestBillingTruthProperty generates random billing worlds and checks every
// view of every bill against an independent recomputation from the raw
// usage, written here with math/big and without calling billing's code.
//
// A world: a direct CSP and an indirect provider with a reseller, each with
// customers holding two CSP subscriptions; a currency each (USD, 2 minor
// digits, or JPY, none); price lists with tiers and included quantities,
// and a second version mid-month; two stamps whose tenants are mapped,
// re-mapped between their subscriptions and removed at random hours; usage
// with random decimals over two months, some of it reported after the
// first month was finalized (late usage), some within its grace; price
// books; and a credit note. The worlds run one after another on one
// database, two months each, so that hundreds fit in CI.
func TestBillingTruthProperty(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("hundreds of generated billing worlds: the full suite runs them")
	}
	storetest.Each(t, func(t *testing.T, backend string) {
		n := 200
		if *truthWorlds > 0 {
			n = *truthWorlds
		}
		clk := clock.Manual(time.Date(2020, 12, 1, 0, 0, 0, 0, time.UTC))
		e := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
		lines := 0
		for k := 0; k < n; k++ {
			w := &truthWorld{e: e, clk: clk, k: k, rng: rand.New(rand.NewPCG(uint64(k+1), 0x57ac6b111)), t: t}
			w.run()
			lines += w.lines
			if t.Failed() {
				t.Fatalf("world %d (seed %d) disagrees with the recomputation; rerun with -run 'TestBillingTruthProperty/%s' -truth-worlds %d", k, k+1, backend, k+1)
			}
		}
		t.Logf("%d worlds, %d invoice lines, every view equal to the recomputation", n, lines)
	})
}

// The local meters the worlds use, with their billing meters and whether a
// price is per month of hourly usage (the 730-hour month).
var truthMeters = []struct {
	local, billing, name, category, sub, unit string
	monthly                                   bool
}{
	{simulate.MeterBaseVM, "9c23489b-c01c-5893-b898-412bd252b0db", "1 Core", "Azure Stack Hub", "Base VM", "1 Hour", false},
	{simulate.MeterTableCapacity, "96f33ea2-68e0-5f55-9501-0be6f9fa9c98", "Tables", "Storage", "Tables", "1 GB/Month", true},
	{simulate.MeterBlockBlob, "8767aeb3-6909-4db2-9927-3f51e9a9085e", "Block Blob", "Storage", "Block Blob", "1 GB/Month", true},
}

type truthPrice struct {
	included *big.Rat   // in price units
	from     []*big.Rat // tier thresholds, ascending, from 0
	price    []*big.Rat
}

type truthVersion struct {
	id     int64
	from   time.Time
	prices []truthPrice // per truthMeters index
}

type truthMapping struct {
	tenant, sub string
	from, to    time.Time // to zero: still mapped
}

type truthStamp struct {
	reg        registration.Registration
	key        registration.Key
	billTo     string
	defaultSub string
	tenants    []string // customer tenants (mappable) and one that never is
	localSub   map[string]string
	mappings   []truthMapping
}

type truthRecord struct {
	stamp           *truthStamp
	tenant, meter   int
	uri             string
	usage, reported time.Time
	qty             string
}

type truthWorld struct {
	t                  *testing.T
	e                  *testEnv
	clk                *clock.Clock
	k                  int
	rng                *rand.Rand
	m1, m2             time.Time
	close1, fin1, fin2 time.Time
	currency           map[string]string // bill-to partner → currency
	versions           map[string][]truthVersion
	subPartner         map[string]string // CSP subscription → bill-to partner
	subCustomer        map[string]string // subscription → customer tenant
	customerReseller   map[string]string // customer tenant → reseller ("" for a direct CSP's)
	markup             map[[2]string]int64
	stamps             []*truthStamp
	records            []truthRecord
	direct, prov, resl string
	lines              int
}

func (w *truthWorld) id(kind string, i int) string {
	return fmt.Sprintf("%08x-%04x-4000-8000-%012x", w.k+1, i, map[string]int{"cust": 1, "sub": 2, "ss": 3, "tenant": 4, "local": 5}[kind])
}

func (w *truthWorld) rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		w.t.Fatalf("not a number: %q", s)
	}
	return r
}

func (w *truthWorld) run() {
	ctx := context.Background()
	t := w.t
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
	base := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	w.m1 = base.AddDate(0, 2*w.k, 0)
	w.m2 = w.m1.AddDate(0, 1, 0)
	grace := 24 * time.Hour
	// The first month closes at its end plus the grace; half the worlds
	// finalize it later than that, and what arrives in between is the
	// next invoice's, as the invoice's rule says.
	w.close1 = w.m2.Add(grace)
	w.fin1, w.fin2 = w.close1, w.m2.AddDate(0, 1, 0).Add(grace)
	if w.rng.IntN(2) == 0 {
		w.fin1 = w.close1.Add(time.Duration(1+w.rng.IntN(72*60)) * time.Minute)
	}
	start := w.m1.Add(grace + time.Minute) // the world before closed its last month then
	w.clk.Set(start)

	// The directory: a direct CSP, a provider and its reseller.
	w.direct, w.prov, w.resl = fmt.Sprintf("d%d", w.k), fmt.Sprintf("p%d", w.k), fmt.Sprintf("r%d", w.k)
	dirs := w.e.app.Directory
	for _, p := range []directory.Partner{{ID: w.direct, Name: "Direct " + w.direct, Type: directory.DirectCSP},
		{ID: w.prov, Name: "Provider " + w.prov, Type: directory.IndirectProvider}, {ID: w.resl, Name: "=Reseller " + w.resl, Type: directory.IndirectReseller, Provider: w.prov}} {
		if _, _, err := dirs.PutPartner(ctx, op, p); err != nil {
			t.Fatal(err)
		}
	}
	w.currency = map[string]string{}
	w.subPartner, w.subCustomer, w.customerReseller = map[string]string{}, map[string]string{}, map[string]string{}
	for _, bt := range []string{w.direct, w.prov} {
		w.currency[bt] = []string{"USD", "JPY"}[w.rng.IntN(2)]
		if _, err := w.e.app.Billing.SetAgreement(ctx, op, billing.Agreement{PartnerID: bt, Currency: w.currency[bt]}); err != nil {
			t.Fatal(err)
		}
	}
	sub := 0
	newSub := func(partner, customer string, offer directory.Offer) string {
		sub++
		id := w.id("sub", sub)
		if _, _, err := dirs.PutSubscription(ctx, op, directory.Subscription{ID: id, Offer: offer, Partner: partner, CustomerTenantID: customer}); err != nil {
			t.Fatal(err)
		}
		w.subPartner[id], w.subCustomer[id] = partner, customer
		return id
	}
	// stamps: each bill-to partner's CSPSS default subscription, and two
	// customers (each with two subscriptions) that its tenants belong to.
	cust := 0
	for i, bt := range []string{w.direct, w.prov} {
		st := &truthStamp{billTo: bt, localSub: map[string]string{}}
		st.defaultSub = newSub(bt, "", directory.OfferCSPSS)
		owner := bt
		if bt == w.prov {
			owner = w.resl
		}
		for c := 0; c < 2; c++ {
			cust++
			tenant := w.id("cust", cust)
			if _, _, err := dirs.PutCustomer(ctx, op, directory.Customer{TenantID: tenant, Name: fmt.Sprintf("@Customer %d-%d", w.k, cust), Partner: owner}); err != nil {
				t.Fatal(err)
			}
			if owner == w.resl {
				w.customerReseller[tenant] = w.resl
			}
			newSub(bt, tenant, directory.OfferCSP)
			newSub(bt, tenant, directory.OfferCSP)
			st.tenants = append(st.tenants, tenant)
		}
		st.tenants = append(st.tenants, w.id("tenant", 10+i)) // never mapped: charged to the default subscription
		for j, tn := range st.tenants {
			st.localSub[tn] = w.id("local", 10*i+j)
		}
		st.key = regKey(st.defaultSub, "azurestack", fmt.Sprintf("stamp-%d-%d", w.k, i))
		tok := storetest.SignedToken(registration.Token{CloudID: randomGUID(), ObjectID: randomGUID(), BillingModel: registration.PayAsYouUse})
		loc := "global"
		reg, _, err := w.e.app.Registrations.Put(ctx, op, st.key, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{})
		if err != nil {
			t.Fatal(err)
		}
		if reg, err = w.e.app.Registrations.Approve(ctx, op, st.key, true); err != nil {
			t.Fatal(err)
		}
		st.reg = reg
		w.stamps = append(w.stamps, st)
	}
	// Price books: the direct CSP's markup for its customers, the
	// provider's for its reseller, the reseller's for its customers.
	w.markup = map[[2]string]int64{}
	for _, b := range []struct{ owner, target string }{{w.direct, "default"}, {w.prov, w.resl}, {w.resl, "default"}} {
		m := int64(w.rng.IntN(31))
		w.markup[[2]string{b.owner, b.target}] = m
		role := auth.RolePartner
		if b.owner == w.resl {
			role = auth.RoleReseller
		}
		if _, err := w.e.app.Billing.PutPriceBook(ctx, auth.Principal{Role: role, PartnerID: b.owner, TokenID: "b"}, billing.PriceBook{Owner: b.owner, Target: b.target, MarkupPercent: money.FromInt(m)}); err != nil {
			t.Fatal(err)
		}
	}
	// Price lists: a version per currency from the first month's start,
	// and for one currency a second from a day in it.
	w.versions = map[string][]truthVersion{}
	for _, cur := range []string{"USD", "JPY"} {
		w.importVersion(cur, w.m1)
	}
	w.importVersion([]string{"USD", "JPY"}[w.rng.IntN(2)], w.m1.AddDate(0, 0, 9+w.rng.IntN(10)))

	// Mapping changes at random hours: a tenant is mapped to one of its
	// customer's subscriptions, maybe re-mapped to the other, maybe removed.
	type event struct {
		at  time.Time
		act func()
	}
	var events []event
	randHour := func(from, to time.Time) time.Time {
		h := int(to.Sub(from) / time.Hour)
		return from.Add(time.Duration(w.rng.IntN(h)) * time.Hour).Add(time.Duration(1+w.rng.IntN(58)) * time.Minute)
	}
	for _, st := range w.stamps {
		for _, tenant := range st.tenants[:len(st.tenants)-1] {
			subs := w.subsOf(tenant)
			at := randHour(start, w.m2.AddDate(0, 1, 0))
			first := subs[w.rng.IntN(2)]
			events = append(events, event{at, w.mapAct(st, tenant, first)})
			if w.rng.IntN(2) == 0 {
				at2 := randHour(at.Add(time.Hour), w.m2.AddDate(0, 1, 0).Add(time.Hour))
				other := subs[0]
				if other == first {
					other = subs[1]
				}
				events = append(events, event{at2, w.mapAct(st, tenant, other)})
				at = at2
			}
			if w.rng.IntN(3) == 0 {
				at3 := randHour(at.Add(time.Hour), w.m2.AddDate(0, 1, 0).Add(2*time.Hour))
				events = append(events, event{at3, w.unmapAct(st, tenant)})
			}
		}
	}
	// Usage: random records over both months, a fifth of the first
	// month's reported after it was finalized.
	seen := map[string]bool{}
	for _, st := range w.stamps {
		for ti := range st.tenants {
			for r := 0; r < 6+w.rng.IntN(10); r++ {
				usage := w.m1.Add(time.Duration(w.rng.IntN(int(w.m2.AddDate(0, 1, 0).Sub(w.m1)/time.Hour))) * time.Hour)
				reported := usage.Add(time.Hour)
				switch {
				case usage.Before(w.m2) && w.rng.IntN(5) == 0:
					reported = clock.HourStart(w.fin1.Add(time.Duration(1+w.rng.IntN(300)) * time.Hour))
				case usage.Before(w.m2) && w.fin1.After(w.close1) && w.rng.IntN(6) == 0:
					reported = clock.HourStart(w.close1.Add(time.Duration(w.rng.IntN(int(w.fin1.Sub(w.close1)/time.Minute)+1)) * time.Minute)) // after the close, before finalization
				case usage.Before(w.m2) && w.rng.IntN(8) == 0:
					reported = clock.HourStart(w.m2.Add(time.Duration(w.rng.IntN(20)) * time.Hour)) // within the grace
				}
				if !reported.After(start) {
					reported = clock.HourStart(start).Add(time.Hour)
				}
				rec := truthRecord{stamp: st, tenant: ti, meter: w.rng.IntN(len(truthMeters)), uri: fmt.Sprintf("/r/%d", w.rng.IntN(3)), usage: usage, reported: reported,
					qty: fmt.Sprintf("%d.%06d", w.rng.IntN(400), w.rng.IntN(1000000))}
				key := fmt.Sprint(st.key.Name, ti, rec.meter, rec.uri, usage, reported)
				if seen[key] || reported.After(w.fin2.Add(-time.Hour)) {
					continue
				}
				seen[key] = true
				w.records = append(w.records, rec)
				r := rec
				events = append(events, event{reported.Add(2 * time.Minute), func() { w.ingest(r) }})
			}
		}
	}
	var m1Invoices []billing.Invoice
	events = append(events, event{w.fin1, func() { w.finalize(clock.Period(w.m1)) }}, event{w.fin1.Add(time.Minute), func() {
		m1Invoices = w.credit()
	}}, event{w.fin2, func() { w.finalize(clock.Period(w.m2)) }})
	sort.SliceStable(events, func(i, j int) bool { return events[i].at.Before(events[j].at) })
	for _, ev := range events {
		if ev.at.After(w.clk.Now()) {
			w.clk.Set(ev.at)
		}
		ev.act()
		if t.Failed() {
			return
		}
	}
	_ = m1Invoices
	w.check()
}

func (w *truthWorld) subsOf(tenant string) []string {
	var out []string
	for s, c := range w.subCustomer {
		if c == tenant {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func (w *truthWorld) mapAct(st *truthStamp, tenant, sub string) func() {
	return func() {
		p := auth.Principal{Role: auth.RolePartner, PartnerID: st.billTo, TokenID: "p"}
		if _, err := w.e.app.Registrations.PutCustomerSubscription(context.Background(), p, st.key, sub, tenant, registration.Precondition{}); err != nil {
			w.t.Fatal(err)
		}
		now := w.clk.Now()
		for i := range st.mappings {
			if st.mappings[i].tenant == tenant && st.mappings[i].to.IsZero() {
				st.mappings[i].to = now
			}
		}
		st.mappings = append(st.mappings, truthMapping{tenant: tenant, sub: sub, from: now})
	}
}

func (w *truthWorld) unmapAct(st *truthStamp, tenant string) func() {
	return func() {
		p := auth.Principal{Role: auth.RolePartner, PartnerID: st.billTo, TokenID: "p"}
		for i := range st.mappings {
			m := &st.mappings[i]
			if m.tenant == tenant && m.to.IsZero() {
				if _, err := w.e.app.Registrations.DeleteCustomerSubscription(context.Background(), p, st.key, m.sub, registration.Precondition{}); err != nil {
					w.t.Fatal(err)
				}
				m.to = w.clk.Now()
			}
		}
	}
}

// importVersion imports a random price list of cur effective from.
func (w *truthWorld) importVersion(cur string, from time.Time) {
	var sb strings.Builder
	sb.WriteString("MeterId,MeterName,MeterCategory,MeterSubCategory,MeterRegion,Unit,MeterRates,IncludedQuantity,Currency,EffectiveDate\n")
	v := truthVersion{from: from}
	for _, m := range truthMeters {
		var p truthPrice
		price := func() string {
			if cur == "JPY" {
				return fmt.Sprintf("%d.%02d", 1+w.rng.IntN(14), w.rng.IntN(100))
			}
			return fmt.Sprintf("0.%04d", 10+w.rng.IntN(990))
		}
		p0, rates := price(), ""
		rates = "0:" + p0
		p.from, p.price = []*big.Rat{new(big.Rat)}, []*big.Rat{w.rat(p0)}
		if w.rng.IntN(2) == 0 {
			th := fmt.Sprint(20 + w.rng.IntN(300))
			p1 := price()
			rates += ";" + th + ":" + p1
			p.from, p.price = append(p.from, w.rat(th)), append(p.price, w.rat(p1))
		}
		inc := "0"
		if w.rng.IntN(3) == 0 {
			inc = fmt.Sprint(1 + w.rng.IntN(150))
		}
		p.included = w.rat(inc)
		v.prices = append(v.prices, p)
		fmt.Fprintf(&sb, "%s,%s,%s,%s,Azure Stack,%s,%s,%s,%s,%s\n", m.billing, m.name, m.category, m.sub, m.unit, rates, inc, cur, from.Format("2006-01-02"))
	}
	rep, err := w.e.app.Billing.ImportPriceList(context.Background(), auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, "truth", []byte(sb.String()), time.Time{})
	if err != nil {
		w.t.Fatalf("import %s: %v", cur, err)
	}
	v.id = rep.PriceList.ID
	w.versions[cur] = append(w.versions[cur], v)
}

func (w *truthWorld) ingest(r truthRecord) {
	st := r.stamp
	tenant := st.tenants[r.tenant]
	rec := wire.Record{SubscriptionID: st.localSub[tenant], TenantID: tenant, MeterID: truthMeters[r.meter].local, Quantity: money.MustQuantity(r.qty),
		UsageHour: r.usage, ReportedHour: r.reported, ResourceURI: r.uri, Location: "local"}
	rec.SetID(st.reg.CloudID)
	res, err := w.e.app.Ingestor.Ingest(context.Background(), auth.Principal{Role: auth.RoleBridge, RegistrationUID: st.reg.UID, TokenID: "b"},
		wire.Batch{CloudID: st.reg.CloudID, Records: []wire.Record{rec}})
	if err != nil || res.Accepted != 1 {
		w.t.Fatalf("ingest %+v: %+v %v", r, res, err)
	}
}

func (w *truthWorld) finalize(period string) {
	if _, err := w.e.app.Billing.Finalize(context.Background(), auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, period); err != nil {
		w.t.Fatalf("finalize %s: %v", period, err)
	}
}

// credit credits part of a random line of each first-month invoice.
func (w *truthWorld) credit() []billing.Invoice {
	ctx := context.Background()
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
	var out []billing.Invoice
	for _, bt := range []string{w.direct, w.prov} {
		inv, err := w.e.app.Billing.Invoice(ctx, op, "SB-"+w.m1.Format("200601")+"-"+bt)
		if err != nil {
			continue // no usage billed to it in the first month
		}
		out = append(out, inv)
		for _, sec := range inv.Sections {
			for _, l := range sec.Lines {
				if l.Amount.Sign() > 0 && w.rng.IntN(2) == 0 {
					minor, _ := billing.MinorUnits(inv.Currency)
					amt := l.Amount.Div(money.FromInt(2), minor)
					if amt.Sign() <= 0 {
						continue
					}
					if _, err := w.e.app.Billing.CreateCreditNote(ctx, op, inv.Number, billing.CreditRequest{Reason: "truth", Lines: []billing.CreditLine{{Line: l.No, Amount: amt}}}); err != nil {
						w.t.Fatalf("credit note: %v", err)
					}
					return out
				}
			}
		}
	}
	return out
}

// expected is the recomputation: invoice lines per bill-to partner and
// period, as "kind|usagePeriod|sub|meter|reg|priceList|tier" → billed
// quantity (billing units) and amount.
type expLine struct {
	qty, amount *big.Rat
	account     string // customer or reseller, "" for the partner's own
}

func roundHalfAway(r *big.Rat, minor int) *big.Rat {
	scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(minor)), nil))
	x := new(big.Rat).Mul(r, scale)
	neg := x.Sign() < 0
	x.Abs(x)
	q, rem := new(big.Int).QuoRem(x.Num(), x.Denom(), new(big.Int))
	if new(big.Int).Mul(rem, big.NewInt(2)).Cmp(x.Denom()) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	out := new(big.Rat).SetFrac(q, scale.Num())
	if neg {
		out.Neg(out)
	}
	return out
}

func (w *truthWorld) expected() map[string]map[string]*expLine {
	type recQ struct {
		day   time.Time
		reg   string
		qty   *big.Rat
		late  bool
		inv   string // the invoice's period
		price int    // meter index
	}
	// Charged subscription and invoice of each record.
	type seriesKey struct{ sub, meter, usagePeriod string }
	series := map[seriesKey][]recQ{}
	for _, r := range w.records {
		st := r.stamp
		tenant := st.tenants[r.tenant]
		charged := st.defaultSub
		for _, m := range st.mappings {
			if m.tenant == tenant && !m.from.After(r.usage) && (m.to.IsZero() || m.to.After(r.usage)) {
				charged = m.sub
			}
		}
		inv := clock.Period(r.usage)
		if r.usage.Before(w.m2) && !r.reported.Add(2*time.Minute).Before(w.close1) {
			inv = clock.Period(w.m2)
		}
		k := seriesKey{charged, truthMeters[r.meter].billing, clock.Period(r.usage)}
		series[k] = append(series[k], recQ{day: clock.DayStart(r.usage), reg: st.reg.UID, qty: w.rat(r.qty), inv: inv, late: inv != clock.Period(r.usage), price: r.meter})
	}
	out := map[string]map[string]*expLine{} // bill-to|period → lines
	for k, recs := range series {
		billTo := w.subPartner[k.sub]
		cur := w.currency[billTo]
		minor := map[string]int{"USD": 2, "JPY": 0}[cur]
		// Rated in usage order, a day's registrations in ID order; late
		// usage after what the first invoice billed.
		sort.SliceStable(recs, func(i, j int) bool {
			a, b := recs[i], recs[j]
			if a.late != b.late {
				return !a.late
			}
			if !a.day.Equal(b.day) {
				return a.day.Before(b.day)
			}
			return a.reg < b.reg
		})
		cum := new(big.Rat)
		type acc struct{ qty, numer *big.Rat }
		lines := map[string]*acc{}
		lineInv := map[string]string{}
		for _, rq := range recs {
			m := truthMeters[rq.price]
			var ver truthVersion
			for _, v := range w.versions[cur] {
				if !v.from.After(rq.day) {
					ver = v
				}
			}
			p := ver.prices[rq.price]
			div := big.NewRat(1, 1)
			if m.monthly {
				div = big.NewRat(730, 1)
			}
			inc := new(big.Rat).Mul(p.included, div)
			// Steps per the RateCard: [0, inc) free; then each tier from
			// max(threshold, inc).
			type stp struct {
				from  *big.Rat
				price *big.Rat
				tier  string
			}
			var steps []stp
			if inc.Sign() > 0 {
				steps = append(steps, stp{new(big.Rat), new(big.Rat), "included"})
			}
			for i := range p.from {
				from := new(big.Rat).Mul(p.from[i], div)
				if i+1 < len(p.from) && new(big.Rat).Mul(p.from[i+1], div).Cmp(inc) <= 0 {
					continue
				}
				if from.Cmp(inc) < 0 {
					from = inc
				}
				steps = append(steps, stp{from, p.price[i], p.from[i].RatString()})
			}
			rem := new(big.Rat).Set(rq.qty)
			pos := new(big.Rat).Set(cum)
			for i, s := range steps {
				if rem.Sign() <= 0 {
					break
				}
				take := new(big.Rat).Set(rem)
				if i+1 < len(steps) {
					next := steps[i+1].from
					if pos.Cmp(next) >= 0 {
						continue
					}
					if room := new(big.Rat).Sub(next, pos); room.Cmp(take) < 0 {
						take = room
					}
				}
				kind := "Usage"
				if rq.late {
					kind = "LateUsage"
				}
				lk := strings.Join([]string{kind, k.usagePeriod, k.sub, k.meter, rq.reg, fmt.Sprint(ver.id), s.tier}, "|")
				a := lines[lk]
				if a == nil {
					a = &acc{new(big.Rat), new(big.Rat)}
					lines[lk] = a
					lineInv[lk] = rq.inv
				}
				a.qty.Add(a.qty, take)
				a.numer.Add(a.numer, new(big.Rat).Quo(new(big.Rat).Mul(take, s.price), div))
				pos.Add(pos, take)
				rem.Sub(rem, take)
			}
			cum.Add(cum, rq.qty)
		}
		for lk, a := range lines {
			key := billTo + "|" + lineInv[lk]
			if out[key] == nil {
				out[key] = map[string]*expLine{}
			}
			account := w.subCustomer[k.sub]
			if r := w.customerReseller[account]; r != "" {
				account = r
			}
			out[key][lk] = &expLine{qty: a.qty, amount: roundHalfAway(a.numer, minor), account: account}
		}
	}
	return out
}

// check compares every view of every bill of the world with the expected
// lines: invoices (JSON, CSV), reconciliation files, statements, and the
// conservation check.
func (w *truthWorld) check() {
	ctx := context.Background()
	t := w.t
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
	want := w.expected()
	for _, bt := range []string{w.direct, w.prov} {
		cur := w.currency[bt]
		minor := map[string]int{"USD": 2, "JPY": 0}[cur]
		for _, month := range []time.Time{w.m1, w.m2} {
			period := clock.Period(month)
			exp := want[bt+"|"+period]
			inv, err := w.e.app.Billing.Invoice(ctx, op, "SB-"+month.Format("200601")+"-"+bt)
			if len(exp) == 0 {
				if err == nil && len(inv.Sections) > 0 {
					t.Errorf("%s %s: an invoice with nothing expected: total %s", bt, period, inv.Total)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %s: %v", bt, period, err)
				continue
			}
			got := map[string]billing.Line{}
			total := new(big.Rat)
			for _, sec := range inv.Sections {
				for _, l := range sec.Lines {
					lk := strings.Join([]string{l.Kind, l.UsagePeriod, l.SubscriptionID, l.MeterID, l.RegistrationUID, fmt.Sprint(l.PriceListID), l.Tier}, "|")
					got[lk] = l
					w.lines++
				}
			}
			for lk, e := range exp {
				l, ok := got[lk]
				if !ok {
					t.Errorf("%s %s: no line %s (want %s for %s)", bt, period, lk, e.amount.FloatString(minor), e.qty.FloatString(9))
					continue
				}
				if w.rat(l.BilledQuantity.String()).Cmp(e.qty) != 0 || w.rat(l.Amount.String()).Cmp(e.amount) != 0 {
					t.Errorf("%s %s line %s: %s for %s, want %s for %s", bt, period, lk, l.Amount, l.BilledQuantity, e.amount.FloatString(minor), e.qty.FloatString(9))
				}
				total.Add(total, e.amount)
			}
			for lk := range got {
				if _, ok := exp[lk]; !ok {
					t.Errorf("%s %s: an unexpected line %s: %s", bt, period, lk, got[lk].Amount)
				}
			}
			if w.rat(inv.Total.String()).Cmp(total) != 0 {
				t.Errorf("%s %s: total %s, want %s", bt, period, inv.Total, total.FloatString(minor))
			}
			credited := new(big.Rat)
			for _, cn := range inv.CreditNotes {
				credited.Add(credited, w.rat(cn.Total.String()))
			}
			if w.rat(inv.Balance.String()).Cmp(new(big.Rat).Sub(total, credited)) != 0 {
				t.Errorf("%s %s: balance %s, want the total %s less credits %s", bt, period, inv.Balance, total.FloatString(minor), credited.FloatString(minor))
			}
			// The CSV and the reconciliation file add up to the same total.
			var buf bytes.Buffer
			if err := billing.WriteInvoiceCSV(&buf, inv); err != nil {
				t.Fatal(err)
			}
			if s := sumCSV(t, buf.String(), "Amount"); s.Cmp(total) != 0 {
				t.Errorf("%s %s: the CSV sums to %s, want %s", bt, period, s.FloatString(minor), total.FloatString(minor))
			}
			_, recon := w.e.raw("GET", "/v1/billing/reconciliation?partner="+bt+"&period="+period, w.e.operator, "", nil)
			if s := sumCSV(t, recon, "BillingPreTaxTotal"); s.Cmp(total) != 0 {
				t.Errorf("%s %s: the reconciliation file sums to %s, want %s", bt, period, s.FloatString(minor), total.FloatString(minor))
			}
			// Statements: each account's cost is its lines; its charge the
			// owner's markup over it, rounded per subscription and meter.
			w.checkStatements(bt, period, minor, exp)
		}
	}
	// The world's own months: the earlier worlds' were verified when they ran.
	for _, month := range []time.Time{w.m1, w.m2} {
		rep, err := w.e.app.Billing.Verify(ctx, clock.Period(month))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range rep.Differences {
			t.Errorf("billing verify: %s", d)
		}
	}
}

func (w *truthWorld) checkStatements(bt, period string, minor int, exp map[string]*expLine) {
	t := w.t
	ctx := context.Background()
	// Cost per account, subscription and meter, from the expected lines.
	type key struct{ account, sub, meter string }
	cost := map[key]*big.Rat{}
	for lk, e := range exp {
		parts := strings.Split(lk, "|")
		if e.account == "" {
			continue
		}
		k := key{e.account, parts[2], parts[3]}
		if bt == w.direct {
			k.account = w.subCustomer[parts[2]]
		}
		if cost[k] == nil {
			cost[k] = new(big.Rat)
		}
		cost[k].Add(cost[k], e.amount)
	}
	owner := bt
	markup := w.markup[[2]string{w.direct, "default"}]
	if bt == w.prov {
		markup = w.markup[[2]string{w.prov, w.resl}]
	}
	stmts, err := w.e.app.Billing.Statements(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, owner, period)
	if err != nil {
		t.Fatalf("statements of %s: %v", owner, err)
	}
	gotCost, gotAmount := map[key]*big.Rat{}, map[key]*big.Rat{}
	for _, st := range stmts {
		for _, l := range st.Lines {
			if l.LocalOnly {
				continue
			}
			k := key{st.Account, l.SubscriptionID, strings.ToLower(l.MeterID)}
			gotCost[k], gotAmount[k] = w.rat(l.Cost.String()), w.rat(l.Amount.String())
		}
	}
	factor := big.NewRat(100+markup, 100)
	for k, c := range cost {
		wantAmount := roundHalfAway(new(big.Rat).Mul(c, factor), minor)
		if gotCost[k] == nil || gotCost[k].Cmp(c) != 0 || gotAmount[k].Cmp(wantAmount) != 0 {
			t.Errorf("%s's statement %s %s: cost %v amount %v, want cost %s amount %s (markup %d%%)", owner, period, k, gotCost[k], gotAmount[k],
				c.FloatString(minor), wantAmount.FloatString(minor), markup)
		}
	}
	if len(gotCost) != len(cost) {
		t.Errorf("%s's statements %s: %d lines, want %d", owner, period, len(gotCost), len(cost))
	}
}

func sumCSV(t *testing.T, file, column string) *big.Rat {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(file)).ReadAll()
	if err != nil || len(rows) == 0 {
		t.Fatalf("CSV: %v %.200s", err, file)
	}
	col := -1
	for i, h := range rows[0] {
		if h == column {
			col = i
		}
	}
	sum := new(big.Rat)
	for _, r := range rows[1:] {
		v, ok := new(big.Rat).SetString(r[col])
		if !ok {
			t.Fatalf("CSV %s: %q", column, r[col])
		}
		sum.Add(sum, v)
	}
	return sum
}
