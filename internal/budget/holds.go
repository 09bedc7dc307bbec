package budget

import (
	"context"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// Hold is a budget's action in force, or released: a tenant whose user
// subscriptions its stamps keep disabled.
type Hold struct {
	BudgetID      string         `json:"budgetId"`
	Period        string         `json:"period"`
	TenantID      string         `json:"tenantId"`
	HeldAt        time.Time      `json:"heldAt"`
	Spend         money.Quantity `json:"spend"`
	ReleasedAt    *time.Time     `json:"releasedAt,omitempty"`
	ReleasedBy    string         `json:"releasedBy,omitempty"`
	ReleaseReason string         `json:"releaseReason,omitempty"`
}

// applyAction keeps b's hold in step with its standing in the current
// period: taken once the spend reaches the amount (unless released by hand
// in this period already), released when the amount is raised above it.
func (s *Service) applyAction(ctx context.Context, b Budget, st Status, now time.Time) error {
	if b.Action != ActionDisable {
		return nil
	}
	if st.Spend.Cmp(b.Amount) < 0 {
		if active, err := s.hasActive(ctx, b.ID); err != nil || !active {
			return err
		}
	}
	return s.db.Write(ctx, func(tx *store.Tx) error {
		if st.Spend.Cmp(b.Amount) < 0 {
			return s.releaseWhere(ctx, tx, b, `period = ?`, []any{st.Period}, "budgets", "the budget was raised above the spend", now)
		}
		// A hold the budgets released (the amount was raised) is taken
		// again when the spend reaches the new amount; one released by
		// hand stays released for the period.
		out, err := tx.ExecContext(ctx, `INSERT INTO budget_holds (budget_id, period, tenant_id, held_at_us, spend, released_by, release_reason) VALUES (?, ?, ?, ?, ?, '', '')
			ON CONFLICT (budget_id, period, tenant_id) DO UPDATE SET held_at_us = excluded.held_at_us, spend = excluded.spend, released_at_us = NULL, released_by = '', release_reason = ''
			WHERE budget_holds.released_at_us IS NOT NULL AND budget_holds.released_by = 'budgets'`, b.ID, st.Period, b.Scope.ref, clock.Micros(now), st.Spend.String())
		if err != nil {
			return err
		}
		if n, err := out.RowsAffected(); err != nil || n == 0 {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: now, Actor: "budgets", Action: "budget.hold", Kind: "budget", ID: b.ID, Scope: b.OwnerID,
			After: audit.JSON(map[string]any{"tenantId": b.Scope.ref, "period": st.Period, "spend": st.Spend, "amount": b.Amount, "currency": b.Currency})})
	})
}

// releaseStale ends b's holds that no longer apply: of another period than
// current, of a tenant the budget no longer names, or of a budget that no
// longer disables.
func (s *Service) releaseStale(ctx context.Context, b Budget, current string, now time.Time) error {
	if active, err := s.hasActive(ctx, b.ID); err != nil || !active {
		return err
	}
	return s.db.Write(ctx, func(tx *store.Tx) error {
		if b.Action != ActionDisable {
			return s.release(ctx, tx, b, "", "budgets", "the budget no longer disables", now)
		}
		return s.releaseWhere(ctx, tx, b, `(period <> ? OR tenant_id <> ?)`, []any{current, b.Scope.ref}, "budgets", "the budget's period ended", now)
	})
}

// hasActive says whether budget id holds anything now, read before taking
// the writer: most budgets hold nothing most of the time.
func (s *Service) hasActive(ctx context.Context, id string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM budget_holds WHERE budget_id = ? AND released_at_us IS NULL`, id).Scan(&n)
	return n > 0, err
}

// release ends b's active holds (of one tenant, or all), auditing each.
func (s *Service) release(ctx context.Context, tx *store.Tx, b Budget, tenant, actor, reason string, now time.Time) error {
	if tenant == "" {
		return s.releaseWhere(ctx, tx, b, `1 = 1`, nil, actor, reason, now)
	}
	return s.releaseWhere(ctx, tx, b, `tenant_id = ?`, []any{tenant}, actor, reason, now)
}

func (s *Service) releaseWhere(ctx context.Context, tx *store.Tx, b Budget, cond string, args []any, actor, reason string, now time.Time) error {
	rows, err := tx.QueryContext(ctx, `SELECT period, tenant_id FROM budget_holds WHERE budget_id = ? AND released_at_us IS NULL AND `+cond, append([]any{b.ID}, args...)...)
	if err != nil {
		return err
	}
	var held [][2]string
	for rows.Next() {
		var h [2]string
		if err := rows.Scan(&h[0], &h[1]); err != nil {
			rows.Close()
			return err
		}
		held = append(held, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, h := range held {
		if _, err := tx.ExecContext(ctx, `UPDATE budget_holds SET released_at_us = ?, released_by = ?, release_reason = ? WHERE budget_id = ? AND period = ? AND tenant_id = ?`,
			clock.Micros(now), actor, reason, b.ID, h[0], h[1]); err != nil {
			return err
		}
		if err := audit.Append(ctx, tx, audit.Entry{At: now, Actor: actor, Action: "budget.release", Kind: "budget", ID: b.ID, Scope: b.OwnerID,
			After: audit.JSON(map[string]any{"tenantId": h[1], "period": h[0], "reason": reason})}); err != nil {
			return err
		}
	}
	return nil
}

// Holds lists a budget's holds, newest first.
func (s *Service) holds(ctx context.Context, q store.Querier, budgetID string) ([]Hold, error) {
	rows, err := q.QueryContext(ctx, `SELECT budget_id, period, tenant_id, held_at_us, spend, released_at_us, released_by, release_reason FROM budget_holds WHERE budget_id = ? ORDER BY held_at_us DESC, tenant_id`, budgetID)
	return store.Collect(rows, err, scanHold)
}

func scanHold(r store.Scanner) (Hold, error) {
	var h Hold
	var held int64
	var released *int64
	var spend string
	if err := r.Scan(&h.BudgetID, &h.Period, &h.TenantID, &held, &spend, &released, &h.ReleasedBy, &h.ReleaseReason); err != nil {
		return Hold{}, err
	}
	h.HeldAt = clock.FromMicros(held)
	h.Spend, _ = money.ParseStored(spend)
	if released != nil {
		t := clock.FromMicros(*released)
		h.ReleasedAt = &t
	}
	return h, nil
}

// Release ends a hold of a budget p keeps by hand: the stamps re-enable the
// tenant's user subscriptions, and the budget does not take it again this
// period.
func (s *Service) Release(ctx context.Context, p auth.Principal, budgetID, tenantID string) ([]Hold, error) {
	var out []Hold
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		b, err := s.load(ctx, tx, p, budgetID)
		if err != nil {
			return err
		}
		tenant, _ := arm.CanonicalGUID(tenantID)
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM budget_holds WHERE budget_id = ? AND tenant_id = ? AND released_at_us IS NULL`, b.ID, tenant).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return arm.Errorf(arm.NotFound, "HoldNotFound", "Budget '%s' holds no user subscriptions of tenant '%.40s' disabled.", b.ID, tenantID)
		}
		if err := s.release(ctx, tx, b, tenant, p.Actor(), "released by hand", s.clock.Now()); err != nil {
			return err
		}
		out, err = s.holds(ctx, tx, b.ID)
		return err
	})
	return out, err
}

// HeldTenants is what a stamp asks with its bridge credential: the tenants
// mapped on its registration that a budget holds disabled now, each with
// the budget that holds it. A hold reaches a stamp only where the tenant's
// mapping there charges a subscription the budget covers: one its owner is
// billed for (or, for a subscription budget, that subscription), so a
// partner's budget never stops a customer's use through another partner.
func (s *Service) HeldTenants(ctx context.Context, p auth.Principal) (map[string]string, error) {
	if p.Role != auth.RoleBridge || p.RegistrationUID == "" {
		return nil, arm.Forbidden(p.Actor(), "bridge/holds", "/v1/bridge/holds")
	}
	type held struct{ tenant, budget, owner, kind, scope string }
	rows, err := s.db.QueryContext(ctx, `SELECT h.tenant_id, h.budget_id, b.owner_id, b.scope_kind, b.scope_id FROM budget_holds h JOIN budgets b ON b.id = h.budget_id
		WHERE h.released_at_us IS NULL ORDER BY h.tenant_id, h.budget_id`)
	all, err := store.Collect(rows, err, func(r store.Scanner) (h held, err error) {
		return h, r.Scan(&h.tenant, &h.budget, &h.owner, &h.kind, &h.scope)
	})
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	out := map[string]string{}
	for _, h := range all {
		if _, ok := out[h.tenant]; ok {
			continue
		}
		cs, mapped, err := s.regs.MappingAt(ctx, p.RegistrationUID, h.tenant, now)
		if err != nil {
			return nil, err
		}
		if !mapped {
			continue
		}
		var billed directory.ResolvedSubscription
		if h.owner != "" {
			if billed, err = s.dir.Resolve(ctx, cs); err != nil {
				continue // not known now: stop nothing on a guess
			}
		}
		if covers(h.owner, h.kind, h.scope, cs, billed) {
			out[h.tenant] = h.budget
		}
	}
	return out, nil
}

// covers says whether a hold of owner's budget (scope kind and ID) may stop
// usage charged to subscription cs, which billed says who is billed for:
// the operator's budgets reach any; a partner's or reseller's only what it
// is billed for; a subscription budget only that subscription.
func covers(owner, kind, scope, cs string, billed directory.ResolvedSubscription) bool {
	if kind == ScopeSubscription && cs != scope {
		return false
	}
	return owner == "" || billed.RollsUpTo == owner || billed.Reseller == owner
}
