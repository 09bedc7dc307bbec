package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/store"
)

type stats struct {
	evaluations, crossings, failures atomic.Int64
	// roundUs is how long the last round took, all budgets.
	roundUs atomic.Int64
}

// LastRound is how long the last evaluation round took.
func (s *Service) LastRound() time.Duration {
	return time.Duration(s.stats.roundUs.Load()) * time.Microsecond
}

// Counters reports this process's evaluations of a budget in a period,
// thresholds it found crossed (and recorded first), and evaluations that
// failed.
func (s *Service) Counters() (evaluations, crossings, failures int64) {
	return s.stats.evaluations.Load(), s.stats.crossings.Load(), s.stats.failures.Load()
}

// Status is a budget's standing in one of its periods.
type Status struct {
	Period string         `json:"period"`
	Start  time.Time      `json:"start"`
	End    time.Time      `json:"end"`
	Spend  money.Quantity `json:"spend"`
	// Forecast is the spend at the period's end if it goes on at the
	// rate since the period began (the spend itself once the period
	// ended, or before a whole day of it has passed).
	Forecast  money.Quantity `json:"forecast"`
	Used      money.Quantity `json:"percentUsed"`
	Crossings []Crossing     `json:"crossings"`
}

// Crossing is a threshold found crossed.
type Crossing struct {
	Period   string         `json:"period"`
	Basis    string         `json:"basis"`
	Percent  money.Quantity `json:"percent"`
	At       time.Time      `json:"at"`
	Spend    money.Quantity `json:"spend"`
	Forecast money.Quantity `json:"forecast"`
	// Late says it was found after the period ended: usage that arrived
	// late pushed the period over.
	Late    bool   `json:"late"`
	EventID string `json:"eventId"`
}

// window is one period of a budget: its key and the months it spans.
type window struct {
	key        string
	months     []string
	start, end time.Time
}

// windows are b's periods to evaluate at now: for a monthly budget this
// month and the last (its invoice may still take late usage); for a custom
// one its range, once it has begun. A window whose months are all final
// is left out by the caller.
func (b Budget) windows(now time.Time) []window {
	if b.Period == "custom" {
		from, _ := clock.ParsePeriod(b.From)
		to, _ := clock.ParsePeriod(b.To)
		if now.Before(from) {
			return nil
		}
		w := window{key: b.From + ".." + b.To, start: from, end: clock.NextMonth(to)}
		for m := from; !m.After(to); m = clock.NextMonth(m) {
			if !m.After(now) {
				w.months = append(w.months, clock.Period(m))
			}
		}
		return []window{w}
	}
	this := clock.MonthStart(now)
	last := clock.MonthStart(this.Add(-time.Hour))
	return []window{
		{key: clock.Period(last), months: []string{clock.Period(last)}, start: last, end: this},
		{key: clock.Period(this), months: []string{clock.Period(this)}, start: this, end: clock.NextMonth(this)},
	}
}

// round caches what one evaluation round reads: each month's invoices and
// each owner's statements, as the operator sees them, and owners' kinds.
type round struct {
	s          *Service
	invoices   map[string][]billing.Invoice
	statements map[[2]string][]billing.Statement
	resellers  map[string]bool
}

var operator = auth.Principal{Role: auth.RoleOperator, TokenID: "budgets"}

func (s *Service) newRound() *round {
	return &round{s: s, invoices: map[string][]billing.Invoice{}, statements: map[[2]string][]billing.Statement{}, resellers: map[string]bool{}}
}

func (r *round) monthInvoices(ctx context.Context, month string) ([]billing.Invoice, error) {
	if inv, ok := r.invoices[month]; ok {
		return inv, nil
	}
	inv, err := r.s.bills.Invoices(ctx, operator, month)
	if err != nil {
		return nil, err
	}
	r.invoices[month] = inv
	return inv, nil
}

// final is whether month's invoices are finalized.
func (r *round) final(ctx context.Context, month string) (bool, error) {
	inv, err := r.monthInvoices(ctx, month)
	if err != nil {
		return false, err
	}
	return len(inv) > 0 && inv[0].Status == "final", nil
}

func (r *round) reseller(ctx context.Context, id string) (bool, error) {
	if id == "" {
		return false, nil
	}
	if v, ok := r.resellers[id]; ok {
		return v, nil
	}
	p, err := r.s.dir.GetPartner(ctx, operator, id)
	if err != nil {
		return false, err
	}
	r.resellers[id] = p.Type == directory.IndirectReseller
	return r.resellers[id], nil
}

// spend is what b's scope comes to on its owner's bills for the months.
func (r *round) spend(ctx context.Context, b Budget, months []string) (money.Quantity, error) {
	total := money.Zero
	res, err := r.reseller(ctx, b.OwnerID)
	if err != nil {
		return total, err
	}
	for _, m := range months {
		if res {
			k := [2]string{b.OwnerID, m}
			st, ok := r.statements[k]
			if !ok {
				if st, err = r.s.bills.Statements(ctx, operator, b.OwnerID, m); err != nil {
					return total, err
				}
				r.statements[k] = st
			}
			for _, one := range st {
				if one.Currency != b.Currency || (b.Scope.Kind == ScopeCustomer && one.Account != b.Scope.ID) {
					continue
				}
				for _, l := range one.Lines {
					if b.Scope.Kind != ScopeSubscription || l.SubscriptionID == b.Scope.ID {
						total = total.Add(l.Amount)
					}
				}
			}
			continue
		}
		invs, err := r.monthInvoices(ctx, m)
		if err != nil {
			return total, err
		}
		for _, inv := range invs {
			if inv.Currency != b.Currency || (b.OwnerID != "" && inv.PartnerID != b.OwnerID) {
				continue
			}
			for _, sec := range inv.Sections {
				for _, l := range sec.Lines {
					if b.Scope.matches(inv.PartnerID, l) {
						total = total.Add(l.Amount)
					}
				}
			}
		}
	}
	return total, nil
}

// matches says whether line l of partner's invoice is in the scope; a
// partner scope takes a reseller's lines on its provider's invoice too.
func (sc Scope) matches(partner string, l billing.Line) bool {
	switch sc.Kind {
	case ScopePartner:
		return partner == sc.ID || l.ResellerID == sc.ID
	case ScopeCustomer:
		return l.CustomerTenantID == sc.ID
	case ScopeSubscription:
		return l.SubscriptionID == sc.ID
	case ScopeRegistration:
		return l.RegistrationUID == sc.ref
	case ScopeMeterCategory:
		return strings.EqualFold(l.MeterCategory, sc.ID)
	}
	return true // all
}

// status computes b's standing in w at now.
func (r *round) status(ctx context.Context, b Budget, w window, now time.Time) (Status, error) {
	spend, err := r.spend(ctx, b, w.months)
	if err != nil {
		return Status{}, err
	}
	minor, _ := billing.MinorUnits(b.Currency)
	st := Status{Period: w.key, Start: w.start, End: w.end, Spend: spend, Forecast: spend, Crossings: []Crossing{}}
	if elapsed := now.Sub(w.start); now.Before(w.end) && elapsed >= 24*time.Hour {
		// The run rate since the period began, to its end.
		st.Forecast = spend.MulFrac(int64(w.end.Sub(w.start)/time.Second), int64(elapsed/time.Second), 12).Round(minor)
	}
	st.Used = spend.Mul(money.FromInt(100)).Div(b.Amount, 2)
	return st, nil
}

// roundLock keeps several commerce instances on one PostgreSQL from each
// rating the open months for the same round: one evaluates, the others
// skip (their next round may be the one that runs). Exactly-once does not
// depend on it: a crossing's key does that.
const roundLock = 7_261_004_130

// Run evaluates every budget each interval until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration, logger *slog.Logger) {
	for {
		if _, err := s.db.TryAlone(ctx, roundLock, func() error { return s.Evaluate(ctx, logger) }); err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("budget evaluation round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// Evaluate runs one round over every budget: each open window's spend and
// forecast against each threshold, recording what is newly crossed. A
// budget that fails is logged and counted; the others go on.
func (s *Service) Evaluate(ctx context.Context, logger *slog.Logger) error {
	all, err := s.list(ctx, `SELECT `+columns+` FROM budgets ORDER BY id`)
	if err != nil {
		return err
	}
	r := s.newRound()
	now := s.clock.Now()
	started := time.Now()
	defer func() { s.stats.roundUs.Store(time.Since(started).Microseconds()) }()
	for _, b := range all {
		if err := s.evaluate(ctx, r, b, now); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.stats.failures.Add(1)
			logger.Error("budget evaluation failed", "budget", b.ID, "owner", b.OwnerID, "err", err)
		}
	}
	return nil
}

func (s *Service) evaluate(ctx context.Context, r *round, b Budget, now time.Time) error {
	wins := b.windows(now)
	current := ""
	for _, w := range wins {
		if !now.Before(w.start) && now.Before(w.end) {
			current = w.key
		}
	}
	if err := s.releaseStale(ctx, b, current, now); err != nil {
		return err
	}
	for _, w := range wins {
		if len(w.months) == 0 {
			continue
		}
		if fin, err := r.final(ctx, w.months[len(w.months)-1]); err != nil {
			return err
		} else if fin {
			continue // the bill is final: nothing can change it any more
		}
		st, err := r.status(ctx, b, w, now)
		if err != nil {
			return err
		}
		s.stats.evaluations.Add(1)
		for _, t := range b.Thresholds {
			value := st.Spend
			if t.Basis == Forecast {
				value = st.Forecast
			}
			if value.Cmp(b.Amount.Mul(t.Percent).Div(money.FromInt(100), 12)) < 0 {
				continue
			}
			if err := s.cross(ctx, r, b, st, t, now); err != nil {
				return err
			}
		}
		if w.key == current {
			if err := s.applyAction(ctx, b, st, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// cross records t as crossed in st's period, with its event, unless it
// already is.
func (s *Service) cross(ctx context.Context, r *round, b Budget, st Status, t Threshold, now time.Time) error {
	res, err := r.reseller(ctx, b.OwnerID)
	if err != nil {
		return err
	}
	late := !now.Before(st.End)
	pct := t.Percent.StringFixed(2)
	eventID := fmt.Sprintf("msg_budget_%s_%s_%s_%s", b.ID, strings.ReplaceAll(st.Period, "..", "_"), t.Basis, strings.ReplaceAll(pct, ".", "_"))
	return s.db.Write(ctx, func(tx *store.Tx) error {
		out, err := tx.ExecContext(ctx, `INSERT INTO budget_crossings (budget_id, period, basis, percent, crossed_at_us, spend, forecast, late, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (budget_id, period, basis, percent) DO NOTHING`, b.ID, st.Period, t.Basis, pct, clock.Micros(now), st.Spend.String(), st.Forecast.String(), flag(late), eventID)
		if err != nil {
			return err
		}
		if n, err := out.RowsAffected(); err != nil || n == 0 {
			return err
		}
		data, err := json.Marshal(map[string]any{"budgetId": b.ID, "name": b.Name, "period": st.Period, "basis": t.Basis, "percent": t.Percent,
			"amount": b.Amount, "currency": b.Currency, "spend": st.Spend, "forecast": st.Forecast, "late": late, "scope": b.Scope})
		if err != nil {
			return err
		}
		// A reseller's budget is priced at its own charges: its provider
		// does not see it. A partner's is its own; the operator's, the
		// operator's.
		ev := notify.Event{ID: eventID, Type: notify.BudgetThresholdCrossed, At: now, Subject: "budgets/" + b.ID, Data: data}
		if res {
			ev.ResellerID = b.OwnerID
		} else {
			ev.PartnerID = b.OwnerID
		}
		if _, err := notify.Record(ctx, tx, ev); err != nil {
			return err
		}
		// A crash here loses both the crossing and its event: the next
		// evaluation finds the threshold crossed again and records it once.
		s.db.FailPoint("budget-crossed")
		s.stats.crossings.Add(1)
		return nil
	})
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Holds lists the holds of a budget p keeps, newest first.
func (s *Service) Holds(ctx context.Context, p auth.Principal, id string) ([]Hold, error) {
	b, err := s.load(ctx, s.db, p, id)
	if err != nil {
		return nil, err
	}
	return s.holds(ctx, s.db, b.ID)
}

// Get is a budget p keeps, with its standing in each open period and the
// thresholds crossed there.
func (s *Service) Get(ctx context.Context, p auth.Principal, id string) (Budget, []Status, error) {
	b, err := s.load(ctx, s.db, p, id)
	if err != nil {
		return Budget{}, nil, err
	}
	st, err := s.standing(ctx, s.newRound(), b)
	return b, st, err
}

// Standing is every budget p keeps with its standing, the bills read once
// for all of them.
func (s *Service) Standing(ctx context.Context, p auth.Principal) ([]Budget, [][]Status, error) {
	bs, err := s.List(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	r := s.newRound()
	out := make([][]Status, len(bs))
	for i, b := range bs {
		if out[i], err = s.standing(ctx, r, b); err != nil {
			return nil, nil, err
		}
	}
	return bs, out, nil
}

// standing is b's status in each of its open periods, with the thresholds
// crossed there, from r's bills.
func (s *Service) standing(ctx context.Context, r *round, b Budget) ([]Status, error) {
	now := s.clock.Now()
	var out []Status
	for _, w := range b.windows(now) {
		if len(w.months) == 0 {
			continue
		}
		st, err := r.status(ctx, b, w, now)
		if err != nil {
			return nil, err
		}
		if st.Crossings, err = s.crossings(ctx, b.ID, w.key); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (s *Service) crossings(ctx context.Context, budgetID, period string) ([]Crossing, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT period, basis, percent, crossed_at_us, spend, forecast, late, event_id FROM budget_crossings WHERE budget_id = ? AND period = ?`, budgetID, period)
	out, err := store.Collect(rows, err, func(r store.Scanner) (Crossing, error) {
		var c Crossing
		var pct, spend, forecast string
		var at int64
		var late int
		if err := r.Scan(&c.Period, &c.Basis, &pct, &at, &spend, &forecast, &late, &c.EventID); err != nil {
			return Crossing{}, err
		}
		c.Percent, _ = money.ParseStored(pct)
		c.Spend, _ = money.ParseStored(spend)
		c.Forecast, _ = money.ParseStored(forecast)
		c.At, c.Late = clock.FromMicros(at), late == 1
		return c, nil
	})
	// In the order they were crossed; at one instant, actual before
	// forecast and by percentage (stored as text, which sorts 100 first).
	slices.SortStableFunc(out, func(a, b Crossing) int {
		if n := a.At.Compare(b.At); n != 0 {
			return n
		}
		if n := strings.Compare(a.Basis, b.Basis); n != 0 {
			return n
		}
		return a.Percent.Cmp(b.Percent)
	})
	return out, err
}
