package directory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// Service reads and changes the directory.
type Service struct {
	db    *store.DB
	clock *clock.Clock
	cache *resolveCache
}

// NewService builds a Service. Its resolution cache listens for directory
// changes on db (see store.OnChange).
func NewService(db *store.DB, c *clock.Clock) *Service {
	s := &Service{db: db, clock: c, cache: &resolveCache{}}
	db.OnChange(changesChannel, s.cache.changed)
	return s
}

// Scope is the part of the directory a principal may see.
type Scope struct {
	All      bool
	Partners []string // partners whose customers and subscriptions are visible
}

func (s Scope) hasPartner(id string) bool { return s.All || slices.Contains(s.Partners, id) }

// ScopeFor computes a principal's scope: the operator sees everything, a
// partner sees itself and (as an indirect provider) its resellers, a reseller
// sees itself. Other roles see nothing of the directory.
func (s *Service) ScopeFor(ctx context.Context, p auth.Principal) (Scope, error) {
	switch p.Role {
	case auth.RoleOperator:
		return Scope{All: true}, nil
	case auth.RolePartner:
		ids := []string{p.PartnerID}
		rows, err := s.db.QueryContext(ctx, `SELECT id FROM partners WHERE provider_id = ? ORDER BY id`, p.PartnerID)
		if err != nil {
			return Scope{}, err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return Scope{}, err
			}
			ids = append(ids, id)
		}
		return Scope{Partners: ids}, rows.Err()
	case auth.RoleReseller:
		return Scope{Partners: []string{p.PartnerID}}, nil
	}
	return Scope{}, nil
}

func (s *Service) scope(ctx context.Context, p auth.Principal) (Scope, error) {
	sc, err := s.ScopeFor(ctx, p)
	if err != nil {
		return Scope{}, err
	}
	if !sc.All && len(sc.Partners) == 0 {
		return Scope{}, forbidden("The role '%s' has no access to the partner directory.", p.Role)
	}
	return sc, nil
}

// txLookups reads the directory inside a write transaction.
func txLookups(ctx context.Context, q store.Querier) lookups {
	return lookups{
		partner:  func(id string) (Partner, bool, error) { return getPartner(ctx, q, id) },
		customer: func(id string) (Customer, bool, error) { return getCustomer(ctx, q, id) },
	}
}

func getPartner(ctx context.Context, q store.Querier, id string) (Partner, bool, error) {
	var p Partner
	var typ string
	err := q.QueryRowContext(ctx, `SELECT id, name, type, provider_id, mpn_id FROM partners WHERE id = ?`, id).Scan(&p.ID, &p.Name, &typ, &p.Provider, &p.MpnID)
	if errors.Is(err, sql.ErrNoRows) {
		return Partner{}, false, nil
	}
	p.Type = PartnerType(typ)
	return p, err == nil, err
}

func getCustomer(ctx context.Context, q store.Querier, tenantID string) (Customer, bool, error) {
	var c Customer
	err := q.QueryRowContext(ctx, `SELECT tenant_id, name, partner_id FROM customers WHERE tenant_id = ?`, tenantID).Scan(&c.TenantID, &c.Name, &c.Partner)
	if errors.Is(err, sql.ErrNoRows) {
		return Customer{}, false, nil
	}
	return c, err == nil, err
}

func getSubscription(ctx context.Context, q store.Querier, id string) (Subscription, bool, error) {
	var sub Subscription
	var offer string
	err := q.QueryRowContext(ctx, `SELECT id, offer, partner_id, customer_tenant_id, name FROM subscriptions WHERE id = ?`, id).
		Scan(&sub.ID, &offer, &sub.Partner, &sub.CustomerTenantID, &sub.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return Subscription{}, false, nil
	}
	sub.Offer = Offer(offer)
	return sub, err == nil, err
}

// recordChange appends to the directory history.
func recordChange(ctx context.Context, tx *store.Tx, at time.Time, actor, kind, id, op string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if _, err = tx.ExecContext(ctx, `INSERT INTO directory_changes (kind, entity_id, op, at_us, actor, data) VALUES (?, ?, ?, ?, ?, ?)`,
		kind, id, op, clock.Micros(at), actor, string(b)); err != nil {
		return err
	}
	if err := tx.Changed(ctx, changesChannel); err != nil {
		return err
	}
	var scope string
	switch v := data.(type) {
	case Partner:
		scope = v.ID
	case Customer:
		scope = v.Partner
	case Subscription:
		if scope, err = ScopeOfSubscription(ctx, tx, v.ID); err != nil {
			return err
		}
	}
	after := audit.JSON(data)
	if op == "deleted" {
		after = audit.JSON(nil)
	}
	return audit.Append(ctx, tx, audit.Entry{At: at, Actor: actor, Action: kind + "." + op, Kind: kind, ID: id, Scope: scope, After: after})
}

// ScopeOfSubscription is the partner whose audit view includes records about
// subscription id: the reseller of its customer when it has one, else the
// partner it rolls up to ("" when the directory does not know it).
func ScopeOfSubscription(ctx context.Context, q store.Querier, id string) (string, error) {
	var partner string
	var customerPartner sql.NullString
	err := q.QueryRowContext(ctx, `SELECT s.partner_id, c.partner_id FROM subscriptions s LEFT JOIN customers c ON c.tenant_id = s.customer_tenant_id WHERE s.id = ?`,
		strings.ToLower(id)).Scan(&partner, &customerPartner)
	switch {
	case store.IsNoRows(err):
		return "", nil
	case err != nil:
		return "", err
	}
	return scopeOf(partner, customerPartner.String), nil
}

// scopeOf is the audit scope of a subscription held by partner whose
// customer belongs to customerPartner ("" when it has none): the customer's
// partner (a reseller) sees records about its customers' subscriptions.
func scopeOf(partner, customerPartner string) string {
	if customerPartner != "" {
		return customerPartner
	}
	return partner
}

// Change outcomes.
const (
	Created   = "created"
	Updated   = "updated"
	Unchanged = "unchanged"
)

func upsertPartner(ctx context.Context, tx *store.Tx, now time.Time, actor string, p Partner) (string, error) {
	old, ok, err := getPartner(ctx, tx, p.ID)
	if err != nil {
		return "", err
	}
	switch {
	case !ok:
		_, err = tx.ExecContext(ctx, `INSERT INTO partners (id, name, type, provider_id, mpn_id, created_at_us, updated_at_us) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.Name, string(p.Type), p.Provider, p.MpnID, clock.Micros(now), clock.Micros(now))
	case old == p:
		return Unchanged, nil
	default:
		if old.Type != p.Type {
			if err := ensureUnreferenced(ctx, tx, p.ID, "change the type of"); err != nil {
				return "", err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE partners SET name = ?, type = ?, provider_id = ?, mpn_id = ?, updated_at_us = ? WHERE id = ?`,
			p.Name, string(p.Type), p.Provider, p.MpnID, clock.Micros(now), p.ID)
	}
	if err != nil {
		return "", err
	}
	if err := recheckPartner(ctx, tx, p.ID); err != nil {
		return "", err
	}
	op := Created
	if ok {
		op = Updated
	}
	return op, recordChange(ctx, tx, now, actor, "partner", p.ID, op, p)
}

func upsertCustomer(ctx context.Context, tx *store.Tx, now time.Time, actor string, c Customer) (string, error) {
	old, ok, err := getCustomer(ctx, tx, c.TenantID)
	if err != nil {
		return "", err
	}
	switch {
	case !ok:
		_, err = tx.ExecContext(ctx, `INSERT INTO customers (tenant_id, name, partner_id, created_at_us, updated_at_us) VALUES (?, ?, ?, ?, ?)`,
			c.TenantID, c.Name, c.Partner, clock.Micros(now), clock.Micros(now))
	case old == c:
		return Unchanged, nil
	default:
		_, err = tx.ExecContext(ctx, `UPDATE customers SET name = ?, partner_id = ?, updated_at_us = ? WHERE tenant_id = ?`, c.Name, c.Partner, clock.Micros(now), c.TenantID)
	}
	if err != nil {
		return "", err
	}
	if err := recheckSubscriptions(ctx, tx, `customer_tenant_id = ?`, c.TenantID); err != nil {
		return "", err
	}
	op := Created
	if ok {
		op = Updated
	}
	return op, recordChange(ctx, tx, now, actor, "customer", c.TenantID, op, c)
}

func upsertSubscription(ctx context.Context, tx *store.Tx, now time.Time, actor string, s Subscription) (string, error) {
	old, ok, err := getSubscription(ctx, tx, s.ID)
	if err != nil {
		return "", err
	}
	switch {
	case !ok:
		_, err = tx.ExecContext(ctx, `INSERT INTO subscriptions (id, offer, partner_id, customer_tenant_id, name, created_at_us, updated_at_us) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			s.ID, string(s.Offer), s.Partner, s.CustomerTenantID, s.Name, clock.Micros(now), clock.Micros(now))
	case old == s:
		return Unchanged, nil
	default:
		_, err = tx.ExecContext(ctx, `UPDATE subscriptions SET offer = ?, partner_id = ?, customer_tenant_id = ?, name = ?, updated_at_us = ? WHERE id = ?`,
			string(s.Offer), s.Partner, s.CustomerTenantID, s.Name, clock.Micros(now), s.ID)
	}
	if err != nil {
		return "", err
	}
	op := Created
	if ok {
		op = Updated
	}
	return op, recordChange(ctx, tx, now, actor, "subscription", s.ID, op, s)
}

// recheckPartner re-validates what depends on a changed partner: its resellers
// and the subscriptions of its customers, so that an edit can never leave a
// CSP subscription rolling up to the wrong partner.
func recheckPartner(ctx context.Context, tx *store.Tx, id string) error {
	lk := txLookups(ctx, tx)
	rows, err := tx.QueryContext(ctx, `SELECT id FROM partners WHERE provider_id = ?`, id)
	if err != nil {
		return err
	}
	var resellers []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return err
		}
		resellers = append(resellers, r)
	}
	rows.Close()
	for _, r := range resellers {
		p, _, err := getPartner(ctx, tx, r)
		if err != nil {
			return err
		}
		if err := normalizePartner(&p, lk); err != nil {
			return prefixed(fmt.Sprintf("partner %s cannot change", id), err)
		}
	}
	if err := recheckSubscriptions(ctx, tx, `partner_id = ?`, id); err != nil {
		return err
	}
	return recheckSubscriptions(ctx, tx, `customer_tenant_id IN (SELECT tenant_id FROM customers WHERE partner_id = ?)`, id)
}

func recheckSubscriptions(ctx context.Context, tx *store.Tx, where string, arg any) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, offer, partner_id, customer_tenant_id, name FROM subscriptions WHERE `+where, arg)
	if err != nil {
		return err
	}
	var subs []Subscription
	for rows.Next() {
		var s Subscription
		var offer string
		if err := rows.Scan(&s.ID, &offer, &s.Partner, &s.CustomerTenantID, &s.Name); err != nil {
			rows.Close()
			return err
		}
		s.Offer = Offer(offer)
		subs = append(subs, s)
	}
	rows.Close()
	lk := txLookups(ctx, tx)
	for _, s := range subs {
		if err := normalizeSubscription(&s, lk); err != nil {
			return prefixed(fmt.Sprintf("the change would make subscription %s inconsistent", s.ID), err)
		}
	}
	return nil
}

// prefixed adds context to a validation error and keeps it a 400.
func prefixed(prefix string, err error) error {
	if e, ok := arm.As(err); ok {
		c := *e
		c.Message = prefix + ": " + e.Message
		return &c
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

func ensureUnreferenced(ctx context.Context, tx *store.Tx, partnerID, verb string) error {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM partners WHERE provider_id = ?) +
		(SELECT COUNT(*) FROM customers WHERE partner_id = ?) +
		(SELECT COUNT(*) FROM subscriptions WHERE partner_id = ?)`, partnerID, partnerID, partnerID).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return invalid("id", "cannot %s partner %q: %d resellers, customers or subscriptions still refer to it", verb, partnerID, n)
	}
	return nil
}
