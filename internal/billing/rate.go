package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// catalog answers "which price was in force for this meter, in this
// currency, on this day", loading each version once per run.
type catalog struct {
	q        store.Querier
	versions map[string][]versionRef
	prices   map[int64]map[string]*schedule
}

type versionRef struct {
	id   int64
	from time.Time
}

func newCatalog(ctx context.Context, q store.Querier) (*catalog, error) {
	c := &catalog{q: q, versions: map[string][]versionRef{}, prices: map[int64]map[string]*schedule{}}
	rows, err := q.QueryContext(ctx, `SELECT id, currency, effective_from_us FROM price_lists ORDER BY currency, effective_from_us`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var v versionRef
		var cur string
		var from int64
		if err := rows.Scan(&v.id, &cur, &from); err != nil {
			return nil, err
		}
		v.from = clock.FromMicros(from)
		c.versions[cur] = append(c.versions[cur], v)
	}
	return c, rows.Err()
}

// preload reads every version's prices now: a run that rates while it reads
// records (a reconciliation file in the finalization's transaction) cannot
// query prices while its record query is open on the same connection.
func (c *catalog) preload(ctx context.Context) error {
	for cur, vs := range c.versions {
		for _, v := range vs {
			if _, err := c.at(ctx, cur, "", v.from); err != nil {
				return err
			}
		}
	}
	return nil
}

// at returns the schedule in force, or nil when the meter has no price.
func (c *catalog) at(ctx context.Context, currency, meterID string, day time.Time) (*schedule, error) {
	vs := c.versions[currency]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].from.After(day) }) - 1
	if i < 0 {
		return nil, nil
	}
	id := vs[i].id
	m, ok := c.prices[id]
	if !ok {
		rows, err := c.q.QueryContext(ctx, `SELECT meter_id, meter_name, category, subcategory, region, unit, included_quantity, tiers FROM prices WHERE price_list_id = ?`, id)
		if err != nil {
			return nil, err
		}
		m = map[string]*schedule{}
		for rows.Next() {
			var pr Price
			var tiers string
			if err := rows.Scan(&pr.MeterID, &pr.MeterName, &pr.Category, &pr.SubCategory, &pr.Region, &pr.Unit, &pr.IncludedQuantity, &tiers); err != nil {
				rows.Close()
				return nil, err
			}
			if err := json.Unmarshal([]byte(tiers), &pr.Tiers); err != nil {
				rows.Close()
				return nil, fmt.Errorf("price list %d meter %s: %w", id, pr.MeterID, err)
			}
			m[pr.MeterID] = newSchedule(id, pr)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
		c.prices[id] = m
	}
	return m[meterID], nil
}

// schedule is a price converted to billing units: the included quantity is
// a free first step, then each tier. Thresholds are multiplied by the unit
// divisor (exact); amounts are divided by it once, per line.
//
// The tier rule is the Azure RateCard's: MeterRates keys are "the meter
// quantity" at which each rate starts, counted over everything consumed in
// the period, and IncludedQuantity is "included in the offer at no cost;
// consumption beyond this quantity will be charged". So the first
// IncludedQuantity units are free, and every unit after them is at the rate
// of the tier whose threshold it has passed: with 100 included and tiers at
// 0 and 500, units 100–500 are at the first rate and the rest at the second
// (TierRule states it on every invoice).
type schedule struct {
	priceList int64
	price     Price
	div       int64
	steps     []step
}

type step struct {
	from  money.Quantity // in billing units
	price money.Quantity // per price unit
	tier  string         // "included" or the tier's threshold in price units
}

// TierRule states how included quantities and tiers apply; every invoice
// carries it.
const TierRule = "IncludedQuantity is free; tier thresholds count all the quantity consumed in the usage period (the Azure RateCard's MeterRates), so each unit after the included ones is priced at the tier whose threshold it has passed; late usage continues its period's count"

func newSchedule(id int64, p Price) *schedule {
	div, _ := unitDivisor(p.Unit)
	d := money.FromInt(div)
	s := &schedule{priceList: id, price: p, div: div}
	inc := p.IncludedQuantity.Mul(d)
	if inc.Sign() > 0 {
		s.steps = append(s.steps, step{from: money.Zero, price: money.Zero, tier: "included"})
	}
	tiers := append([]Tier(nil), p.Tiers...)
	sort.Slice(tiers, func(i, j int) bool { return tiers[i].From.Cmp(tiers[j].From) < 0 })
	for i, t := range tiers {
		from := t.From.Mul(d)
		if i+1 < len(tiers) && tiers[i+1].From.Mul(d).Cmp(inc) <= 0 {
			continue // every unit of this tier is included
		}
		if from.Cmp(inc) < 0 {
			from = inc
		}
		s.steps = append(s.steps, step{from: from, price: t.Price, tier: t.From.String()})
	}
	return s
}

// piece is part of a quantity that falls in one step.
type piece struct {
	step int
	qty  money.Quantity
}

// split divides qty, consumed after cum units of the period, among steps.
func (s *schedule) split(cum, qty money.Quantity) []piece {
	var out []piece
	pos, rem := cum, qty
	for i := range s.steps {
		if rem.Sign() <= 0 {
			break
		}
		if i+1 < len(s.steps) {
			next := s.steps[i+1].from
			if pos.Cmp(next) >= 0 {
				continue
			}
			take := next.Sub(pos)
			if take.Cmp(rem) > 0 {
				take = rem
			}
			out = append(out, piece{i, take})
			pos, rem = pos.Add(take), rem.Sub(take)
			continue
		}
		out = append(out, piece{i, rem})
		rem = money.Zero
	}
	return out
}

// lineKey identifies an invoice line: subscription × commerce meter, split
// by registration, by price version and tier (so that quantity × unit price
// is the line's amount) and by whether it is late usage of an earlier period.
type lineKey struct {
	usagePeriod string
	sub, meter  string
	reg         string
	priceList   int64
	step        int
}

// lineAcc accumulates a line exactly.
type lineAcc struct {
	key      lineKey
	sched    *schedule
	qty      money.Quantity // billing units
	numer    money.Quantity // Σ qty × price, before the unit divisor
	from, to time.Time      // first and last usage day
}

func (l *lineAcc) add(day time.Time, qty money.Quantity) {
	st := l.sched.steps[l.key.step]
	l.qty = l.qty.Add(qty)
	l.numer = l.numer.Add(qty.Mul(st.price))
	if l.from.IsZero() || day.Before(l.from) {
		l.from = day
	}
	if day.After(l.to) {
		l.to = day
	}
}

// amount is the line's exact value rounded once to the currency's minor unit.
func amountOf(numer money.Quantity, div int64, minor int32) money.Quantity {
	if div != 1 {
		numer = numer.Div(money.FromInt(div), 40)
	}
	return numer.Round(minor)
}

// meterRun rates the usage of one subscription × meter × usage period in
// usage order, carrying the period's cumulative quantity across days,
// registrations and price versions (tiers and included quantity apply per
// subscription and meter over the billing period).
type meterRun struct {
	cum money.Quantity
}

// Unpriced is usage for a billed meter with no price in force: it blocks
// finalization rather than being silently free.
type Unpriced struct {
	// PartnerID is the bill-to partner whose invoice the usage would be on.
	PartnerID string         `json:"partnerId"`
	MeterID   string         `json:"meterId"`
	Currency  string         `json:"currency"`
	Day       time.Time      `json:"day"`
	Quantity  money.Quantity `json:"quantity"`
}

// rateSet is one rating pass: the forwarded usage an invoice set covers.
type rateSet struct {
	period     string
	start, end time.Time
	final      bool // the records finalization stamped with this period
	late       bool // a draft whose previous period is finalized takes late usage
	subs       []string
	// dayFrom and dayTo, when set, narrow the set to part of its usage days,
	// so that parts can be summed side by side.
	dayFrom, dayTo time.Time
	// receivedBefore, for a draft whose period has closed, leaves out what
	// commerce received after the close: finalization will leave it for the
	// next invoice, so the draft shows now what the invoice will be.
	receivedBefore time.Time
}

// rateSetFor is the records a period's invoices take: those finalization
// stamped with it, or for a draft those finalization would stamp now.
func (s *Service) rateSetFor(period string, start, end time.Time, final bool, st periodState, subs []string) rateSet {
	rs := rateSet{period: period, start: start, end: end, final: final, late: !final && st.prevFinal, subs: subs}
	if closes := end.Add(s.grace); !final && !s.clock.Now().Before(closes) {
		rs.receivedBefore = closes
	}
	return rs
}

// selection is the ledger's name for a rate set's records.
func (rs rateSet) selection() ledger.Selection {
	return ledger.Selection{Billed: rs.final, Period: rs.period, Start: rs.start, End: rs.end, Late: rs.late,
		DayFrom: rs.dayFrom, DayTo: rs.dayTo, ReceivedBefore: rs.receivedBefore, Subscriptions: rs.subs}
}

// aggregate sums a rate set per rating series and day, in the order rating
// consumes them (ledger.DaySums).
func (s *Service) aggregate(ctx context.Context, q store.Querier, rs rateSet) ([]dayAgg, int64, error) {
	sums, n, err := s.ledger.DaySums(ctx, q, rs.selection())
	if err != nil {
		return nil, 0, err
	}
	out := make([]dayAgg, len(sums))
	for i, d := range sums {
		out[i] = dayAgg{reg: d.Registration, sub: d.Subscription, meter: d.Meter, day: d.Day, qty: d.Quantity, series: d.Series}
	}
	return out, n, nil
}

// dayAgg is usage summed per registration, subscription, meter and day.
type dayAgg struct {
	reg, sub, meter string
	day             time.Time
	qty             money.Quantity
	series          int64
}

// priorKey finds what finalized invoices already billed of a usage period,
// where late usage continues the period's tiers.
type priorKey struct{ sub, meter, period string }

// loadPrior is what the invoices of periods before period billed, per
// subscription, meter and usage period. Only earlier invoices count: a
// finalized period's own LateUsage lines are what its rating produces, and
// counting them as already billed would bill them twice.
//
// Only usage periods from the earliest day being rated are read, so that the
// cost stays that of the months late usage reaches, not of all history.
func loadPrior(ctx context.Context, q store.Querier, earliest time.Time, before string) (map[priorKey]money.Quantity, error) {
	rows, err := q.QueryContext(ctx, `SELECT l.subscription_id, l.meter_id, l.usage_period, l.quantity FROM invoice_lines l
		JOIN invoices i ON i.number = l.invoice_number WHERE l.usage_period >= ? AND l.usage_period < ? AND i.period < ?`,
		clock.Period(earliest), before, before)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[priorKey]money.Quantity{}
	for rows.Next() {
		var k priorKey
		var qty money.Quantity
		if err := rows.Scan(&k.sub, &k.meter, &k.period, &qty); err != nil {
			return nil, err
		}
		out[k] = out[k].Add(qty)
	}
	return out, rows.Err()
}

// rater turns day aggregates into invoice lines.
type rater struct {
	cat   *catalog
	dir   *dirSnapshot
	prior map[priorKey]money.Quantity
	// runs is per subscription × meter × usage period.
	runs     map[priorKey]*meterRun
	lines    map[lineKey]*lineAcc
	unpriced map[string]*Unpriced
	unbilled map[string]money.Quantity // subscriptions with no CSP partner
}

func newRater(cat *catalog, dir *dirSnapshot, prior map[priorKey]money.Quantity) *rater {
	return &rater{cat: cat, dir: dir, prior: prior, runs: map[priorKey]*meterRun{}, lines: map[lineKey]*lineAcc{},
		unpriced: map[string]*Unpriced{}, unbilled: map[string]money.Quantity{}}
}

// feedFunc receives each piece of rated usage with its line.
type feedFunc func(l *lineAcc, qty money.Quantity)

// feed rates qty of (sub, meter) used on day via registration reg. Callers
// feed in (subscription, meter, day, registration) order.
func (r *rater) feed(ctx context.Context, reg, sub, meter string, day time.Time, qty money.Quantity, fn feedFunc) error {
	acct, ok := r.dir.Account(sub)
	if !ok {
		r.unbilled[sub] = r.unbilled[sub].Add(qty)
		return nil
	}
	cur := r.dir.currency(acct.BillTo)
	sched, err := r.cat.at(ctx, cur, meter, day)
	if err != nil {
		return err
	}
	period := clock.Period(day)
	if sched == nil {
		k := acct.BillTo + "|" + cur + "|" + meter + "|" + period
		u := r.unpriced[k]
		if u == nil {
			u = &Unpriced{PartnerID: acct.BillTo, MeterID: meter, Currency: cur, Day: day}
			r.unpriced[k] = u
		}
		u.Quantity = u.Quantity.Add(qty)
		return nil
	}
	pk := priorKey{sub, meter, period}
	run := r.runs[pk]
	if run == nil {
		run = &meterRun{cum: r.prior[pk]}
		r.runs[pk] = run
	}
	for _, pc := range sched.split(run.cum, qty) {
		lk := lineKey{usagePeriod: period, sub: sub, meter: meter, reg: reg, priceList: sched.priceList, step: pc.step}
		l := r.lines[lk]
		if l == nil {
			l = &lineAcc{key: lk, sched: sched}
			r.lines[lk] = l
		}
		l.add(day, pc.qty)
		if fn != nil {
			fn(l, pc.qty)
		}
	}
	run.cum = run.cum.Add(qty)
	return nil
}
