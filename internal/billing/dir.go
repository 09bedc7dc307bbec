package billing

import (
	"context"
	"sort"

	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/store"
)

// dirSnapshot is the directory as one billing run sees it: read once, so that
// a run is consistent and does not query per record.
type dirSnapshot struct {
	partners   map[string]directory.Partner
	customers  map[string]directory.Customer
	subs       map[string]directory.Subscription
	currencies map[string]string
	regs       map[string]regInfo
}

type regInfo struct{ name, cloudID string }

func loadDirectory(ctx context.Context, q store.Querier) (*dirSnapshot, error) {
	d := &dirSnapshot{partners: map[string]directory.Partner{}, customers: map[string]directory.Customer{},
		subs: map[string]directory.Subscription{}, currencies: map[string]string{}, regs: map[string]regInfo{}}
	type scan func(scan func(...any) error) error
	run := func(query string, fn scan) error {
		rows, err := q.QueryContext(ctx, query)
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
		var p directory.Partner
		var t string
		if err := sc(&p.ID, &p.Name, &t, &p.Provider, &p.MpnID); err != nil {
			return err
		}
		p.Type = directory.PartnerType(t)
		d.partners[p.ID] = p
		return nil
	})
	if err == nil {
		err = run(`SELECT tenant_id, name, partner_id FROM customers`, func(sc func(...any) error) error {
			var c directory.Customer
			if err := sc(&c.TenantID, &c.Name, &c.Partner); err != nil {
				return err
			}
			d.customers[c.TenantID] = c
			return nil
		})
	}
	if err == nil {
		err = run(`SELECT id, offer, partner_id, customer_tenant_id, name FROM subscriptions`, func(sc func(...any) error) error {
			var s directory.Subscription
			var o string
			if err := sc(&s.ID, &o, &s.Partner, &s.CustomerTenantID, &s.Name); err != nil {
				return err
			}
			s.Offer = directory.Offer(o)
			d.subs[s.ID] = s
			return nil
		})
	}
	if err == nil {
		err = run(`SELECT partner_id, currency FROM billing_agreements`, func(sc func(...any) error) error {
			var id, c string
			if err := sc(&id, &c); err != nil {
				return err
			}
			d.currencies[id] = c
			return nil
		})
	}
	if err == nil {
		err = run(`SELECT uid, name, cloud_id FROM registrations`, func(sc func(...any) error) error {
			var uid string
			var r regInfo
			if err := sc(&uid, &r.name, &r.cloudID); err != nil {
				return err
			}
			d.regs[uid] = r
			return nil
		})
	}
	return d, err
}

func (d *dirSnapshot) currency(partnerID string) string {
	if c, ok := d.currencies[partnerID]; ok {
		return c
	}
	return DefaultCurrency
}

func (d *dirSnapshot) sortedPartners() []string {
	ids := make([]string, 0, len(d.partners))
	for id := range d.partners {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// account is who a charged subscription's usage is billed to.
type account struct {
	billTo   string // the direct CSP or indirect provider
	reseller string // the indirect reseller whose customer owns it, if any
	customer string // the customer's tenant; empty for a partner's own subscription
}

// accountOf follows the CSP roll-up: a subscription rolls up to a direct
// partner or an indirect provider, who holds the billing relationship. EA,
// PAYG and unknown subscriptions are not billed by a CSP partner.
func (d *dirSnapshot) accountOf(subID string) (account, bool) {
	s, ok := d.subs[subID]
	if !ok || s.Partner == "" || (s.Offer != directory.OfferCSP && s.Offer != directory.OfferCSPSS) {
		return account{}, false
	}
	a := account{billTo: s.Partner, customer: s.CustomerTenantID}
	if p, ok := d.partners[s.Partner]; ok && p.Type == directory.IndirectReseller {
		a.billTo, a.reseller = p.Provider, p.ID
	}
	if c, ok := d.customers[s.CustomerTenantID]; ok {
		if p, ok := d.partners[c.Partner]; ok && p.Type == directory.IndirectReseller {
			a.reseller = p.ID
		}
	}
	return a, true
}
