package directory

import (
	"context"
	"sort"

	"github.com/stackbill/stackbill/internal/store"
)

// Account is who is billed for a subscription's usage.
type Account struct {
	// BillTo is the direct CSP or indirect provider that holds the billing
	// relationship.
	BillTo string
	// Reseller is the indirect reseller whose customer owns the
	// subscription, if any.
	Reseller string
	// Customer is the customer's tenant; empty for a partner's own
	// subscription.
	Customer string
}

// account is the one rule of who is billed for subscription s: it rolls up
// to the partner holding the billing relationship (a reseller's provider),
// and a reseller shows through its customer. Registration (Resolve), the
// directory's own validation (rollsUp) and billing (Snapshot.Account) all
// answer with it.
func account(s Subscription, partner func(id string) (Partner, bool), customer func(tenant string) (Customer, bool)) Account {
	a := Account{BillTo: s.Partner, Customer: s.CustomerTenantID}
	if p, ok := partner(s.Partner); ok {
		a.BillTo = rollsUp(p)
		if p.Type == IndirectReseller {
			a.Reseller = p.ID
		}
	}
	if c, ok := customer(s.CustomerTenantID); ok {
		if p, ok := partner(c.Partner); ok && p.Type == IndirectReseller {
			a.Reseller = p.ID
		}
	}
	return a
}

// rollsUp is the partner holding the billing relationship for p's customers.
func rollsUp(p Partner) string {
	if p.Type == IndirectReseller {
		return p.Provider
	}
	return p.ID
}

// Snapshot is the whole directory read at one instant, so that a billing
// run is consistent and does not query per record. It is a value: billing
// stores it with each finalized period and reads a period's bills with the
// directory they were finalized with.
type Snapshot struct {
	Partners      map[string]Partner      `json:"partners"`
	Customers     map[string]Customer     `json:"customers"`
	Subscriptions map[string]Subscription `json:"subscriptions"`
}

// Account is who is billed for subscription id's usage. Only CSP and CSPSS
// subscriptions are billed by a CSP partner; EA, PAYG and unknown ones are
// not (ok false).
func (d *Snapshot) Account(id string) (Account, bool) {
	s, ok := d.Subscriptions[id]
	if !ok || s.Partner == "" || (s.Offer != OfferCSP && s.Offer != OfferCSPSS) {
		return Account{}, false
	}
	return account(s, func(id string) (Partner, bool) { p, ok := d.Partners[id]; return p, ok },
		func(t string) (Customer, bool) { c, ok := d.Customers[t]; return c, ok }), true
}

// PartnerIDs lists the partners in ID order.
func (d *Snapshot) PartnerIDs() []string {
	ids := make([]string, 0, len(d.Partners))
	for id := range d.Partners {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Snapshot reads the whole directory in one read transaction.
func (s *Service) Snapshot(ctx context.Context) (*Snapshot, error) {
	d := &Snapshot{Partners: map[string]Partner{}, Customers: map[string]Customer{}, Subscriptions: map[string]Subscription{}}
	err := s.db.Read(ctx, func(tx *store.Tx) error {
		type scan func(scan func(...any) error) error
		run := func(query string, fn scan) error {
			rows, err := tx.QueryContext(ctx, query)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				if err := fn(rows.Scan); err != nil {
					return err
				}
			}
			return rows.Err()
		}
		err := run(`SELECT id, name, type, provider_id, mpn_id FROM partners`, func(sc func(...any) error) error {
			var p Partner
			var t string
			if err := sc(&p.ID, &p.Name, &t, &p.Provider, &p.MpnID); err != nil {
				return err
			}
			p.Type = PartnerType(t)
			d.Partners[p.ID] = p
			return nil
		})
		if err == nil {
			err = run(`SELECT tenant_id, name, partner_id FROM customers`, func(sc func(...any) error) error {
				var c Customer
				if err := sc(&c.TenantID, &c.Name, &c.Partner); err != nil {
					return err
				}
				d.Customers[c.TenantID] = c
				return nil
			})
		}
		if err == nil {
			err = run(`SELECT id, offer, partner_id, customer_tenant_id, name FROM subscriptions`, func(sc func(...any) error) error {
				var sub Subscription
				var o string
				if err := sc(&sub.ID, &o, &sub.Partner, &sub.CustomerTenantID, &sub.Name); err != nil {
					return err
				}
				sub.Offer = Offer(o)
				d.Subscriptions[sub.ID] = sub
				return nil
			})
		}
		return err
	})
	return d, err
}
