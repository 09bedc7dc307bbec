package billing

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/store"
)

// Invoice is one bill-to partner's invoice for one period.
type Invoice struct {
	Number      string     `json:"invoiceNumber"`
	PartnerID   string     `json:"partnerId"`
	PartnerName string     `json:"partnerName"`
	MpnID       string     `json:"mpnId,omitempty"`
	Period      string     `json:"period"`
	PeriodStart time.Time  `json:"periodStart"`
	PeriodEnd   time.Time  `json:"periodEnd"`
	Status      string     `json:"status"` // draft or final
	DraftUntil  time.Time  `json:"draftUntil"`
	FinalizedAt *time.Time `json:"finalizedAt,omitempty"`
	Currency    string     `json:"currency"`
	Rounding    string     `json:"rounding"`
	// TierRule and LateUsageRule state the rules the invoice was rated
	// under; a finalized invoice keeps them, whatever changes later.
	TierRule      string         `json:"tierRule"`
	LateUsageRule string         `json:"lateUsageRule"`
	Total         money.Quantity `json:"total"`
	Sections      []Section      `json:"sections"`
	CreditNotes   []CreditNote   `json:"creditNotes"`
	Credited      money.Quantity `json:"credited"`
	Balance       money.Quantity `json:"balance"`
}

// Section groups an invoice's lines per reseller (Tier 2); a direct
// partner's invoice and an indirect provider's own usage have one with no
// reseller.
type Section struct {
	ResellerID    string         `json:"resellerId,omitempty"`
	ResellerName  string         `json:"resellerName,omitempty"`
	ResellerMpnID string         `json:"resellerMpnId,omitempty"`
	Subtotal      money.Quantity `json:"subtotal"`
	Lines         []Line         `json:"lines"`
}

// Line is subscription × commerce meter (per registration, price version and
// tier) with everything a partner needs to bill it on.
type Line struct {
	No               int            `json:"lineNo"`
	Kind             string         `json:"kind"` // Usage or LateUsage
	CustomerTenantID string         `json:"customerTenantId,omitempty"`
	CustomerName     string         `json:"customerName,omitempty"`
	ResellerID       string         `json:"resellerId,omitempty"`
	ResellerMpnID    string         `json:"resellerMpnId,omitempty"`
	SubscriptionID   string         `json:"subscriptionId"`
	SubscriptionName string         `json:"subscriptionName,omitempty"`
	RegistrationUID  string         `json:"registrationUid"`
	Registration     string         `json:"registration"`
	CloudID          string         `json:"cloudId"`
	UsagePeriod      string         `json:"usagePeriod"`
	ChargeStart      time.Time      `json:"chargeStartDate"`
	ChargeEnd        time.Time      `json:"chargeEndDate"`
	MeterID          string         `json:"meterId"`
	MeterName        string         `json:"meterName"`
	MeterCategory    string         `json:"meterCategory"`
	MeterSubCategory string         `json:"meterSubCategory"`
	Unit             string         `json:"unit"`
	PriceListID      int64          `json:"priceListId"`
	Tier             string         `json:"tier"`
	Quantity         money.Quantity `json:"quantity"` // in Unit
	BilledQuantity   money.Quantity `json:"billedQuantity"`
	UnitPrice        money.Quantity `json:"unitPrice"`
	Amount           money.Quantity `json:"amount"`
	Currency         string         `json:"currency"`
}

// lateUsageRule states which usage a period's invoice takes, and where
// usage that arrives later goes.
func (s *Service) lateUsageRule(end time.Time) string {
	closes := end.Add(s.grace)
	grace := s.grace.String()
	if s.grace%time.Hour == 0 {
		grace = fmt.Sprintf("%d hours", s.grace/time.Hour)
	}
	how := fmt.Sprintf("%s after the month ends, for usage still on its way (--invoice-grace)", grace)
	if s.grace == 0 {
		how = "as the month ends, as Partner Center closes a period"
	}
	return fmt.Sprintf("This period closes at %s, %s. Usage reported until then is billed here; usage of this period reported later is billed on the next open invoice as LateUsage, continuing this period's tiers and included quantity.",
		closes.Format(time.RFC3339), how)
}

// Rounding states how amounts are rounded.
const Rounding = "each line rounded once to the currency's minor unit, half away from zero; total = sum of rounded lines"

func invoiceNumber(partnerID, period string) string {
	return "SB-" + strings.ReplaceAll(period, "-", "") + "-" + partnerID
}

func parseInvoiceNumber(n string) (partnerID, period string, ok bool) {
	if len(n) < 11 || !strings.HasPrefix(n, "SB-") || n[9] != '-' {
		return "", "", false
	}
	period = n[3:7] + "-" + n[7:9]
	if _, err := clock.ParsePeriod(period); err != nil {
		return "", "", false
	}
	return n[10:], period, true
}

// quantityIn converts billing units to the price's unit for display; the
// amount is always computed from the exact billed quantity.
func quantityIn(q money.Quantity, div int64) money.Quantity {
	if div == 1 {
		return q
	}
	return q.Div(money.FromInt(div), 9)
}

// build turns a rater's lines into invoices per bill-to partner.
func (s *Service) build(dir *dirSnapshot, r *rater, period string, status string) map[string]*Invoice {
	start, end, _ := clock.PeriodBounds(period)
	out := map[string]*Invoice{}
	sections := map[string]map[string]*Section{}
	for _, l := range r.lines {
		acct, _ := dir.Account(l.key.sub)
		inv := out[acct.BillTo]
		if inv == nil {
			pt := dir.Partners[acct.BillTo]
			inv = &Invoice{Number: invoiceNumber(acct.BillTo, period), PartnerID: acct.BillTo, PartnerName: pt.Name, MpnID: pt.MpnID, Period: period,
				PeriodStart: start, PeriodEnd: end, Status: status, DraftUntil: end.Add(s.grace), Currency: dir.currency(acct.BillTo), Rounding: Rounding,
				TierRule: TierRule, LateUsageRule: s.lateUsageRule(end), CreditNotes: []CreditNote{}}
			out[acct.BillTo] = inv
			sections[acct.BillTo] = map[string]*Section{}
		}
		sec := sections[acct.BillTo][acct.Reseller]
		if sec == nil {
			sec = &Section{ResellerID: acct.Reseller}
			if rp, ok := dir.Partners[acct.Reseller]; ok {
				sec.ResellerName, sec.ResellerMpnID = rp.Name, rp.MpnID
			}
			sections[acct.BillTo][acct.Reseller] = sec
		}
		minor, _ := MinorUnits(inv.Currency)
		st := l.sched.steps[l.key.step]
		ln := Line{Kind: "Usage", CustomerTenantID: acct.Customer, ResellerID: acct.Reseller, ResellerMpnID: sec.ResellerMpnID,
			SubscriptionID: l.key.sub, SubscriptionName: dir.Subscriptions[l.key.sub].Name, RegistrationUID: l.key.reg, Registration: dir.regs[l.key.reg].Name,
			CloudID: dir.regs[l.key.reg].CloudID, UsagePeriod: l.key.usagePeriod, ChargeStart: l.from, ChargeEnd: clock.ChargeEnd(l.to),
			MeterID: l.key.meter, MeterName: l.sched.price.MeterName, MeterCategory: l.sched.price.Category, MeterSubCategory: l.sched.price.SubCategory,
			Unit: l.sched.price.Unit, PriceListID: l.key.priceList, Tier: st.tier, Quantity: quantityIn(l.qty, l.sched.div), BilledQuantity: l.qty,
			UnitPrice: st.price, Amount: amountOf(l.numer, l.sched.div, minor), Currency: inv.Currency}
		if c, ok := dir.Customers[acct.Customer]; ok {
			ln.CustomerName = c.Name
		}
		if l.key.usagePeriod < period {
			ln.Kind = "LateUsage"
		}
		sec.Lines = append(sec.Lines, ln)
	}
	for id, inv := range out {
		keys := make([]string, 0, len(sections[id]))
		for k := range sections[id] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		no := 0
		for _, k := range keys {
			sec := sections[id][k]
			sort.Slice(sec.Lines, func(i, j int) bool { return lineLess(sec.Lines[i], sec.Lines[j]) })
			for i := range sec.Lines {
				no++
				sec.Lines[i].No = no
				sec.Subtotal = sec.Subtotal.Add(sec.Lines[i].Amount)
			}
			inv.Sections = append(inv.Sections, *sec)
			inv.Total = inv.Total.Add(sec.Subtotal)
		}
		inv.Balance = inv.Total
	}
	return out
}

func lineLess(a, b Line) bool {
	ka := []string{a.CustomerName, a.SubscriptionID, a.Kind, a.UsagePeriod, a.MeterCategory, a.MeterSubCategory, a.MeterID, a.Registration, a.RegistrationUID}
	kb := []string{b.CustomerName, b.SubscriptionID, b.Kind, b.UsagePeriod, b.MeterCategory, b.MeterSubCategory, b.MeterID, b.Registration, b.RegistrationUID}
	for i := range ka {
		if ka[i] != kb[i] {
			return ka[i] < kb[i]
		}
	}
	if a.PriceListID != b.PriceListID {
		return a.PriceListID < b.PriceListID
	}
	return a.ChargeStart.Before(b.ChargeStart) || (a.ChargeStart.Equal(b.ChargeStart) && a.Tier < b.Tier)
}

// periodState is a period's finalization state.
type periodState struct {
	finalized   bool
	finalizedAt time.Time
	prevFinal   bool
}

func (s *Service) periodState(ctx context.Context, q store.Querier, period string) (periodState, error) {
	var st periodState
	var at int64
	err := q.QueryRowContext(ctx, `SELECT finalized_at_us FROM billing_periods WHERE period = ?`, period).Scan(&at)
	switch {
	case err == nil:
		st.finalized, st.finalizedAt = true, clock.FromMicros(at)
	case !errors.Is(err, sql.ErrNoRows):
		return st, err
	}
	start, _ := clock.ParsePeriod(period)
	prev := clock.Period(start.AddDate(0, -1, 0))
	err = q.QueryRowContext(ctx, `SELECT finalized_at_us FROM billing_periods WHERE period = ?`, prev).Scan(&at)
	switch {
	case err == nil:
		st.prevFinal = true
	case !errors.Is(err, sql.ErrNoRows):
		return st, err
	}
	return st, nil
}

// rateRun is the outcome of rating one period.
type rateRun struct {
	invoices map[string]*Invoice
	rater    *rater
	records  int64
}

// rate rates a period's usage: the records finalization stamped (final), or
// those still unbilled (a draft, which also takes late usage when the
// previous period is finalized). subs, when not nil, limits the run to some
// charged subscriptions (one partner's view).
func (s *Service) rate(ctx context.Context, q store.Querier, dir *dirSnapshot, period string, final bool, subs []string) (rateRun, error) {
	start, end, err := clock.PeriodBounds(period)
	if err != nil {
		return rateRun{}, badPeriod(err)
	}
	st, err := s.periodState(ctx, q, period)
	if err != nil {
		return rateRun{}, err
	}
	rs := s.rateSetFor(period, start, end, final, st, subs)
	aggs, n, err := s.aggregate(ctx, q, rs)
	if err != nil {
		return rateRun{}, err
	}
	prior := map[priorKey]money.Quantity{}
	if earliest := earliestDay(aggs); earliest.Before(start) {
		if prior, err = loadPrior(ctx, q, earliest, period); err != nil {
			return rateRun{}, err
		}
	}
	cat, err := newCatalog(ctx, q)
	if err != nil {
		return rateRun{}, err
	}
	r := newRater(cat, dir, prior)
	for _, a := range aggs {
		if err := r.feed(ctx, a.reg, a.sub, a.meter, a.day, a.qty, nil); err != nil {
			return rateRun{}, err
		}
	}
	status := "draft"
	if final {
		status = "final"
	}
	return rateRun{invoices: s.build(dir, r, period, status), rater: r, records: n}, nil
}

// earliestDay is the first usage day among aggs (zero when there are none).
func earliestDay(aggs []dayAgg) time.Time {
	var first time.Time
	for _, a := range aggs {
		if first.IsZero() || a.day.Before(first) {
			first = a.day
		}
	}
	return first
}

// subsBilledTo lists the charged subscriptions whose bill goes to partnerID.
func (d *dirSnapshot) subsBilledTo(partnerID string) []string {
	out := []string{}
	for id := range d.Subscriptions {
		if a, ok := d.Account(id); ok && a.BillTo == partnerID {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Invoices lists the invoices of a period that the caller may see: every
// bill-to partner's for the operator, a partner's own, none for a reseller
// (it is billed by its provider and sees its customers through statements).
func (s *Service) Invoices(ctx context.Context, p auth.Principal, period string) ([]Invoice, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, err
	}
	if _, err := clock.ParsePeriod(period); err != nil {
		return nil, badPeriod(err)
	}
	if sc.reseller {
		return []Invoice{}, nil
	}
	partner := ""
	if !sc.all {
		partner = sc.partner
	}
	invs, err := s.periodInvoices(ctx, nil, period, partner)
	if err != nil {
		return nil, err
	}
	out := []Invoice{}
	for _, inv := range invs {
		out = append(out, *inv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PartnerID < out[j].PartnerID })
	return out, nil
}

// periodInvoices returns a period's invoices, finalized (stored) or draft
// (rated now); partner limits them to one bill-to partner. dir is the
// caller's directory snapshot, or nil to read one when a draft needs it.
func (s *Service) periodInvoices(ctx context.Context, dir *dirSnapshot, period, partner string) (map[string]*Invoice, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	st, err := s.periodState(ctx, s.db, period)
	if err != nil {
		return nil, err
	}
	if st.finalized {
		return s.storedInvoices(ctx, period, partner)
	}
	if dir == nil {
		if dir, err = s.loadDirectory(ctx, s.db); err != nil {
			return nil, err
		}
	}
	var subs []string
	if partner != "" {
		subs = dir.subsBilledTo(partner)
	}
	run, err := s.rate(ctx, s.db, dir, period, false, subs)
	if err != nil {
		return nil, err
	}
	return run.invoices, nil
}

func (s *Service) storedInvoices(ctx context.Context, period, partner string) (map[string]*Invoice, error) {
	q := `SELECT document FROM invoices WHERE period = ?`
	args := []any{period}
	if partner != "" {
		q += ` AND partner_id = ?`
		args = append(args, partner)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out := map[string]*Invoice{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			rows.Close()
			return nil, err
		}
		var inv Invoice
		if err := json.Unmarshal([]byte(doc), &inv); err != nil {
			rows.Close()
			return nil, err
		}
		out[inv.PartnerID] = &inv
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, inv := range out {
		if err := s.attachCredits(ctx, inv); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Invoice returns one invoice by number. Invoices outside the caller's scope
// are reported as not found.
func (s *Service) Invoice(ctx context.Context, p auth.Principal, number string) (Invoice, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return Invoice{}, err
	}
	partner, period, ok := parseInvoiceNumber(number)
	if !ok || !sc.billTo(partner) {
		return Invoice{}, notFound("Invoice", number)
	}
	invs, err := s.periodInvoices(ctx, nil, period, partner)
	if err != nil {
		return Invoice{}, err
	}
	inv, ok := invs[partner]
	if !ok {
		return Invoice{}, notFound("Invoice", number)
	}
	return *inv, nil
}

// PeriodSummary is the operator's view of a period.
type PeriodSummary struct {
	Period      string                    `json:"period"`
	Status      string                    `json:"status"`
	FinalizedAt *time.Time                `json:"finalizedAt,omitempty"`
	DraftUntil  time.Time                 `json:"draftUntil"`
	Records     int64                     `json:"records"`
	Invoices    []InvoiceSummary          `json:"invoices"`
	Unpriced    []Unpriced                `json:"unpriced"`
	NotCSP      map[string]money.Quantity `json:"notCspBilled"`
}

// unpricedList is the rater's unpriced usage in a stable order.
func (r *rater) unpricedList() []Unpriced {
	out := []Unpriced{}
	for _, u := range r.unpriced {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.MeterID != b.MeterID {
			return a.MeterID < b.MeterID
		}
		if a.PartnerID != b.PartnerID {
			return a.PartnerID < b.PartnerID
		}
		return a.Day.Before(b.Day)
	})
	return out
}

// Attention is what in billing needs someone to act, as p may see it.
type Attention struct {
	// Unpriced is usage of the current period with no price in force, on
	// the invoices p sees: finalization will refuse the period until a
	// price list covers it.
	Unpriced []Unpriced `json:"unpriced"`
	// Awaiting are the periods whose grace has passed that are not
	// finalized (the operator's; automatic finalization, when on, takes
	// them unless something blocks it).
	Awaiting []string `json:"awaitingFinalization"`
}

// maxAwaiting bounds the periods Attention lists.
const maxAwaiting = 24

// Attention says what needs acting on now: unpriced usage for the operator
// and partners (their own), and periods awaiting finalization for the
// operator. Resellers are invoiced by their provider, not by stackbill, and
// have nothing here.
func (s *Service) Attention(ctx context.Context, p auth.Principal) (Attention, error) {
	o, err := s.Open(ctx, p)
	return o.Attention, err
}

// OpenPeriod is the period in progress as p sees it: its draft invoices
// (those Invoices answers) and what needs attention, from one rating pass.
type OpenPeriod struct {
	Period    string
	Invoices  []Invoice
	Attention Attention
}

// Open rates the period in progress once for both of what a home page
// shows of it: the drafts and what needs attention.
func (s *Service) Open(ctx context.Context, p auth.Principal) (OpenPeriod, error) {
	out := Attention{Unpriced: []Unpriced{}, Awaiting: []string{}}
	o := OpenPeriod{Period: clock.Period(s.clock.Now()), Invoices: []Invoice{}}
	sc, err := s.scope(ctx, p)
	if err != nil || sc.reseller {
		o.Attention = out
		return o, err
	}
	if err := s.settle(ctx); err != nil {
		return o, err
	}
	now := s.clock.Now()
	period := clock.Period(now)
	dir, err := s.loadDirectory(ctx, s.db)
	if err != nil {
		return o, err
	}
	var subs []string
	if !sc.all {
		subs = dir.subsBilledTo(sc.partner)
	}
	// The period in progress is never finalized (it closes after its end),
	// so its invoices are the drafts this pass rates.
	run, err := s.rate(ctx, s.db, dir, period, false, subs)
	if err != nil {
		return o, err
	}
	for _, inv := range run.invoices {
		o.Invoices = append(o.Invoices, *inv)
	}
	sort.Slice(o.Invoices, func(i, j int) bool { return o.Invoices[i].PartnerID < o.Invoices[j].PartnerID })
	for _, u := range run.rater.unpricedList() {
		if sc.all || u.PartnerID == sc.partner {
			out.Unpriced = append(out.Unpriced, u)
		}
	}
	o.Attention = out
	if !sc.all {
		return o, nil
	}
	// From the period after the last finalized one (or the first with
	// unbilled usage) up to the last whose grace has passed.
	var last sql.NullString
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(period) FROM billing_periods`).Scan(&last); err != nil {
		return o, err
	}
	var from time.Time
	if last.Valid {
		ls, err := clock.ParsePeriod(last.String)
		if err != nil {
			return o, err
		}
		from = clock.NextMonth(ls)
	} else {
		early, ok, err := s.ledger.EarliestUnbilled(ctx, s.db, time.Time{})
		if err != nil || !ok {
			return o, err
		}
		from = clock.MonthStart(early)
	}
	for m := from; len(out.Awaiting) < maxAwaiting; m = clock.NextMonth(m) {
		if now.Before(clock.NextMonth(m).Add(s.grace)) {
			break
		}
		out.Awaiting = append(out.Awaiting, clock.Period(m))
	}
	o.Attention = out
	return o, nil
}

// InvoiceSummary is one invoice's headline.
type InvoiceSummary struct {
	Number    string         `json:"invoiceNumber"`
	PartnerID string         `json:"partnerId"`
	Currency  string         `json:"currency"`
	Total     money.Quantity `json:"total"`
	Lines     int            `json:"lines"`
}

func (inv *Invoice) summary() InvoiceSummary {
	n := 0
	for _, sec := range inv.Sections {
		n += len(sec.Lines)
	}
	return InvoiceSummary{Number: inv.Number, PartnerID: inv.PartnerID, Currency: inv.Currency, Total: inv.Total, Lines: n}
}

// Period summarizes a period for the operator, including usage that cannot
// be invoiced yet: meters without a price and subscriptions no CSP partner is
// billed for.
func (s *Service) Period(ctx context.Context, p auth.Principal, period string) (PeriodSummary, error) {
	if p.Role != auth.RoleOperator {
		return PeriodSummary{}, arm.Forbidden(p.Actor(), "periods/read", "/v1/billing/periods/"+period)
	}
	if err := s.settle(ctx); err != nil {
		return PeriodSummary{}, err
	}
	_, end, err := clock.PeriodBounds(period)
	if err != nil {
		return PeriodSummary{}, badPeriod(err)
	}
	st, err := s.periodState(ctx, s.db, period)
	if err != nil {
		return PeriodSummary{}, err
	}
	dir, err := s.loadDirectory(ctx, s.db)
	if err != nil {
		return PeriodSummary{}, err
	}
	out := PeriodSummary{Period: period, Status: "open", DraftUntil: end.Add(s.grace), Unpriced: []Unpriced{}, NotCSP: map[string]money.Quantity{}}
	var invs map[string]*Invoice
	if st.finalized {
		out.Status, out.FinalizedAt = "finalized", &st.finalizedAt
		if invs, err = s.storedInvoices(ctx, period, ""); err != nil {
			return out, err
		}
	} else {
		run, err := s.rate(ctx, s.db, dir, period, false, nil)
		if err != nil {
			return out, err
		}
		invs, out.Records = run.invoices, run.records
		out.Unpriced = run.rater.unpricedList()
		out.NotCSP = run.rater.unbilled
	}
	for _, inv := range invs {
		out.Invoices = append(out.Invoices, inv.summary())
	}
	sort.Slice(out.Invoices, func(i, j int) bool { return out.Invoices[i].PartnerID < out.Invoices[j].PartnerID })
	return out, nil
}

// FinalizeResult reports a finalization.
type FinalizeResult struct {
	Period      string           `json:"period"`
	FinalizedAt time.Time        `json:"finalizedAt"`
	Already     bool             `json:"alreadyFinalized"`
	Invoices    []InvoiceSummary `json:"invoices"`
}

// Finalize closes a period: every record still unbilled with a usage date
// before the period's end is stamped with it (the period's own usage and late
// usage of earlier periods), rated, and stored as immutable invoices, all in
// one transaction. Finalizing again returns the same result. Periods close
// in order, and not before their end plus the grace period; usage on a meter
// with no price in force blocks finalization instead of being billed as free.
func (s *Service) Finalize(ctx context.Context, p auth.Principal, period string) (FinalizeResult, error) {
	if p.Role != auth.RoleOperator {
		return FinalizeResult{}, arm.Forbidden(p.Actor(), "periods/finalize", "/v1/billing/periods/"+period+"/finalize")
	}
	return s.finalize(ctx, p.Actor(), period)
}

func (s *Service) finalize(ctx context.Context, actor, period string) (FinalizeResult, error) {
	if err := s.settle(ctx); err != nil {
		return FinalizeResult{}, err
	}
	start, end, err := clock.PeriodBounds(period)
	if err != nil {
		return FinalizeResult{}, badPeriod(err)
	}
	now := s.clock.Now()
	res := FinalizeResult{Period: period}
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		res = FinalizeResult{Period: period}
		if s.db.Dialect == store.Postgres {
			// Instances sharing a database finalize one at a time: the
			// second waits here, then finds the period final.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7261004113)`); err != nil {
				return err
			}
		}
		st, err := s.periodState(ctx, tx, period)
		if err != nil {
			return err
		}
		if st.finalized {
			res.Already, res.FinalizedAt = true, st.finalizedAt
			return nil
		}
		if due := end.Add(s.grace); now.Before(due) {
			return arm.Errorf(arm.Invalid, "PeriodNotClosed",
				"Period %s stays open until %s (its end plus the %s grace period for usage still on its way); it cannot be finalized yet.",
				period, due.Format(time.RFC3339), s.grace)
		}
		var last sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT MAX(period) FROM billing_periods`).Scan(&last); err != nil {
			return err
		}
		if last.Valid {
			ls, _ := clock.ParsePeriod(last.String)
			if next := clock.Period(clock.NextMonth(ls)); next != period {
				return arm.Errorf(arm.Invalid, "PeriodOutOfOrder", "Periods are finalized in order: the next period to finalize is %s, not %s.", next, period)
			}
		} else {
			early, ok, err := s.ledger.EarliestUnbilled(ctx, tx, start)
			if err != nil {
				return err
			}
			if ok {
				first := clock.Period(early)
				return arm.Errorf(arm.Invalid, "PeriodOutOfOrder", "Periods are finalized in order: usage from %s is not billed yet, so finalize %s first.", first, first)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO billing_periods (period, finalized_at_us, finalized_by) VALUES (?, ?, ?)`, period, clock.Micros(now), actor); err != nil {
			return err
		}
		// What commerce received after the close waits for the next
		// invoice, however late finalization runs: the invoice states the rule.
		if err := s.ledger.MarkBilled(ctx, tx, period, end, end.Add(s.grace)); err != nil {
			return err
		}
		dir, err := s.loadDirectory(ctx, tx)
		if err != nil {
			return err
		}
		if err := saveDirectory(ctx, tx, period, dir); err != nil {
			return err
		}
		run, err := s.rate(ctx, tx, dir, period, true, nil)
		if err != nil {
			return err
		}
		if len(run.rater.unpriced) > 0 {
			var miss []string
			seen := map[string]bool{}
			for _, u := range run.rater.unpriced {
				// Each meter once, however many partners used it.
				if m := fmt.Sprintf("%s (%s, %s)", u.MeterID, u.Currency, clock.Period(u.Day)); !seen[m] {
					seen[m] = true
					miss = append(miss, m)
				}
			}
			sort.Strings(miss)
			return arm.Errorf(arm.Invalid, "MissingPrices",
				"Period %s cannot be finalized: usage on these meters has no price in force: %s. Import a price list that covers them.", period, strings.Join(miss, ", "))
		}
		res.FinalizedAt = now
		ids := make([]string, 0, len(run.invoices))
		for id := range run.invoices {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			inv := run.invoices[id]
			at := now
			inv.FinalizedAt, inv.Status = &at, "final"
			doc, err := json.Marshal(inv)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO invoices (number, partner_id, period, currency, total, finalized_at_us, document) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				inv.Number, inv.PartnerID, period, inv.Currency, inv.Total.String(), clock.Micros(now), string(doc)); err != nil {
				return err
			}
			for _, sec := range inv.Sections {
				for _, l := range sec.Lines {
					if _, err := tx.ExecContext(ctx, `INSERT INTO invoice_lines (invoice_number, line_no, kind, reseller_id, customer_tenant_id, subscription_id, registration_uid,
						usage_period, meter_id, price_list_id, tier_from, quantity, unit_price, amount) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
						inv.Number, l.No, l.Kind, l.ResellerID, l.CustomerTenantID, l.SubscriptionID, l.RegistrationUID, l.UsagePeriod, l.MeterID, l.PriceListID,
						l.Tier, l.BilledQuantity.String(), l.UnitPrice.String(), l.Amount.String()); err != nil {
						return err
					}
				}
			}
			s.db.FailPoint("finalize-mid")
			res.Invoices = append(res.Invoices, inv.summary())
			// The audit record names the final document by its digest; the
			// document itself is in invoices.
			sum := sha256.Sum256(doc)
			if err := audit.Append(ctx, tx, audit.Entry{At: now, Actor: actor, Action: "invoice.finalize", Kind: "invoice", ID: inv.Number, Scope: inv.PartnerID,
				After: audit.JSON(map[string]any{"summary": inv.summary(), "documentSha256": hex.EncodeToString(sum[:])})}); err != nil {
				return err
			}
			// The partner hears of it from the same transaction, so an
			// invoice is announced exactly when it exists.
			data, err := json.Marshal(struct {
				InvoiceSummary
				Period      string    `json:"period"`
				FinalizedAt time.Time `json:"finalizedAt"`
			}{inv.summary(), period, now})
			if err != nil {
				return err
			}
			if _, err := notify.Record(ctx, tx, notify.Event{ID: "msg_invoice_finalized_" + inv.Number, Type: notify.InvoiceFinalized, At: now,
				PartnerID: inv.PartnerID, Subject: "invoices/" + inv.Number, Data: data}); err != nil {
				return err
			}
			// The partner's reconciliation file, as every later reader
			// will get it.
			w := periodFile(ctx, tx, period, fileReconciliation, id)
			if err := s.writeRecon(ctx, tx, id, period, w, nil); err != nil {
				return fmt.Errorf("reconciliation file of %s: %w", id, err)
			}
			if err := w.close(); err != nil {
				return err
			}
		}
		// Every owner's statements, priced with today's price books.
		owners := make([]string, 0, len(dir.Partners))
		for id := range dir.Partners {
			owners = append(owners, id)
		}
		sort.Strings(owners)
		for _, id := range owners {
			stmts, err := s.statements(ctx, tx, dir, dir.Partners[id], period, run.invoices)
			if err != nil {
				return fmt.Errorf("statements of %s: %w", id, err)
			}
			doc, err := json.Marshal(stmts)
			if err != nil {
				return err
			}
			w := periodFile(ctx, tx, period, fileStatements, id)
			if _, err := w.Write(doc); err != nil {
				return err
			}
			if err := w.close(); err != nil {
				return err
			}
		}
		// Conservation: every view just stored agrees with the invoices,
		// and the invoices with the usage they bill; if not, nothing of
		// this finalization is kept.
		var rep VerifyReport
		if err := s.verifyPeriod(ctx, tx, period, run.invoices, &rep); err != nil {
			return err
		}
		if len(rep.Differences) > 0 {
			var lines []string
			for i, d := range rep.Differences {
				if i == 10 {
					lines = append(lines, fmt.Sprintf("… and %d more", len(rep.Differences)-10))
					break
				}
				lines = append(lines, d.String())
			}
			s.logger.Error("finalization refused: the views of the bill disagree", "period", period, "differences", len(rep.Differences))
			return arm.Errorf(arm.Internal, "BillingNotConserved",
				"Period %s was not finalized: its views disagree (stackbill billing verify --period %s lists them): %s", period, period, strings.Join(lines, "; "))
		}
		return nil
	})
	if err != nil {
		return FinalizeResult{}, err
	}
	if res.Already {
		invs, err := s.storedInvoices(ctx, period, "")
		if err != nil {
			return FinalizeResult{}, err
		}
		for _, inv := range invs {
			res.Invoices = append(res.Invoices, inv.summary())
		}
		sort.Slice(res.Invoices, func(i, j int) bool { return res.Invoices[i].PartnerID < res.Invoices[j].PartnerID })
	} else {
		s.logger.Info("billing period finalized", "period", period, "invoices", len(res.Invoices), "actor", actor)
	}
	if res.Invoices == nil {
		res.Invoices = []InvoiceSummary{}
	}
	return res, nil
}

// FinalizeDue finalizes, in order, every period whose grace has passed. The
// commerce service runs it periodically; finalization is idempotent, so
// several instances may race on it safely.
func (s *Service) FinalizeDue(ctx context.Context) ([]string, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	var done []string
	for {
		var last sql.NullString
		if err := s.db.QueryRowContext(ctx, `SELECT MAX(period) FROM billing_periods`).Scan(&last); err != nil {
			return done, err
		}
		var next string
		if last.Valid {
			ls, _ := clock.ParsePeriod(last.String)
			next = clock.Period(clock.NextMonth(ls))
		} else {
			early, ok, err := s.ledger.EarliestUnbilled(ctx, s.db, time.Time{})
			if err != nil {
				return done, err
			}
			if !ok {
				return done, nil
			}
			next = clock.Period(early)
		}
		_, end, _ := clock.PeriodBounds(next)
		if s.clock.Now().Before(end.Add(s.grace)) {
			return done, nil
		}
		if _, err := s.finalize(ctx, "system/auto-finalize", next); err != nil {
			return done, err
		}
		done = append(done, next)
	}
}

// PurgeBilledUsage deletes forwarded usage of finalized periods before
// period (YYYY-MM), in batches along the (billed period, usage hour) index.
// Invoices keep their documents; reconciliation files and statements of the
// purged periods can no longer be produced, so export them first.
func (s *Service) PurgeBilledUsage(ctx context.Context, before string) (int64, error) {
	if _, err := clock.ParsePeriod(before); err != nil {
		return 0, badPeriod(err)
	}
	return s.ledger.PurgeBilled(ctx, before)
}
