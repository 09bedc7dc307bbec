package directory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// PutPartner creates or replaces a partner. Only the operator manages
// partners: they are the commerce side's contracts, not a partner's data.
func (s *Service) PutPartner(ctx context.Context, p auth.Principal, in Partner) (string, Partner, error) {
	if p.Role != auth.RoleOperator {
		return "", Partner{}, forbidden("Only the commerce operator can create or change partners.")
	}
	var op string
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		if err := normalizePartner(&in, txLookups(ctx, tx)); err != nil {
			return err
		}
		var err error
		op, err = upsertPartner(ctx, tx, s.clock.Now(), p.Actor(), in)
		return err
	})
	return op, in, err
}

// GetPartner returns a partner in the caller's scope.
func (s *Service) GetPartner(ctx context.Context, p auth.Principal, id string) (Partner, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return Partner{}, err
	}
	part, ok, err := getPartner(ctx, s.db, id)
	if err != nil {
		return Partner{}, err
	}
	if !ok || !sc.hasPartner(part.ID) {
		return Partner{}, notFound("Partner", id)
	}
	return part, nil
}

// ListPartners lists the partners in the caller's scope.
func (s *Service) ListPartners(ctx context.Context, p auth.Principal) ([]Partner, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, err
	}
	q, args := `SELECT id, name, type, provider_id, mpn_id FROM partners`, []any{}
	if !sc.All {
		q += ` WHERE id IN (` + store.Placeholders(len(sc.Partners)) + `)`
		args = anySlice(sc.Partners)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Partner
	for rows.Next() {
		var pt Partner
		var typ string
		if err := rows.Scan(&pt.ID, &pt.Name, &typ, &pt.Provider, &pt.MpnID); err != nil {
			return nil, err
		}
		pt.Type = PartnerType(typ)
		out = append(out, pt)
	}
	return out, rows.Err()
}

// DeletePartner removes a partner nothing refers to any more.
func (s *Service) DeletePartner(ctx context.Context, p auth.Principal, id string) (bool, error) {
	if p.Role != auth.RoleOperator {
		return false, forbidden("Only the commerce operator can delete partners.")
	}
	existed := false
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		old, ok, err := getPartner(ctx, tx, id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("Partner", id)
		}
		existed = true
		if err := ensureUnreferenced(ctx, tx, id, "delete"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM partners WHERE id = ?`, id); err != nil {
			return err
		}
		return recordChange(ctx, tx, s.clock.Now(), p.Actor(), "partner", id, "deleted", old)
	})
	return existed, err
}

// PutCustomer creates or replaces an end customer under a partner in scope.
func (s *Service) PutCustomer(ctx context.Context, p auth.Principal, in Customer) (string, Customer, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return "", Customer{}, err
	}
	var op string
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		if !sc.hasPartner(in.Partner) {
			return forbidden("The customer's partner '%s' is outside your scope.", in.Partner)
		}
		if err := normalizeCustomer(&in, txLookups(ctx, tx)); err != nil {
			return err
		}
		if old, ok, err := getCustomer(ctx, tx, in.TenantID); err != nil {
			return err
		} else if ok && !sc.hasPartner(old.Partner) {
			return forbidden("The customer %s belongs to another partner.", in.TenantID)
		}
		op, err = upsertCustomer(ctx, tx, s.clock.Now(), p.Actor(), in)
		return err
	})
	return op, in, err
}

// GetCustomer returns a customer in scope.
func (s *Service) GetCustomer(ctx context.Context, p auth.Principal, tenantID string) (Customer, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return Customer{}, err
	}
	id, _ := arm.CanonicalGUID(tenantID)
	c, ok, err := getCustomer(ctx, s.db, id)
	if err != nil {
		return Customer{}, err
	}
	if !ok || !sc.hasPartner(c.Partner) {
		return Customer{}, notFound("Customer", tenantID)
	}
	return c, nil
}

// ListCustomers lists customers in scope, optionally of one partner.
func (s *Service) ListCustomers(ctx context.Context, p auth.Principal, partner string) ([]Customer, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, err
	}
	q, args := `SELECT tenant_id, name, partner_id FROM customers WHERE 1 = 1`, []any{}
	if !sc.All {
		q += ` AND partner_id IN (` + store.Placeholders(len(sc.Partners)) + `)`
		args = anySlice(sc.Partners)
	}
	if partner != "" {
		q += ` AND partner_id = ?`
		args = append(args, partner)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY name, tenant_id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Customer
	for rows.Next() {
		var c Customer
		if err := rows.Scan(&c.TenantID, &c.Name, &c.Partner); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteCustomer removes a customer that has no subscriptions left.
func (s *Service) DeleteCustomer(ctx context.Context, p auth.Principal, tenantID string) (bool, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return false, err
	}
	id, _ := arm.CanonicalGUID(tenantID)
	existed := false
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		// Missing and not yours answer alike: a 404.
		old, ok, err := getCustomer(ctx, tx, id)
		if err != nil {
			return err
		}
		if !ok || !sc.hasPartner(old.Partner) {
			return notFound("Customer", tenantID)
		}
		existed = true
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM subscriptions WHERE customer_tenant_id = ?`, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return invalid("tenantId", "cannot delete customer %s: %d subscriptions still belong to it", id, n)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM customers WHERE tenant_id = ?`, id); err != nil {
			return err
		}
		return recordChange(ctx, tx, s.clock.Now(), p.Actor(), "customer", id, "deleted", old)
	})
	return existed, err
}

// subscriptionVisible decides whether a scope covers a subscription: through
// the partner it rolls up to, or through the customer that owns it (which is
// how a reseller sees its customers' subscriptions).
func subscriptionVisible(ctx context.Context, q store.Querier, sc Scope, sub Subscription) (bool, error) {
	if sc.hasPartner(sub.Partner) {
		return true, nil
	}
	if sub.CustomerTenantID == "" {
		return false, nil
	}
	c, ok, err := getCustomer(ctx, q, sub.CustomerTenantID)
	if err != nil || !ok {
		return false, err
	}
	return sc.hasPartner(c.Partner), nil
}

// PutSubscription creates or replaces a subscription. A partner may manage
// subscriptions that roll up to it; a reseller only its customers' CSP
// subscriptions.
func (s *Service) PutSubscription(ctx context.Context, p auth.Principal, in Subscription) (string, Subscription, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return "", Subscription{}, err
	}
	var op string
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		// Scope first: a partner that does not exist and one that is not
		// the caller's answer alike, so the directory's IDs do not leak.
		if !sc.All {
			if ok, err := s.mayNameSubscription(ctx, tx, p, sc, in); err != nil || !ok {
				if err != nil {
					return err
				}
				return forbidden("Subscription %s would be outside your scope.", in.ID)
			}
		}
		if err := normalizeSubscription(&in, txLookups(ctx, tx)); err != nil {
			return err
		}
		if !sc.All {
			if p.Role == auth.RoleReseller && in.Offer != OfferCSP {
				return forbidden("A reseller can manage only its customers' CSP subscriptions.")
			}
			if p.Role == auth.RolePartner && in.Partner != p.PartnerID {
				return forbidden("Subscription %s would roll up to '%s'; you can manage only subscriptions that roll up to '%s'.", in.ID, in.Partner, p.PartnerID)
			}
			ok, err := subscriptionVisible(ctx, tx, sc, in)
			if err != nil {
				return err
			}
			if !ok {
				return forbidden("Subscription %s is outside your scope.", in.ID)
			}
			if old, exists, err := getSubscription(ctx, tx, in.ID); err != nil {
				return err
			} else if exists {
				if ok, err := subscriptionVisible(ctx, tx, sc, old); err != nil {
					return err
				} else if !ok {
					return forbidden("Subscription %s belongs to another partner.", in.ID)
				}
			}
		}
		op, err = upsertSubscription(ctx, tx, s.clock.Now(), p.Actor(), in)
		return err
	})
	return op, in, err
}

// mayNameSubscription is the check a partner or reseller passes before the
// body is validated: a partner names itself as the partner; a reseller names
// one of its own customers.
func (s *Service) mayNameSubscription(ctx context.Context, tx *store.Tx, p auth.Principal, sc Scope, in Subscription) (bool, error) {
	if p.Role == auth.RolePartner {
		return in.Partner == p.PartnerID, nil
	}
	cid, _ := arm.CanonicalGUID(in.CustomerTenantID)
	c, ok, err := getCustomer(ctx, tx, cid)
	if err != nil || !ok {
		return false, err
	}
	return sc.hasPartner(c.Partner), nil
}

// GetSubscription returns a subscription in scope.
func (s *Service) GetSubscription(ctx context.Context, p auth.Principal, id string) (Subscription, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return Subscription{}, err
	}
	cid, _ := arm.CanonicalGUID(id)
	sub, ok, err := getSubscription(ctx, s.db, cid)
	if err != nil {
		return Subscription{}, err
	}
	if ok {
		ok, err = subscriptionVisible(ctx, s.db, sc, sub)
		if err != nil {
			return Subscription{}, err
		}
	}
	if !ok {
		return Subscription{}, notFound("Subscription", id)
	}
	return sub, nil
}

// ListSubscriptions lists subscriptions in scope.
func (s *Service) ListSubscriptions(ctx context.Context, p auth.Principal) ([]Subscription, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, err
	}
	q, args := `SELECT s.id, s.offer, s.partner_id, s.customer_tenant_id, s.name FROM subscriptions s`, []any{}
	if !sc.All {
		ph := store.Placeholders(len(sc.Partners))
		q += ` LEFT JOIN customers c ON c.tenant_id = s.customer_tenant_id WHERE s.partner_id IN (` + ph + `) OR c.partner_id IN (` + ph + `)`
		args = append(anySlice(sc.Partners), anySlice(sc.Partners)...)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY s.id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Subscription
	for rows.Next() {
		var sub Subscription
		var offer string
		if err := rows.Scan(&sub.ID, &offer, &sub.Partner, &sub.CustomerTenantID, &sub.Name); err != nil {
			return nil, err
		}
		sub.Offer = Offer(offer)
		out = append(out, sub)
	}
	return out, rows.Err()
}

// DeleteSubscription removes a subscription. Registrations and history that
// name it are kept.
func (s *Service) DeleteSubscription(ctx context.Context, p auth.Principal, id string) (bool, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return false, err
	}
	cid, _ := arm.CanonicalGUID(id)
	existed := false
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		// Missing and not yours answer alike: a 404.
		old, ok, err := getSubscription(ctx, tx, cid)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("Subscription", id)
		}
		if vis, err := subscriptionVisible(ctx, tx, sc, old); err != nil {
			return err
		} else if !vis {
			return notFound("Subscription", id)
		}
		existed = true
		if _, err := tx.ExecContext(ctx, `DELETE FROM subscriptions WHERE id = ?`, cid); err != nil {
			return err
		}
		return recordChange(ctx, tx, s.clock.Now(), p.Actor(), "subscription", cid, "deleted", old)
	})
	return existed, err
}

// Resolve answers the registration rules' question about a subscription. It is
// the embedded resolver; RemoteResolver answers the same over HTTP. One query:
// it runs on every registration request.
func (s *Service) Resolve(ctx context.Context, id string) (ResolvedSubscription, error) {
	out, errs := s.ResolveEach(ctx, []string{id})
	return out[0], errs[0]
}

// ResolveEach answers Resolve for each of ids, in one query: a writer that
// needs two subscriptions (the registration's and the customer's) asks once.
// Where every answer is in the cache, it asks nothing.
func (s *Service) ResolveEach(ctx context.Context, ids []string) ([]ResolvedSubscription, []error) {
	out := make([]ResolvedSubscription, len(ids))
	errs := make([]error, len(ids))
	for i, id := range ids {
		cid, _ := arm.CanonicalGUID(id)
		// g is taken before the read, so put can tell whether a change
		// was heard while it ran.
		r, ok, g := s.cache.get(cid)
		if !ok {
			s.cache.misses.Add(1)
			out, errs = s.resolveEach(ctx, ids)
			var found []ResolvedSubscription
			for i := range out {
				if errs[i] == nil {
					found = append(found, out[i])
				}
			}
			s.cache.put(g, found)
			return out, errs
		}
		out[i] = r
	}
	s.cache.hits.Add(1)
	return out, errs
}

func (s *Service) resolveEach(ctx context.Context, ids []string) ([]ResolvedSubscription, []error) {
	out := make([]ResolvedSubscription, len(ids))
	errs := make([]error, len(ids))
	var args []any
	for i, id := range ids {
		errs[i] = ErrNotFound
		if cid, ok := arm.CanonicalGUID(id); ok {
			args = append(args, cid)
		}
	}
	if len(args) == 0 {
		return out, errs
	}
	// The subscription, its partner and its customer's partner: what the
	// one roll-up rule (account) needs, in one query.
	rows, err := s.db.QueryContext(ctx, `SELECT s.id, s.offer, s.partner_id, s.customer_tenant_id,
			COALESCE(sp.id, ''), COALESCE(sp.type, ''), COALESCE(sp.provider_id, ''),
			COALESCE(c.tenant_id, ''), COALESCE(c.partner_id, ''),
			COALESCE(cp.id, ''), COALESCE(cp.type, ''), COALESCE(cp.provider_id, '')
		FROM subscriptions s LEFT JOIN partners sp ON sp.id = s.partner_id
			LEFT JOIN customers c ON c.tenant_id = s.customer_tenant_id LEFT JOIN partners cp ON cp.id = c.partner_id
		WHERE s.id IN (`+store.Placeholders(len(args))+`)`, args...)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return out, errs
	}
	defer rows.Close()
	found := map[string]ResolvedSubscription{}
	for rows.Next() {
		var sub Subscription
		var offer string
		var holder, owner Partner
		var holderType, ownerType string
		var c Customer
		if err := rows.Scan(&sub.ID, &offer, &sub.Partner, &sub.CustomerTenantID,
			&holder.ID, &holderType, &holder.Provider, &c.TenantID, &c.Partner, &owner.ID, &ownerType, &owner.Provider); err != nil {
			for i := range errs {
				errs[i] = err
			}
			return out, errs
		}
		holder.Type, owner.Type = PartnerType(holderType), PartnerType(ownerType)
		partners := map[string]Partner{}
		for _, p := range []Partner{holder, owner} {
			if p.ID != "" {
				partners[p.ID] = p
			}
		}
		a := account(sub, func(id string) (Partner, bool) { p, ok := partners[id]; return p, ok },
			func(t string) (Customer, bool) { return c, c.TenantID != "" && c.TenantID == t })
		found[sub.ID] = ResolvedSubscription{ID: sub.ID, Offer: Offer(offer), RollsUpTo: a.BillTo, CustomerTenantID: sub.CustomerTenantID, Reseller: a.Reseller,
			Scope: scopeOf(sub.Partner, c.Partner)}
	}
	if err := rows.Err(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return out, errs
	}
	for i, id := range ids {
		if cid, ok := arm.CanonicalGUID(id); ok {
			if r, ok := found[cid]; ok {
				out[i], errs[i] = r, nil
			}
		}
	}
	return out, errs
}

// Change is one entry of the directory history.
type Change struct {
	Seq      int64           `json:"seq"`
	Kind     string          `json:"kind"`
	EntityID string          `json:"entityId"`
	Op       string          `json:"op"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Data     json.RawMessage `json:"data"`
}

// History returns the recorded changes of one entry, oldest first. Only the
// operator reads the raw history; partners read current state.
func (s *Service) History(ctx context.Context, p auth.Principal, kind, id string) ([]Change, error) {
	if p.Role != auth.RoleOperator {
		return nil, forbidden("Only the commerce operator can read the directory history.")
	}
	if cid, ok := arm.CanonicalGUID(id); ok {
		id = cid
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, kind, entity_id, op, at_us, actor, data FROM directory_changes WHERE kind = ? AND entity_id = ? ORDER BY seq`, kind, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		var at int64
		var data string
		if err := rows.Scan(&c.Seq, &c.Kind, &c.EntityID, &c.Op, &at, &c.Actor, &data); err != nil {
			return nil, err
		}
		c.At = clock.FromMicros(at)
		c.Data = json.RawMessage(data)
		out = append(out, c)
	}
	return out, rows.Err()
}

// SubscriptionAsOf returns the subscription as it was recorded at instant t.
// Billing uses it to charge each hour by the facts of that hour.
func (s *Service) SubscriptionAsOf(ctx context.Context, id string, t time.Time) (Subscription, error) {
	cid, _ := arm.CanonicalGUID(id)
	var op, data string
	err := s.db.QueryRowContext(ctx, `SELECT op, data FROM directory_changes WHERE kind = 'subscription' AND entity_id = ? AND at_us <= ? ORDER BY seq DESC LIMIT 1`,
		cid, clock.Micros(t)).Scan(&op, &data)
	if errors.Is(err, sql.ErrNoRows) || op == "deleted" {
		return Subscription{}, ErrNotFound
	}
	if err != nil {
		return Subscription{}, err
	}
	var sub Subscription
	return sub, json.Unmarshal([]byte(data), &sub)
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// ParseKind maps a URL word to a history kind.
func ParseKind(s string) (string, bool) {
	switch strings.ToLower(strings.TrimSuffix(s, "s")) {
	case "partner":
		return "partner", true
	case "customer":
		return "customer", true
	case "subscription":
		return "subscription", true
	}
	return "", false
}
