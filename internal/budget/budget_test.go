package budget

import (
	"context"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/money"
)

// TestWindows: a monthly budget looks at this month and the last (whose
// invoice may still take late usage); a custom one at its range once it
// has begun, with only the months already started.
func TestWindows(t *testing.T) {
	at := time.Date(2026, 8, 15, 12, 0, 0, 0, time.UTC)
	monthly := Budget{Period: "monthly"}.windows(at)
	if len(monthly) != 2 || monthly[0].key != "2026-07" || monthly[1].key != "2026-08" || !monthly[1].end.Equal(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("monthly: %+v", monthly)
	}
	q := Budget{Period: "custom", From: "2026-07", To: "2026-09"}
	if w := q.windows(at); len(w) != 1 || w[0].key != "2026-07..2026-09" || len(w[0].months) != 2 || !w[0].end.Equal(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("custom: %+v", w)
	}
	if w := q.windows(time.Date(2026, 6, 30, 0, 0, 0, 0, time.UTC)); len(w) != 0 {
		t.Fatalf("a custom period not begun: %+v", w)
	}
}

// partners is a directory of direct partners only.
type partners struct{ Directory }

func (partners) GetPartner(_ context.Context, _ auth.Principal, id string) (directory.Partner, error) {
	return directory.Partner{ID: id, Type: directory.DirectCSP}, nil
}

type bills struct{ invoices []billing.Invoice }

func (b bills) Invoices(context.Context, auth.Principal, string) ([]billing.Invoice, error) {
	return b.invoices, nil
}

func (b bills) Statements(context.Context, auth.Principal, string, string) ([]billing.Statement, error) {
	return nil, nil
}

// TestForecastIsTheRunRate: spend extended to the period's end at the rate
// since it began, once a day has passed; the spend itself before that and
// once the period ended; each scope counts its own lines in the budget's
// currency only.
func TestForecastIsTheRunRate(t *testing.T) {
	line := func(sub, cat, amount string) billing.Line {
		return billing.Line{SubscriptionID: sub, MeterCategory: cat, Amount: money.MustQuantity(amount)}
	}
	withReseller := func(l billing.Line, r string) billing.Line { l.ResellerID = r; return l }
	inv := billing.Invoice{PartnerID: "p", Currency: "USD", Sections: []billing.Section{{Lines: []billing.Line{
		line("s1", "Virtual Machines", "31.00"), withReseller(line("s2", "Storage", "9.30"), "r")}}}}
	other := billing.Invoice{PartnerID: "p", Currency: "EUR", Sections: []billing.Section{{Lines: []billing.Line{line("s1", "Virtual Machines", "1000")}}}}
	s := &Service{bills: bills{[]billing.Invoice{inv, other}}, dir: partners{}}
	b := Budget{OwnerID: "", Currency: "USD", Amount: money.FromInt(100), Period: "monthly", Scope: Scope{Kind: ScopeAll}}
	aug := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		at            time.Time
		scope         Scope
		spend, expect string
	}{
		{aug.Add(10 * 24 * time.Hour), Scope{Kind: ScopeAll}, "40.3", "124.93"},                  // 40.30 × 31/10
		{aug.Add(12 * time.Hour), Scope{Kind: ScopeAll}, "40.3", "40.3"},                         // less than a day in
		{aug.Add(10 * 24 * time.Hour), Scope{Kind: ScopeSubscription, ID: "s2"}, "9.3", "28.83"}, // its own lines
		{aug.Add(10 * 24 * time.Hour), Scope{Kind: ScopeMeterCategory, ID: "virtual machines"}, "31", "96.1"},
		{aug.Add(10 * 24 * time.Hour), Scope{Kind: ScopePartner, ID: "r"}, "9.3", "28.83"}, // a reseller's lines on its provider's invoice
		{aug.Add(10 * 24 * time.Hour), Scope{Kind: ScopePartner, ID: "p"}, "40.3", "124.93"},
	} {
		b.Scope = c.scope
		w := b.windows(c.at)[1]
		st, err := s.newRound().status(context.Background(), b, w, c.at)
		if err != nil {
			t.Fatal(err)
		}
		if st.Spend.String() != c.spend || st.Forecast.String() != c.expect {
			t.Errorf("%v at %v: spend %s forecast %s, want %s and %s", c.scope, c.at, st.Spend, st.Forecast, c.spend, c.expect)
		}
	}
	// After the period: the forecast is the spend.
	sep := time.Date(2026, 9, 3, 0, 0, 0, 0, time.UTC)
	b.Scope = Scope{Kind: ScopeAll}
	st, err := s.newRound().status(context.Background(), b, b.windows(sep)[0], sep)
	if err != nil || st.Forecast.String() != "40.3" || st.Used.String() != "40.3" {
		t.Fatalf("an ended period: %+v %v", st, err)
	}
}

// TestHoldsStayWithTheirOwner: a hold reaches a stamp only where the
// tenant's usage is charged to a subscription the budget's owner is billed
// for (and, for a subscription budget, only that subscription).
func TestHoldsStayWithTheirOwner(t *testing.T) {
	contoso := directory.ResolvedSubscription{RollsUpTo: "contoso"}
	viaReseller := directory.ResolvedSubscription{RollsUpTo: "fabrikam", Reseller: "tailspin"}
	for _, c := range []struct {
		owner, kind, scope, cs string
		billed                 directory.ResolvedSubscription
		want                   bool
	}{
		{"contoso", ScopeCustomer, "t", "s1", contoso, true},
		{"contoso", ScopeCustomer, "t", "s1", viaReseller, false}, // another partner's customer relationship
		{"tailspin", ScopeCustomer, "t", "s1", viaReseller, true},
		{"fabrikam", ScopeCustomer, "t", "s1", viaReseller, true},
		{"contoso", ScopeSubscription, "s1", "s2", contoso, false}, // the tenant's other subscription
		{"contoso", ScopeSubscription, "s1", "s1", contoso, true},
		{"", ScopeCustomer, "t", "s9", directory.ResolvedSubscription{}, true}, // the operator's
	} {
		if got := covers(c.owner, c.kind, c.scope, c.cs, c.billed); got != c.want {
			t.Errorf("%+v: %v, want %v", c, got, c.want)
		}
	}
}
