package billing

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// PriceBook is a partner's or reseller's chargeback prices for its accounts:
// a markup over its cost, per-meter unit prices that replace the markup, and
// prices for local-only meters (SQL and MySQL databases, App Service tiers)
// that Microsoft does not bill but CSPs charge for. Target is "default" or one
// account: a customer's tenant, or (for an indirect provider) a reseller.
type PriceBook struct {
	Owner         string                    `json:"owner"`
	Target        string                    `json:"target"`
	MarkupPercent money.Quantity            `json:"markupPercent"`
	Prices        map[string]money.Quantity `json:"prices"`
	UpdatedAt     time.Time                 `json:"updatedAt"`
	UpdatedBy     string                    `json:"updatedBy"`
}

// DefaultTarget is the price book for accounts without their own.
const DefaultTarget = "default"

// ownerScope checks that the caller may act for owner.
func (s *Service) ownerScope(ctx context.Context, p auth.Principal, owner string) (*dirSnapshot, directory.Partner, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, directory.Partner{}, err
	}
	dir, err := s.loadDirectory(ctx, s.db)
	if err != nil {
		return nil, directory.Partner{}, err
	}
	pt, ok := dir.Partners[owner]
	if !ok || (!sc.all && sc.partner != owner) {
		return nil, directory.Partner{}, notFound("Partner", owner)
	}
	return dir, pt, nil
}

// accounts are who an owner bills: a direct CSP's or reseller's customers,
// an indirect provider's resellers.
func (d *dirSnapshot) accounts(owner directory.Partner) map[string]string {
	out := map[string]string{}
	if owner.Type == directory.IndirectProvider {
		for _, p := range d.Partners {
			if p.Provider == owner.ID {
				out[p.ID] = p.Name
			}
		}
		return out
	}
	for _, c := range d.Customers {
		if c.Partner == owner.ID {
			out[c.TenantID] = c.Name
		}
	}
	return out
}

// PutPriceBook stores a price book.
func (s *Service) PutPriceBook(ctx context.Context, p auth.Principal, b PriceBook) (PriceBook, error) {
	dir, owner, err := s.ownerScope(ctx, p, b.Owner)
	if err != nil {
		return PriceBook{}, err
	}
	if b.Target != DefaultTarget {
		t, ok := arm.CanonicalGUID(b.Target)
		if ok {
			b.Target = t
		}
		if _, ok := dir.accounts(owner)[b.Target]; !ok {
			what := "customers"
			if owner.Type == directory.IndirectProvider {
				what = "resellers"
			}
			return PriceBook{}, arm.InvalidRequest("target", "'%s' is not one of %s's %s; a price book targets 'default' or one of them.", b.Target, owner.ID, what)
		}
	}
	if b.MarkupPercent.Cmp(money.FromInt(-100)) < 0 || b.MarkupPercent.Above(money.MaxMarkupPercent) {
		return PriceBook{}, arm.InvalidRequest("markupPercent", "A markup is between -100%% (prices would be negative below it) and %s%%; got %s.", money.MaxMarkupPercent, b.MarkupPercent)
	}
	prices := map[string]money.Quantity{}
	for id, v := range b.Prices {
		key, ok := meter.Normalize(id)
		if !ok {
			return PriceBook{}, arm.InvalidRequest("prices", "'%s' is not a meter ID.", id)
		}
		if v.Sign() < 0 || v.Above(money.MaxUnitPrice) {
			return PriceBook{}, arm.InvalidRequest("prices", "The price of meter %s must be between 0 and %s; got %s.", id, money.MaxUnitPrice, v)
		}
		prices[key] = v
	}
	b.Prices, b.UpdatedAt, b.UpdatedBy = prices, s.clock.Now(), p.Actor()
	body, _ := json.Marshal(prices)
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO price_books (owner_id, target, markup_percent, prices, updated_at_us, updated_by) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (owner_id, target) DO UPDATE SET markup_percent = excluded.markup_percent, prices = excluded.prices,
			updated_at_us = excluded.updated_at_us, updated_by = excluded.updated_by`,
			b.Owner, b.Target, b.MarkupPercent.String(), string(body), clock.Micros(b.UpdatedAt), b.UpdatedBy)
		if err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: b.UpdatedAt, Actor: p.Actor(), Action: "priceBook.put", Kind: "priceBook", ID: b.Owner + "/" + b.Target, Scope: b.Owner, After: audit.JSON(b)})
	})
	return b, err
}

// PriceBooks lists an owner's price books.
func (s *Service) PriceBooks(ctx context.Context, p auth.Principal, owner string) ([]PriceBook, error) {
	if _, _, err := s.ownerScope(ctx, p, owner); err != nil {
		return nil, err
	}
	books, err := loadBooks(ctx, s.db, owner)
	if err != nil {
		return nil, err
	}
	out := []PriceBook{}
	for _, b := range books {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

// DeletePriceBook removes one.
func (s *Service) DeletePriceBook(ctx context.Context, p auth.Principal, owner, target string) error {
	if _, _, err := s.ownerScope(ctx, p, owner); err != nil {
		return err
	}
	if t, ok := arm.CanonicalGUID(target); ok {
		target = t
	}
	return s.db.Write(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM price_books WHERE owner_id = ? AND target = ?`, owner, target)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("PriceBook", owner+"/"+target)
		}
		return audit.Append(ctx, tx, audit.Entry{At: s.clock.Now(), Actor: p.Actor(), Action: "priceBook.delete", Kind: "priceBook", ID: owner + "/" + target, Scope: owner, After: audit.JSON(nil)})
	})
}

func loadBooks(ctx context.Context, q store.Querier, owner string) (map[string]PriceBook, error) {
	rows, err := q.QueryContext(ctx, `SELECT target, markup_percent, prices, updated_at_us, updated_by FROM price_books WHERE owner_id = ?`, owner)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]PriceBook{}
	for rows.Next() {
		b := PriceBook{Owner: owner}
		var prices string
		var at int64
		if err := rows.Scan(&b.Target, &b.MarkupPercent, &prices, &at, &b.UpdatedBy); err != nil {
			return nil, err
		}
		b.UpdatedAt = clock.FromMicros(at)
		if err := json.Unmarshal([]byte(prices), &b.Prices); err != nil {
			return nil, err
		}
		out[b.Target] = b
	}
	return out, rows.Err()
}

// pricing is the effective book for one account.
type pricing struct {
	markup    money.Quantity
	prices    map[string]money.Quantity
	hasMarkup bool
}

func effective(books map[string]PriceBook, account string) pricing {
	pr := pricing{prices: map[string]money.Quantity{}}
	if b, ok := books[DefaultTarget]; ok {
		pr.markup, pr.hasMarkup = b.MarkupPercent, true
		for k, v := range b.Prices {
			pr.prices[k] = v
		}
	}
	if b, ok := books[account]; ok {
		pr.markup, pr.hasMarkup = b.MarkupPercent, true
		for k, v := range b.Prices {
			pr.prices[k] = v
		}
	}
	return pr
}

// price applies the book to one line: a per-meter price wins, else the
// markup over cost. unitsNumer is the quantity in billing units, div the
// billing units per price unit.
func (pr pricing) price(meterKey string, cost, billed money.Quantity, div int64, minor int32) (money.Quantity, *money.Quantity, string) {
	if up, ok := pr.prices[meterKey]; ok {
		return amountOf(billed.Mul(up), div, minor), &up, "price book unit price"
	}
	factor := money.FromInt(100).Add(pr.markup).Div(money.FromInt(100), 12)
	return cost.Mul(factor).Round(minor), nil, "markup " + pr.markup.String() + "% over cost"
}

// Statement is what an owner charges one account for a period.
type Statement struct {
	Owner       string          `json:"owner"`
	OwnerName   string          `json:"ownerName"`
	Account     string          `json:"account"`
	AccountName string          `json:"accountName"`
	Period      string          `json:"period"`
	Currency    string          `json:"currency"`
	Lines       []StatementLine `json:"lines"`
	Cost        money.Quantity  `json:"cost"`
	Amount      money.Quantity  `json:"amount"`
	Margin      money.Quantity  `json:"margin"`
}

// StatementLine is subscription × meter on a statement.
type StatementLine struct {
	SubscriptionID string          `json:"subscriptionId"`
	MeterID        string          `json:"meterId"`
	MeterName      string          `json:"meterName"`
	LocalOnly      bool            `json:"localOnly"`
	Unit           string          `json:"unit"`
	Quantity       money.Quantity  `json:"quantity"`
	Cost           money.Quantity  `json:"cost"`
	UnitPrice      *money.Quantity `json:"unitPrice,omitempty"`
	Amount         money.Quantity  `json:"amount"`
	Margin         money.Quantity  `json:"margin"`
	Basis          string          `json:"basis"`
}

type stmtKey struct{ account, sub, meter string }

type stmtAcc struct {
	cost, billed, qty money.Quantity
	div               int64
	name, unit        string
	local             bool
}

// Statements computes an owner's statements for a period: per account, its
// subscriptions' usage priced from the owner's price books, against the
// owner's cost. A direct CSP's or provider's cost is its invoice; a
// reseller's cost is its provider's price to it (the provider's price book
// for that reseller, list price without one), so a reseller never sees the
// provider's invoice or margin.
//
// A finalized period's statements are the ones finalization stored, priced
// with the price books of that moment: a price book changed later changes
// only open periods.
func (s *Service) Statements(ctx context.Context, p auth.Principal, owner, period string) ([]Statement, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	dir, op, err := s.ownerScope(ctx, p, owner)
	if err != nil {
		return nil, err
	}
	if _, _, err := clock.PeriodBounds(period); err != nil {
		return nil, badPeriod(err)
	}
	st, err := s.periodState(ctx, s.db, period)
	if err != nil {
		return nil, err
	}
	if st.finalized {
		if out, ok, err := storedStatements(ctx, s.db, period, owner); ok || err != nil {
			return out, err
		}
	}
	invs, err := s.periodInvoices(ctx, dir, period, billingPartner(op))
	if err != nil {
		return nil, err
	}
	return s.statements(ctx, s.db, dir, op, period, invs)
}

// billingPartner is who holds the billing relationship for an owner's
// usage: itself, or a reseller's provider.
func billingPartner(op directory.Partner) string {
	if op.Type == directory.IndirectReseller {
		return op.Provider
	}
	return op.ID
}

// statements prices an owner's accounts for a period from its invoices, on
// q (the reader pool, or the finalization's transaction).
func (s *Service) statements(ctx context.Context, q store.Querier, dir *dirSnapshot, op directory.Partner, period string, invs map[string]*Invoice) ([]Statement, error) {
	owner := op.ID
	start, end, err := clock.PeriodBounds(period)
	if err != nil {
		return nil, badPeriod(err)
	}
	billTo := billingPartner(op)
	cur := dir.currency(billTo)
	minor, _ := MinorUnits(cur)
	accounts := dir.accounts(op)
	books, err := loadBooks(ctx, q, owner)
	if err != nil {
		return nil, err
	}
	var providerBooks map[string]PriceBook
	if op.Type == directory.IndirectReseller {
		if providerBooks, err = loadBooks(ctx, q, op.Provider); err != nil {
			return nil, err
		}
	}
	accs := map[stmtKey]*stmtAcc{}
	if inv, ok := invs[billTo]; ok {
		for _, sec := range inv.Sections {
			for _, l := range sec.Lines {
				account := l.CustomerTenantID
				switch op.Type {
				case directory.IndirectProvider:
					account = l.ResellerID
				case directory.IndirectReseller:
					if l.ResellerID != op.ID {
						continue
					}
				}
				if _, ok := accounts[account]; !ok {
					continue
				}
				k := stmtKey{account, l.SubscriptionID, l.MeterID}
				a := accs[k]
				if a == nil {
					div, _ := unitDivisor(l.Unit)
					a = &stmtAcc{div: div, name: l.MeterSubCategory + " " + l.MeterName, unit: l.Unit}
					accs[k] = a
				}
				a.cost, a.billed = a.cost.Add(l.Amount), a.billed.Add(l.BilledQuantity)
			}
		}
	}
	if op.Type == directory.IndirectReseller {
		// The reseller's cost is what its provider charges it.
		pr := effective(providerBooks, op.ID)
		for k, a := range accs {
			key, _ := meter.Normalize(k.meter)
			a.cost, _, _ = pr.price(key, a.cost, a.billed, a.div, minor)
		}
	}
	// Local-only meters: not billed by Microsoft, charged only from a price book.
	if op.Type != directory.IndirectProvider {
		subsOf := map[string]string{}
		for id, sub := range dir.Subscriptions {
			if _, ok := accounts[sub.CustomerTenantID]; ok {
				subsOf[id] = sub.CustomerTenantID
			}
		}
		if len(subsOf) > 0 {
			sums := map[stmtKey]*money.Sum{}
			err := s.ledger.LocalOnly(ctx, q, start, end, func(sub, key string, qty []byte) error {
				account, ok := subsOf[sub]
				if !ok {
					return nil
				}
				k := stmtKey{account, sub, key}
				if sums[k] == nil {
					sums[k] = &money.Sum{}
				}
				return sums[k].AddText(qty)
			})
			if err != nil {
				return nil, err
			}
			for k, sm := range sums {
				accs[k] = &stmtAcc{div: 1, billed: sm.Quantity(), local: true, name: "local meter " + guidOf(k.meter), unit: "local unit"}
			}
		}
	}
	byAccount := map[string]*Statement{}
	for id, name := range accounts {
		byAccount[id] = &Statement{Owner: owner, OwnerName: op.Name, Account: id, AccountName: name, Period: period, Currency: cur, Lines: []StatementLine{}}
	}
	for k, a := range accs {
		st := byAccount[k.account]
		pr := effective(books, k.account)
		key, _ := meter.Normalize(k.meter)
		ln := StatementLine{SubscriptionID: k.sub, MeterID: k.meter, MeterName: a.name, LocalOnly: a.local, Unit: a.unit, Quantity: quantityIn(a.billed, a.div), Cost: a.cost}
		if a.local {
			ln.MeterID = guidOf(k.meter)
			if up, ok := pr.prices[key]; ok {
				ln.Amount, ln.UnitPrice, ln.Basis = a.billed.Mul(up).Round(minor), &up, "price book unit price (local-only meter)"
			} else {
				ln.Basis = "local-only meter without a price: not charged"
			}
		} else {
			ln.Amount, ln.UnitPrice, ln.Basis = pr.price(key, a.cost, a.billed, a.div, minor)
		}
		ln.Margin = ln.Amount.Sub(ln.Cost)
		st.Lines = append(st.Lines, ln)
		st.Cost, st.Amount = st.Cost.Add(ln.Cost), st.Amount.Add(ln.Amount)
	}
	out := []Statement{}
	for _, st := range byAccount {
		st.Margin = st.Amount.Sub(st.Cost)
		sort.Slice(st.Lines, func(i, j int) bool {
			a, b := st.Lines[i], st.Lines[j]
			if a.SubscriptionID != b.SubscriptionID {
				return a.SubscriptionID < b.SubscriptionID
			}
			return strings.ToLower(a.MeterID) < strings.ToLower(b.MeterID)
		})
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].AccountName < out[j].AccountName || (out[i].AccountName == out[j].AccountName && out[i].Account < out[j].Account)
	})
	return out, nil
}
