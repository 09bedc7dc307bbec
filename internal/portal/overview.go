package portal

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
)

// overviewTotal is one currency's month so far, beside last month.
type overviewTotal struct {
	Currency         string
	SoFar, LastMonth money.Quantity
	Forecast         money.Quantity
	// Charged and Margin are what the month's statements charge customers
	// (or resellers) from the price books, and what that leaves over cost.
	Charged, Margin   money.Quantity
	HasStatements     bool
	Change            string // forecast against last month, "" when last month had none
	Rising, HasChange bool
	HadLast           bool // whether last month had anything to show
}

// overviewAccount is one of the accounts with the most charges so far.
type overviewAccount struct {
	Name, Href, Currency string
	Amount               money.Quantity
}

// overview is the first page a partner, reseller or operator sees: what the
// month has come to so far, where it is heading, and who it comes from.
func (p *Portal) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	now := p.now(ctx)
	period, last := clock.Period(now), clock.Period(clock.MonthStart(now).AddDate(0, 0, -1))
	totals := map[string]*overviewTotal{}
	total := func(cur string) *overviewTotal {
		if totals[cur] == nil {
			totals[cur] = &overviewTotal{Currency: cur, SoFar: money.Zero, LastMonth: money.Zero, Charged: money.Zero, Margin: money.Zero}
		}
		return totals[cur]
	}
	byAccount := map[[2]string]*overviewAccount{}
	add := func(name, href, cur string, amount money.Quantity) {
		k := [2]string{name, cur}
		if byAccount[k] == nil {
			byAccount[k] = &overviewAccount{Name: name, Href: href, Currency: cur, Amount: money.Zero}
		}
		byAccount[k].Amount = byAccount[k].Amount.Add(amount)
	}
	byMeter := map[[2]string]*overviewAccount{}
	addMeter := func(name, cur string, amount money.Quantity) {
		k := [2]string{name, cur}
		if byMeter[k] == nil {
			byMeter[k] = &overviewAccount{Name: name, Href: "/portal/usage", Currency: cur, Amount: money.Zero}
		}
		byMeter[k].Amount = byMeter[k].Amount.Add(amount)
	}
	basis := "your invoices for the period (drafts until the month is finalized)"
	var att billing.Attention
	if s.P.Role == auth.RoleReseller {
		// A reseller is not invoiced by stackbill: its figures are what it
		// charges its customers, from its price book.
		basis = "what you charge your customers, from your price book (statements)"
		for i, per := range []string{period, last} {
			sts, err := p.d.Billing.Statements(ctx, s.P, s.P.PartnerID, per)
			if err != nil {
				return err
			}
			for _, st := range sts {
				t := total(st.Currency)
				if i == 0 {
					t.SoFar = t.SoFar.Add(st.Amount)
					add(st.AccountName, "/portal/statements/"+st.Account+"?period="+per, st.Currency, st.Amount)
					for _, l := range st.Lines {
						addMeter(l.MeterName, st.Currency, l.Amount)
					}
				} else {
					t.LastMonth, t.HadLast = t.LastMonth.Add(st.Amount), true
				}
			}
		}
	} else {
		// One rating pass gives this month's drafts and what needs
		// attention.
		open, err := p.d.Billing.Open(ctx, s.P)
		if err != nil {
			return err
		}
		att = open.Attention
		for i, per := range []string{period, last} {
			invs := open.Invoices
			if i == 1 || open.Period != period {
				if invs, err = p.d.Billing.Invoices(ctx, s.P, per); err != nil {
					return err
				}
			}
			for _, inv := range invs {
				t := total(inv.Currency)
				if i == 1 {
					t.LastMonth, t.HadLast = t.LastMonth.Add(inv.Total), true
					continue
				}
				t.SoFar = t.SoFar.Add(inv.Total)
				if s.P.Role == auth.RoleOperator {
					add(inv.PartnerName, "/portal/invoices/"+inv.Number, inv.Currency, inv.Total)
					for _, sec := range inv.Sections {
						for _, l := range sec.Lines {
							addMeter(l.MeterLabel(), inv.Currency, l.Amount)
						}
					}
					continue
				}
				for _, sec := range inv.Sections {
					for _, l := range sec.Lines {
						add(l.CustomerLabel(), "/portal/invoices/"+inv.Number, inv.Currency, l.Amount)
						addMeter(l.MeterLabel(), inv.Currency, l.Amount)
					}
				}
			}
		}
	}
	// What partners and resellers charge their own accounts this month, and
	// the margin it leaves: a reseller's figures are its statements already.
	if s.P.Role == auth.RolePartner || s.P.Role == auth.RoleReseller {
		sts, err := p.d.Billing.Statements(ctx, s.P, s.P.PartnerID, period)
		if err != nil {
			return err
		}
		for _, st := range sts {
			t := total(st.Currency)
			t.Charged, t.Margin, t.HasStatements = t.Charged.Add(st.Amount), t.Margin.Add(st.Margin), true
		}
	}
	// The forecast is the month's run rate so far: the total divided by the
	// share of the month's hours that have passed.
	start, end := clock.MonthStart(now), clock.NextMonth(now)
	elapsed := now.Sub(start)
	var rows []overviewTotal
	for _, t := range totals {
		t.Forecast = t.SoFar
		if elapsed >= time.Hour {
			minor, _ := billing.MinorUnits(t.Currency)
			t.Forecast = t.SoFar.MulFrac(int64(end.Sub(start)/time.Second), int64(elapsed/time.Second), minor)
		}
		if !t.LastMonth.IsZero() {
			pct := t.Forecast.Sub(t.LastMonth).Mul(money.FromInt(100)).Div(t.LastMonth, 0)
			t.Change, t.HasChange, t.Rising = pct.String()+" %", true, pct.Sign() > 0
			if t.Rising {
				t.Change = "+" + t.Change
			}
		}
		rows = append(rows, *t)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Currency < rows[j].Currency })
	top := topOf(byAccount)
	topMeters := topOf(byMeter)
	stamps, err := p.stampSummary(ctx, s.P, now)
	if err != nil {
		return err
	}
	attention, err := p.attention(ctx, s.P, now, att)
	if err != nil {
		return err
	}
	// The operator's chart covers every subscription: no list to pass.
	var subs []string
	if s.P.Role != auth.RoleOperator {
		sc, err := p.usageScope(ctx, s.P)
		if err != nil {
			return err
		}
		subs = sc.ids
		if subs == nil {
			subs = []string{}
		}
	}
	trend, err := p.forwardedTrend(ctx, subs, now)
	if err != nil {
		return err
	}
	p.render(w, r, s, "overview", "Overview", map[string]any{"Trend": trend, "TopMeters": topMeters, "Stamps": stamps, "Awaiting": len(att.Awaiting), "Period": period, "Last": last, "Totals": rows, "Top": top, "Basis": basis,
		"Day": int(elapsed/(24*time.Hour)) + 1, "MonthDays": int(end.Sub(start) / (24 * time.Hour)), "Operator": s.P.Role == auth.RoleOperator,
		"Attention": attention, "Reseller": s.P.Role == auth.RoleReseller})
	return nil
}

// attentionItem is one thing on the overview that someone has to act on.
type attentionItem struct {
	Text, Href, Action string
}

// quietAfter is how long a stamp may send nothing before the overview and
// the ingestion page call it quiet: a forwarder sends each closed hour
// within minutes.
const quietAfter = 2 * time.Hour

// attention lists what needs acting on, as pr may see it (att is billing's
// part, from the overview's rating pass): usage that no
// price covers (it will block finalization), periods past their grace that
// are not finalized (operator), and stamps that have gone quiet.
func (p *Portal) attention(ctx context.Context, pr auth.Principal, now time.Time, att billing.Attention) ([]attentionItem, error) {
	var out []attentionItem
	if pr.Role == auth.RoleReseller {
		return out, nil
	}
	for _, per := range att.Awaiting {
		out = append(out, attentionItem{Text: "Period " + per + " is past its grace period and not finalized.", Href: "/portal/invoices?period=" + per, Action: "Review the invoices"})
	}
	for _, u := range att.Unpriced {
		name := u.MeterID
		if m, ok, err := p.d.BillingMap.Billing(ctx, u.MeterID, u.Day); err == nil && ok {
			name = m.Category + " / " + m.Name + " (" + m.Unit + ")"
		}
		who := ""
		if pr.Role == auth.RoleOperator {
			who = " (" + u.PartnerID + ")"
		}
		out = append(out, attentionItem{Text: fmt.Sprintf("%s of %s in %s has no price in %s%s: the period cannot be finalized until a price list covers it.",
			u.Quantity, name, clock.Period(u.Day), u.Currency, who), Href: "/portal/pricing", Action: "Price lists"})
	}
	health, err := p.d.Ledger.Health(ctx, now)
	if err != nil {
		return nil, err
	}
	regs, err := p.visibleRegistrations(ctx, pr)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, x := range regs {
		names[x.UID] = x.Key.Name
	}
	held, err := p.quarantineAttention(ctx, pr, names)
	if err != nil {
		return nil, err
	}
	out = append(out, held...)
	for _, h := range health {
		name, ok := names[h.RegistrationUID]
		if !ok || now.Sub(h.LastReceived) <= quietAfter {
			continue
		}
		href := "/portal/registrations"
		if pr.Role == auth.RoleOperator {
			href = "/portal/ingestion"
		}
		out = append(out, attentionItem{Text: fmt.Sprintf("Stamp %s has sent no usage since %s (%s ago).", name, h.LastReceived.Format("2006-01-02 15:04 MST"),
			now.Sub(h.LastReceived).Round(time.Minute)), Href: href, Action: "See the stamp"})
	}
	return out, nil
}

// forwardedTrend charts the forwarded usage of subs per day, this month
// against last, for the meter CSPs are billed on most (vCPU-hours of VMs),
// or the first meter when there is none; nil when there is no usage.
func (p *Portal) forwardedTrend(ctx context.Context, subs []string, now time.Time) (*chart, error) {
	lastStart := clock.MonthStart(clock.MonthStart(now).Add(-time.Hour))
	days, err := p.d.Ledger.MeterDays(ctx, subs, lastStart, clock.NextMonth(now), now)
	if err != nil {
		return nil, err
	}
	type info struct{ name, unit string }
	meters := map[string]*info{}
	var pts []point
	for _, d := range days {
		if meters[d.Meter] == nil {
			meters[d.Meter] = &info{name: d.Meter}
		}
		pts = append(pts, point{Bucket: d.Day, Key: d.Meter, Qty: d.Quantity})
	}
	p.nameMeters(ctx, now, func(id string) (*string, *string) {
		if m := meters[id]; m != nil {
			return &m.name, &m.unit
		}
		return nil, nil
	})
	var cs []meterChoice
	for id, m := range meters {
		cs = append(cs, meterChoice{Key: id, Name: m.name, Unit: m.unit})
	}
	c, _ := trendOf(cs, pts, now)
	return c, nil
}

// topOf is the five largest non-zero amounts, largest first.
func topOf(m map[[2]string]*overviewAccount) []overviewAccount {
	var top []overviewAccount
	for _, a := range m {
		if !a.Amount.IsZero() {
			top = append(top, *a)
		}
	}
	sort.Slice(top, func(i, j int) bool {
		if c := top[i].Amount.Cmp(top[j].Amount); c != 0 {
			return c > 0
		}
		return top[i].Name < top[j].Name
	})
	if len(top) > 5 {
		top = top[:5]
	}
	return top
}

// stampSummary is the operator's view of ingestion at a glance: the
// stamps that report, how many have gone quiet, and what arrived in a day.
type stampSummary struct {
	Stamps, Quiet int
	Records24h    int64
}

func (p *Portal) stampSummary(ctx context.Context, pr auth.Principal, now time.Time) (*stampSummary, error) {
	if pr.Role != auth.RoleOperator {
		return nil, nil
	}
	health, err := p.d.Ledger.Health(ctx, now)
	if err != nil {
		return nil, err
	}
	var s stampSummary
	for _, h := range health {
		s.Stamps++
		s.Records24h += h.Records24h
		if now.Sub(h.LastReceived) > quietAfter {
			s.Quiet++
		}
	}
	return &s, nil
}
