package tenancy

import (
	"context"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// ApplyHolds brings the stack in line with commerce's budget holds: held
// maps each tenant a budget holds to that budget. A held tenant's Enabled
// user subscriptions are disabled, once, and remembered; a remembered
// subscription whose tenant is no longer held is enabled again if it is
// still Disabled. Every change is in the subscription's history and the
// audit log, under the budget's name. It reports what it disabled and
// enabled.
func (s *Service) ApplyHolds(ctx context.Context, held map[string]string) (disabled, enabled int, err error) {
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		disabled, enabled = 0, 0
		rows, err := tx.QueryContext(ctx, `SELECT h.subscription_id, h.tenant_id, h.budget_id FROM subscription_holds h ORDER BY h.subscription_id`)
		if err != nil {
			return err
		}
		type kept struct{ sub, tenant, budget string }
		var remembered []kept
		done := map[string]bool{}
		for rows.Next() {
			var k kept
			if err := rows.Scan(&k.sub, &k.tenant, &k.budget); err != nil {
				rows.Close()
				return err
			}
			remembered = append(remembered, k)
			done[k.sub] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, k := range remembered {
			if _, still := held[k.tenant]; still {
				continue
			}
			sub, ok, err := getSub(ctx, tx, k.sub)
			if err != nil {
				return err
			}
			if ok && sub.State == "Disabled" {
				sub.State = "Enabled"
				if err := s.setState(ctx, tx, sub, "commerce:budget/"+k.budget+" released"); err != nil {
					return err
				}
				enabled++
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM subscription_holds WHERE subscription_id = ?`, k.sub); err != nil {
				return err
			}
		}
		for tenant, budget := range held {
			subs, err := s.subsOfTenant(ctx, tx, tenant)
			if err != nil {
				return err
			}
			for _, sub := range subs {
				if done[sub.SubscriptionID] || sub.State != "Enabled" {
					continue
				}
				sub.State = "Disabled"
				if err := s.setState(ctx, tx, sub, "commerce:budget/"+budget); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO subscription_holds (subscription_id, tenant_id, budget_id, held_at_us) VALUES (?, ?, ?, ?)`,
					sub.SubscriptionID, tenant, budget, clock.Micros(s.clock.Now())); err != nil {
					return err
				}
				disabled++
			}
		}
		return nil
	})
	return disabled, enabled, err
}

func (s *Service) setState(ctx context.Context, tx *store.Tx, sub Subscription, actor string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE user_subscriptions SET state = ?, updated_at_us = ? WHERE id = ?`, sub.State, clock.Micros(s.clock.Now()), sub.SubscriptionID); err != nil {
		return err
	}
	return s.change(ctx, tx, sub.SubscriptionID, actor, sub)
}

func (s *Service) subsOfTenant(ctx context.Context, tx *store.Tx, tenant string) ([]Subscription, error) {
	return listSubs(ctx, tx, `SELECT `+subColumns+` FROM user_subscriptions WHERE tenant_id = ? ORDER BY id`, tenant)
}
