// Package budget owns budgets: an owner's spending limit for a scope it may
// see, per month or over a range of months, with thresholds on the actual
// and the forecast spend, and the record of each threshold crossed.
//
// Spend is what the owner's bill for a period says: a partner's is its
// invoice for the period (the draft while it is open, usage received late
// included, as the invoice takes it), a reseller's is its statements, at
// the prices it charges from its own price books, never at its provider's
// cost. The operator's covers every partner's invoices. End customers have
// no budgets: they see no CSP prices.
//
// The evaluator (Run) reads the open periods' bills each round and records
// each threshold crossed once per budget, period and threshold, in one
// transaction with its budget.threshold_crossed event (package notify), so
// two instances, or an evaluator killed and restarted, never alert twice.
// A crossing found after its period ended is marked late.
package budget

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
)

// Scope kinds.
const (
	ScopeAll           = "all"           // the owner's whole bill
	ScopePartner       = "partner"       // one partner's bill (the operator's budgets)
	ScopeCustomer      = "customer"      // one end customer (tenant ID)
	ScopeSubscription  = "subscription"  // one customer subscription
	ScopeRegistration  = "registration"  // one registration (its resource ID)
	ScopeMeterCategory = "meterCategory" // one meter category, such as "Virtual Machines"
)

// ActionDisable is a budget's optional action: at 100 % of the amount, the
// scope's tenant has its user subscriptions disabled on the stamps it is
// mapped on, until the budget is raised, its period ends, or the hold is
// released by hand.
const ActionDisable = "disable"

// Bases a threshold applies to.
const (
	Actual   = "actual"
	Forecast = "forecast"
)

// Budget is one budget.
type Budget struct {
	ID       string         `json:"id"`
	OwnerID  string         `json:"ownerId,omitempty"`
	Name     string         `json:"name"`
	Currency string         `json:"currency"`
	Amount   money.Quantity `json:"amount"`
	// Period is "monthly" (each calendar month on its own) or "custom"
	// (one budget over the months From to To, inclusive).
	Period     string      `json:"period"`
	From       string      `json:"from,omitempty"`
	To         string      `json:"to,omitempty"`
	Scope      Scope       `json:"scope"`
	Thresholds []Threshold `json:"thresholds"`
	Action     string      `json:"action,omitempty"`
	CreatedAt  time.Time   `json:"createdAt"`
	CreatedBy  string      `json:"createdBy"`
	UpdatedAt  time.Time   `json:"updatedAt"`
}

// Scope is what a budget measures.
type Scope struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"`
	// ref is what ID resolved to (a registration's UID).
	ref string
}

// Threshold is a percentage of the amount, on the actual or the forecast
// spend.
type Threshold struct {
	Percent money.Quantity `json:"percent"`
	Basis   string         `json:"basis"`
}

// ParseThresholds reads thresholds as people type them: percentages
// separated by commas, a forecast one ending in f ("50,80,100,100f").
func ParseThresholds(text string) ([]Threshold, error) {
	var out []Threshold
	for _, f := range strings.Split(text, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		basis := Actual
		if p, ok := strings.CutSuffix(f, "f"); ok {
			f, basis = p, Forecast
		}
		pct, err := money.ParseQuantity(strings.TrimSuffix(f, "%"))
		if err != nil {
			return nil, arm.InvalidRequest("thresholds", "'%.20s' is not a percentage; write them as 50,80,100,100f (f: on the forecast).", f)
		}
		out = append(out, Threshold{Percent: pct, Basis: basis})
	}
	return out, nil
}

// Input is what a caller sets; nil fields keep their value on an update.
type Input struct {
	Name       *string      `json:"name"`
	Currency   *string      `json:"currency"`
	Amount     *string      `json:"amount"`
	Period     *string      `json:"period"`
	From       *string      `json:"from"`
	To         *string      `json:"to"`
	Scope      *Scope       `json:"scope"`
	Thresholds *[]Threshold `json:"thresholds"`
	Action     *string      `json:"action"`
}

// Directory is the part of the partner directory budgets check scopes
// against, with the caller's own view.
type Directory interface {
	GetPartner(ctx context.Context, p auth.Principal, id string) (directory.Partner, error)
	GetCustomer(ctx context.Context, p auth.Principal, tenantID string) (directory.Customer, error)
	GetSubscription(ctx context.Context, p auth.Principal, id string) (directory.Subscription, error)
	Resolve(ctx context.Context, id string) (directory.ResolvedSubscription, error)
}

// Registrations finds a registration the caller may see, and which
// customer subscription a tenant is mapped to on a registration at an
// instant.
type Registrations interface {
	Get(ctx context.Context, p auth.Principal, k registration.Key) (registration.Registration, error)
	MappingAt(ctx context.Context, registrationUID, tenantID string, t time.Time) (string, bool, error)
}

// Bills is the billing the evaluator reads: the period's invoices and an
// owner's statements, as the operator sees them.
type Bills interface {
	Invoices(ctx context.Context, p auth.Principal, period string) ([]billing.Invoice, error)
	Statements(ctx context.Context, p auth.Principal, owner, period string) ([]billing.Statement, error)
}

// Service keeps and evaluates budgets.
type Service struct {
	db    *store.DB
	clock *clock.Clock
	dir   Directory
	regs  Registrations
	bills Bills
	stats stats
}

// NewService builds a Service.
func NewService(db *store.DB, c *clock.Clock, dir Directory, regs Registrations, bills Bills) *Service {
	return &Service{db: db, clock: c, dir: dir, regs: regs, bills: bills}
}

// maxBudgets bounds one owner's budgets: each is evaluated every round.
const maxBudgets = 100

// maxAmount bounds a budget's amount from above (exclusive): 15 integer
// digits and the currency's minor units, which every later product and
// sum holds.
var maxAmount = money.MustQuantity("1000000000000000")

func owner(p auth.Principal) string {
	if p.Role == auth.RoleOperator {
		return ""
	}
	return p.PartnerID
}

func mayKeep(p auth.Principal) bool {
	return p.Role == auth.RoleOperator || p.Role == auth.RolePartner || p.Role == auth.RoleReseller
}

func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "bud_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

var periodText = regexp.MustCompile(`^\d{4}-\d{2}$`)

// apply sets in on b and checks the whole budget as p may keep it.
func (s *Service) apply(ctx context.Context, p auth.Principal, b *Budget, in Input) error {
	if in.Name != nil {
		b.Name = strings.TrimSpace(*in.Name)
	}
	if b.Name == "" || len(b.Name) > 200 || !utf8.ValidString(b.Name) {
		return arm.InvalidRequest("name", "A budget needs a name of at most 200 characters.")
	}
	if in.Currency != nil {
		b.Currency = strings.ToUpper(*in.Currency)
	}
	minor, ok := billing.MinorUnits(b.Currency)
	if !ok {
		return arm.InvalidRequest("currency", "'%.10s' is not a currency stackbill bills in; give an ISO 4217 code such as USD or EUR.", b.Currency)
	}
	if in.Amount != nil {
		q, err := money.ParseQuantity(*in.Amount)
		if err != nil || q.Sign() <= 0 || q.Cmp(maxAmount) >= 0 || !q.Round(minor).Equal(q) {
			return arm.InvalidRequest("amount", "The amount is a positive number of %s of at most 15 digits and %d decimals, not '%.50s'.", b.Currency, minor, *in.Amount)
		}
		b.Amount = q
	}
	if b.Amount.Sign() <= 0 {
		return arm.InvalidRequest("amount", "A budget needs an amount.")
	}
	if in.Period != nil {
		b.Period = *in.Period
	}
	if in.From != nil {
		b.From = *in.From
	}
	if in.To != nil {
		b.To = *in.To
	}
	switch b.Period {
	case "", "monthly":
		b.Period, b.From, b.To = "monthly", "", ""
	case "custom":
		if !periodText.MatchString(b.From) || !periodText.MatchString(b.To) {
			return arm.InvalidRequest("from", "A custom period runs from one month to another, each as YYYY-MM.")
		}
		f, err1 := clock.ParsePeriod(b.From)
		t, err2 := clock.ParsePeriod(b.To)
		if err1 != nil || err2 != nil || t.Before(f) || t.After(f.AddDate(1, 0, 0)) {
			return arm.InvalidRequest("to", "A custom period ends in the month it starts or after it, at most twelve months later.")
		}
	default:
		return arm.InvalidRequest("period", "The period is monthly or custom, not '%.20s'.", b.Period)
	}
	if in.Thresholds != nil {
		b.Thresholds = *in.Thresholds
	}
	if len(b.Thresholds) == 0 {
		b.Thresholds = []Threshold{{money.FromInt(50), Actual}, {money.FromInt(80), Actual}, {money.FromInt(100), Actual}, {money.FromInt(100), Forecast}}
	}
	if len(b.Thresholds) > 10 {
		return arm.InvalidRequest("thresholds", "A budget has at most 10 thresholds.")
	}
	seen := map[string]bool{}
	for i, t := range b.Thresholds {
		if t.Basis == "" {
			t.Basis = Actual
		}
		if t.Basis != Actual && t.Basis != Forecast {
			return arm.InvalidRequest("thresholds", "A threshold's basis is actual or forecast, not '%.20s'.", t.Basis)
		}
		if t.Percent.Sign() <= 0 || t.Percent.Above(money.FromInt(1000)) || !t.Percent.Round(2).Equal(t.Percent) {
			return arm.InvalidRequest("thresholds", "A threshold is a percentage above 0 and at most 1000, with at most 2 decimals.")
		}
		t.Percent = t.Percent.Round(2)
		if k := t.Basis + t.Percent.StringFixed(2); seen[k] {
			return arm.InvalidRequest("thresholds", "Threshold %s%% on the %s spend is given twice.", t.Percent, t.Basis)
		} else {
			seen[k] = true
		}
		b.Thresholds[i] = t
	}
	slices.SortFunc(b.Thresholds, func(a, c Threshold) int {
		if n := strings.Compare(a.Basis, c.Basis); n != 0 {
			return n
		}
		return a.Percent.Cmp(c.Percent)
	})
	if in.Scope != nil {
		b.Scope = Scope{Kind: in.Scope.Kind, ID: strings.TrimSpace(in.Scope.ID)}
		if err := s.checkScope(ctx, p, &b.Scope); err != nil {
			return err
		}
	}
	if in.Action != nil {
		b.Action = *in.Action
	}
	switch b.Action {
	case "":
	case ActionDisable:
		if (b.Scope.Kind != ScopeCustomer && b.Scope.Kind != ScopeSubscription) || b.Scope.ref == "" {
			return arm.InvalidRequest("action", "The disable action stops one end customer's user subscriptions: give the budget a customer scope, or a subscription scope of a customer's subscription.")
		}
	default:
		return arm.InvalidRequest("action", "The action is disable, or none, not '%.20s'.", b.Action)
	}
	return nil
}

var registrationID = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.AzureStack/registrations/([^/]+)$`)

// checkScope answers whether p may budget sc, and resolves it. A scope
// outside p's view answers as one that does not exist.
func (s *Service) checkScope(ctx context.Context, p auth.Principal, sc *Scope) error {
	reseller := p.Role == auth.RoleReseller
	bad := func(format string, args ...any) error { return arm.InvalidRequest("scope", format, args...) }
	if len(sc.ID) > 300 {
		return bad("A scope's id is at most 300 characters.")
	}
	switch sc.Kind {
	case ScopeAll:
		sc.ID = ""
		return nil
	case ScopePartner:
		if p.Role != auth.RoleOperator {
			return bad("Only the operator budgets a partner's bill; yours is the scope kind all.")
		}
		_, err := s.dir.GetPartner(ctx, p, sc.ID)
		return err
	case ScopeCustomer:
		c, err := s.dir.GetCustomer(ctx, p, sc.ID)
		if err == nil {
			sc.ID, sc.ref = c.TenantID, c.TenantID
		}
		return err
	case ScopeSubscription:
		sub, err := s.dir.GetSubscription(ctx, p, sc.ID)
		if err == nil {
			sc.ID, sc.ref = sub.ID, sub.CustomerTenantID
		}
		return err
	case ScopeRegistration, ScopeMeterCategory:
		if reseller {
			// A reseller's statements are per customer subscription and
			// meter; registrations and categories are its provider's view.
			return bad("A reseller budgets all its customers, one customer or one subscription.")
		}
		if sc.Kind == ScopeMeterCategory {
			if sc.ID == "" || !utf8.ValidString(sc.ID) {
				return bad("Name the meter category, such as Virtual Machines.")
			}
			return nil
		}
		m := registrationID.FindStringSubmatch(sc.ID)
		if m == nil {
			return bad("A registration is named by its resource ID: /subscriptions/…/resourceGroups/…/providers/Microsoft.AzureStack/registrations/….")
		}
		r, err := s.regs.Get(ctx, p, registration.Key{SubscriptionID: m[1], ResourceGroup: m[2], Name: m[3]})
		if err == nil {
			sc.ref = r.UID
		}
		return err
	}
	return bad("The scope kind is all, partner, customer, subscription, registration or meterCategory, not '%.30s'.", sc.Kind)
}

// Create makes a budget owned by p.
func (s *Service) Create(ctx context.Context, p auth.Principal, in Input) (Budget, error) {
	if !mayKeep(p) {
		return Budget{}, arm.Forbidden(p.Actor(), "budgets/write", "/v1/budgets")
	}
	now := s.clock.Now()
	b := Budget{ID: newID(), OwnerID: owner(p), CreatedAt: now, CreatedBy: p.Actor(), UpdatedAt: now}
	if in.Scope == nil {
		in.Scope = &Scope{Kind: ScopeAll}
	}
	if err := s.apply(ctx, p, &b, in); err != nil {
		return Budget{}, err
	}
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM budgets WHERE owner_id = ?`, b.OwnerID).Scan(&n); err != nil {
			return err
		}
		if n >= maxBudgets {
			return arm.InvalidRequest("", "You keep %d budgets, the most one owner may; delete one first.", n)
		}
		th, _ := json.Marshal(b.Thresholds)
		if _, err := tx.ExecContext(ctx, `INSERT INTO budgets (id, owner_id, name, currency, amount, period_kind, period_from, period_to, scope_kind, scope_id, scope_ref, thresholds, action, created_at_us, created_by, updated_at_us)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			b.ID, b.OwnerID, b.Name, b.Currency, b.Amount.String(), b.Period, b.From, b.To, b.Scope.Kind, b.Scope.ID, b.Scope.ref, string(th), b.Action, clock.Micros(now), b.CreatedBy, clock.Micros(now)); err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: now, Actor: p.Actor(), Action: "budget.create", Kind: "budget", ID: b.ID, Scope: b.OwnerID, After: audit.JSON(b)})
	})
	return b, err
}

const columns = `id, owner_id, name, currency, amount, period_kind, period_from, period_to, scope_kind, scope_id, scope_ref, thresholds, action, created_at_us, created_by, updated_at_us`

func scan(r store.Scanner) (Budget, error) {
	var b Budget
	var amount, th string
	var created, updated int64
	if err := r.Scan(&b.ID, &b.OwnerID, &b.Name, &b.Currency, &amount, &b.Period, &b.From, &b.To, &b.Scope.Kind, &b.Scope.ID, &b.Scope.ref, &th, &b.Action, &created, &b.CreatedBy, &updated); err != nil {
		return Budget{}, err
	}
	q, err := money.ParseStored(amount)
	if err != nil {
		return Budget{}, fmt.Errorf("budget %s amount %q: %w", b.ID, amount, err)
	}
	if err := json.Unmarshal([]byte(th), &b.Thresholds); err != nil {
		return Budget{}, fmt.Errorf("budget %s thresholds: %w", b.ID, err)
	}
	b.Amount, b.CreatedAt, b.UpdatedAt = q, clock.FromMicros(created), clock.FromMicros(updated)
	return b, nil
}

// List is the budgets p keeps (the operator: every budget).
func (s *Service) List(ctx context.Context, p auth.Principal) ([]Budget, error) {
	if !mayKeep(p) {
		return nil, arm.Forbidden(p.Actor(), "budgets/read", "/v1/budgets")
	}
	q, args := `SELECT `+columns+` FROM budgets`, []any{}
	if p.Role != auth.RoleOperator {
		q, args = q+` WHERE owner_id = ?`, append(args, owner(p))
	}
	return s.list(ctx, q+` ORDER BY owner_id, name, id`, args...)
}

func (s *Service) list(ctx context.Context, q string, args ...any) ([]Budget, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	return store.Collect(rows, err, scan)
}

func errNotFound(id string) error {
	return arm.Errorf(arm.NotFound, "BudgetNotFound", "Budget '%.100s' was not found.", id)
}

// load reads a budget p keeps; another's answers as missing.
func (s *Service) load(ctx context.Context, q store.Querier, p auth.Principal, id string) (Budget, error) {
	if !mayKeep(p) {
		return Budget{}, errNotFound(id)
	}
	query, args := `SELECT `+columns+` FROM budgets WHERE id = ?`, []any{id}
	if p.Role != auth.RoleOperator {
		query, args = query+` AND owner_id = ?`, append(args, owner(p))
	}
	b, err := scan(q.QueryRowContext(ctx, query, args...))
	if err == sql.ErrNoRows {
		return Budget{}, errNotFound(id)
	}
	return b, err
}

// Update changes a budget p keeps. Thresholds already crossed in a period
// stay crossed: a budget alerts once per threshold and period.
func (s *Service) Update(ctx context.Context, p auth.Principal, id string, in Input) (Budget, error) {
	cur, err := s.load(ctx, s.db, p, id)
	if err != nil {
		return Budget{}, err
	}
	b := cur
	b.Thresholds = slices.Clone(cur.Thresholds)
	if err := s.apply(ctx, p, &b, in); err != nil {
		return Budget{}, err
	}
	now := s.clock.Now()
	b.UpdatedAt = now
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		if _, err := s.load(ctx, tx, p, id); err != nil {
			return err
		}
		th, _ := json.Marshal(b.Thresholds)
		if _, err := tx.ExecContext(ctx, `UPDATE budgets SET name = ?, currency = ?, amount = ?, period_kind = ?, period_from = ?, period_to = ?, scope_kind = ?, scope_id = ?, scope_ref = ?, thresholds = ?, action = ?, updated_at_us = ? WHERE id = ?`,
			b.Name, b.Currency, b.Amount.String(), b.Period, b.From, b.To, b.Scope.Kind, b.Scope.ID, b.Scope.ref, string(th), b.Action, clock.Micros(now), id); err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: now, Actor: p.Actor(), Action: "budget.update", Kind: "budget", ID: id, Scope: b.OwnerID, Before: audit.JSON(cur), After: audit.JSON(b)})
	})
	return b, err
}

// Delete removes a budget p keeps, with its crossings.
func (s *Service) Delete(ctx context.Context, p auth.Principal, id string) error {
	return s.db.Write(ctx, func(tx *store.Tx) error {
		cur, err := s.load(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM budget_crossings WHERE budget_id = ?`, id); err != nil {
			return err
		}
		// Its holds end with it: the stamps re-enable what it disabled.
		if err := s.release(ctx, tx, cur, "", p.Actor(), "the budget was deleted", s.clock.Now()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM budget_holds WHERE budget_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM budgets WHERE id = ?`, id); err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: s.clock.Now(), Actor: p.Actor(), Action: "budget.delete", Kind: "budget", ID: id, Scope: cur.OwnerID, Before: audit.JSON(cur)})
	})
}
