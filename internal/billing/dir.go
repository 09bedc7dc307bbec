package billing

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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

// dirJSON is a dirSnapshot as stored with a finalized period.
type dirJSON struct {
	Partners      map[string]directory.Partner      `json:"partners"`
	Customers     map[string]directory.Customer     `json:"customers"`
	Subscriptions map[string]directory.Subscription `json:"subscriptions"`
	Currencies    map[string]string                 `json:"currencies"`
	Registrations map[string]regJSON                `json:"registrations"`
}

type regJSON struct {
	Name    string `json:"name"`
	CloudID string `json:"cloudId"`
}

// saveDirectory stores the directory a period was finalized with.
func saveDirectory(ctx context.Context, tx *store.Tx, period string, d *dirSnapshot) error {
	j := dirJSON{Partners: d.partners, Customers: d.customers, Subscriptions: d.subs, Currencies: d.currencies,
		Registrations: map[string]regJSON{}}
	for uid, r := range d.regs {
		j.Registrations[uid] = regJSON{r.name, r.cloudID}
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO period_directories (period, snapshot) VALUES (?, ?)`, period, string(b))
	return err
}

// periodDirectory is the directory a finalized period was finalized with,
// or the current one for periods finalized before snapshots were kept.
func periodDirectory(ctx context.Context, q store.Querier, period string) (*dirSnapshot, error) {
	var doc string
	err := q.QueryRowContext(ctx, `SELECT snapshot FROM period_directories WHERE period = ?`, period).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return loadDirectory(ctx, q)
	}
	if err != nil {
		return nil, err
	}
	var j dirJSON
	if err := json.Unmarshal([]byte(doc), &j); err != nil {
		return nil, fmt.Errorf("period %s directory snapshot: %w", period, err)
	}
	d := &dirSnapshot{partners: j.Partners, customers: j.Customers, subs: j.Subscriptions, currencies: j.Currencies, regs: map[string]regInfo{}}
	for uid, r := range j.Registrations {
		d.regs[uid] = regInfo{name: r.Name, cloudID: r.CloudID}
	}
	if d.currencies == nil {
		d.currencies = map[string]string{}
	}
	return d, nil
}
