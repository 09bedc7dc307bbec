// Package tenancy is the stack's own view of who uses it: the directory
// tenants onboarded for multi-tenancy and the user subscriptions they own, in
// Azure Stack Hub's Microsoft.Subscriptions.Admin shapes.
//
// Every user subscription has a delegated provider: the stack's own provider
// subscription, or a delegated provider's subscription (for example a reseller
// operating on the stamp), which owns its tenants' subscriptions. The stack
// operator sees everything; a delegated provider sees its direct tenants.
// Subscriptions are never removed: DELETE marks them Deleted, and their usage
// stays queryable. State and ownership changes are kept with their times.
package tenancy

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// Subscription states, as Azure Stack names them.
var states = []string{"NotDefined", "Enabled", "Warned", "PastDue", "Disabled", "Deleted"}

// Subscription is a user subscription on the stack.
type Subscription struct {
	SubscriptionID                  string `json:"subscriptionId"`
	DisplayName                     string `json:"displayName"`
	Owner                           string `json:"owner"`
	TenantID                        string `json:"tenantId"`
	OfferID                         string `json:"offerId"`
	State                           string `json:"state"`
	DelegatedProviderSubscriptionID string `json:"delegatedProviderSubscriptionId"`
}

// DirectoryTenant is an onboarded guest directory.
type DirectoryTenant struct {
	Name     string `json:"name"`
	TenantID string `json:"tenantId"`
}

// Service manages tenancy.
type Service struct {
	db       *store.DB
	clock    *clock.Clock
	provider string
}

// ProviderSubscription returns the stack's provider subscription ID: the
// given one, or one generated on first start and kept.
func ProviderSubscription(ctx context.Context, db *store.DB, given string) (string, error) {
	if given != "" {
		id, ok := arm.CanonicalGUID(given)
		if !ok {
			return "", errors.New("--provider-subscription must be a GUID")
		}
		if err := db.SetSetting(ctx, "stack.provider_subscription", id); err != nil {
			return "", err
		}
		return id, nil
	}
	return db.Setting(ctx, "stack.provider_subscription", func() (string, error) { return NewGUID(), nil })
}

// NewGUID returns a random (version 4) GUID.
func NewGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// NewService builds a Service for the stack whose provider subscription is
// provider.
func NewService(db *store.DB, c *clock.Clock, provider string) *Service {
	return &Service{db: db, clock: c, provider: provider}
}

// Provider is the stack's provider subscription.
func (s *Service) Provider() string { return s.provider }

// scope checks that p may act on the provider subscription in the path and
// returns the delegated provider whose tenants p manages ("" for all).
func (s *Service) scope(p auth.Principal, providerSub string) (string, error) {
	prov, ok := arm.CanonicalGUID(providerSub)
	if !ok {
		return "", arm.Errorf(arm.Invalid, "InvalidSubscriptionId", "The provided subscription identifier '%s' is malformed or invalid.", providerSub)
	}
	switch {
	case (p.Role == auth.RoleStackOperator || p.Role == auth.RoleOperator) && p.SubscriptionID == "":
		if prov == s.provider {
			return "", nil
		}
		return prov, nil
	case p.Role == auth.RoleStackOperator && p.SubscriptionID == prov:
		return prov, nil
	}
	return "", arm.Forbidden(p.Actor(), "Microsoft.Subscriptions.Admin/subscriptions/read", "/subscriptions/"+prov)
}

// PutDirectoryTenant onboards a directory tenant. Only the stack operator
// onboards directories.
func (s *Service) PutDirectoryTenant(ctx context.Context, p auth.Principal, providerSub string, t DirectoryTenant) (DirectoryTenant, bool, error) {
	dp, err := s.scope(p, providerSub)
	if err != nil {
		return t, false, err
	}
	if dp != "" {
		return t, false, arm.Forbidden(p.Actor(), "Microsoft.Subscriptions.Admin/directoryTenants/write", "/subscriptions/"+dp)
	}
	id, ok := arm.CanonicalGUID(t.TenantID)
	if !ok {
		return t, false, arm.InvalidRequest("properties.tenantId", "properties.tenantId must be the directory tenant's GUID; got '%s'.", t.TenantID)
	}
	t.TenantID = id
	if t.Name == "" {
		t.Name = id
	}
	created := false
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO directory_tenants (tenant_id, name, created_at_us, created_by) VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id) DO NOTHING`,
			id, t.Name, clock.Micros(s.clock.Now()), p.Actor())
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		created = n == 1
		if !created {
			return nil
		}
		return audit.Append(ctx, tx, audit.Entry{At: s.clock.Now(), Actor: p.Actor(), Action: "directoryTenant.onboard", Kind: "directoryTenant", ID: id, After: audit.JSON(t)})
	})
	return t, created, err
}

// ListDirectoryTenants lists onboarded directories.
func (s *Service) ListDirectoryTenants(ctx context.Context, p auth.Principal, providerSub string) ([]DirectoryTenant, error) {
	if _, err := s.scope(p, providerSub); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name, tenant_id FROM directory_tenants ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DirectoryTenant
	for rows.Next() {
		var t DirectoryTenant
		if err := rows.Scan(&t.Name, &t.TenantID); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// GetDirectoryTenant returns an onboarded directory by name or tenant ID.
func (s *Service) GetDirectoryTenant(ctx context.Context, p auth.Principal, providerSub, name string) (DirectoryTenant, error) {
	if _, err := s.scope(p, providerSub); err != nil {
		return DirectoryTenant{}, err
	}
	var t DirectoryTenant
	id, _ := arm.CanonicalGUID(name)
	err := s.db.QueryRowContext(ctx, `SELECT name, tenant_id FROM directory_tenants WHERE name = ? OR tenant_id = ?`, name, id).Scan(&t.Name, &t.TenantID)
	if errors.Is(err, sql.ErrNoRows) {
		return t, arm.Errorf(arm.NotFound, "DirectoryTenantNotFound", "The directory tenant '%s' is not onboarded on this stack.", name)
	}
	return t, err
}

// DeleteDirectoryTenant offboards a directory that no subscription names as
// its owner any more.
func (s *Service) DeleteDirectoryTenant(ctx context.Context, p auth.Principal, providerSub, name string) (bool, error) {
	t, err := s.GetDirectoryTenant(ctx, p, providerSub, name)
	if err != nil {
		if arm.Is(err, arm.NotFound) {
			return false, nil
		}
		return false, err
	}
	if dp, _ := s.scope(p, providerSub); dp != "" {
		return false, arm.Forbidden(p.Actor(), "Microsoft.Subscriptions.Admin/directoryTenants/delete", "/subscriptions/"+dp)
	}
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM user_subscriptions WHERE tenant_id = ? AND state <> 'Deleted'`, t.TenantID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return arm.Errorf(arm.Invalid, "DirectoryTenantInUse", "The directory tenant %s still owns %d subscriptions; delete them first.", t.TenantID, n)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM directory_tenants WHERE tenant_id = ?`, t.TenantID); err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: s.clock.Now(), Actor: p.Actor(), Action: "directoryTenant.offboard", Kind: "directoryTenant", ID: t.TenantID, After: audit.JSON(nil)})
	})
	return err == nil, err
}

func validState(s string) (string, bool) {
	for _, st := range states {
		if strings.EqualFold(st, s) {
			return st, true
		}
	}
	return "", false
}

func getSub(ctx context.Context, q store.Querier, id string) (Subscription, bool, error) {
	s, err := scanSub(q.QueryRowContext(ctx, `SELECT `+subColumns+` FROM user_subscriptions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	return s, err == nil, err
}

// PutSubscription creates or updates a user subscription under the provider
// subscription in the path.
func (s *Service) PutSubscription(ctx context.Context, p auth.Principal, providerSub, id string, in Subscription) (Subscription, bool, error) {
	dp, err := s.scope(p, providerSub)
	if err != nil {
		return in, false, err
	}
	sid, ok := arm.CanonicalGUID(id)
	if !ok {
		return in, false, arm.Errorf(arm.Invalid, "InvalidSubscriptionId", "The subscription identifier '%s' is not a GUID.", id)
	}
	if in.SubscriptionID != "" && !strings.EqualFold(in.SubscriptionID, sid) {
		return in, false, arm.InvalidRequest("properties.subscriptionId", "properties.subscriptionId '%s' differs from the path's '%s'.", in.SubscriptionID, id)
	}
	in.SubscriptionID = sid
	tid, ok := arm.CanonicalGUID(in.TenantID)
	if !ok {
		return in, false, arm.InvalidRequest("properties.tenantId", "properties.tenantId must be the GUID of the owner's directory tenant; got '%s'.", in.TenantID)
	}
	in.TenantID = tid
	if in.State == "" {
		in.State = "Enabled"
	}
	st, ok := validState(in.State)
	if !ok {
		return in, false, arm.InvalidRequest("properties.state", "properties.state '%s' is not one of %s.", in.State, strings.Join(states, ", "))
	}
	in.State = st
	if dp == "" {
		dp = s.provider
	}
	if in.DelegatedProviderSubscriptionID == "" {
		in.DelegatedProviderSubscriptionID = dp
	}
	dps, ok := arm.CanonicalGUID(in.DelegatedProviderSubscriptionID)
	if !ok {
		return in, false, arm.InvalidRequest("properties.delegatedProviderSubscriptionId", "properties.delegatedProviderSubscriptionId is not a GUID.")
	}
	in.DelegatedProviderSubscriptionID = dps
	if dps != dp && !(dp == s.provider && p.SubscriptionID == "") {
		return in, false, arm.Forbidden(p.Actor(), "Microsoft.Subscriptions.Admin/subscriptions/write", "/subscriptions/"+dps)
	}
	if in.DisplayName == "" {
		in.DisplayName = sid
	}
	created := false
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM directory_tenants WHERE tenant_id = ?`, tid).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return arm.Errorf(arm.Invalid, "DirectoryTenantNotOnboarded",
				"The directory tenant %s is not onboarded on this stack. Onboard it first (PUT …/directoryTenants/{name} with properties.tenantId).", tid).WithTarget("properties.tenantId")
		}
		if dps != s.provider {
			prov, ok, err := getSub(ctx, tx, dps)
			if err != nil {
				return err
			}
			if !ok || prov.State == "Deleted" {
				return arm.InvalidRequest("properties.delegatedProviderSubscriptionId", "The delegated provider subscription %s does not exist on this stack.", dps)
			}
		}
		old, exists, err := getSub(ctx, tx, sid)
		if err != nil {
			return err
		}
		if exists && dp != s.provider && old.DelegatedProviderSubscriptionID != dp {
			return arm.Forbidden(p.Actor(), "Microsoft.Subscriptions.Admin/subscriptions/write", "/subscriptions/"+sid)
		}
		if exists && old == in {
			return nil
		}
		now := clock.Micros(s.clock.Now())
		if exists {
			_, err = tx.ExecContext(ctx, `UPDATE user_subscriptions SET display_name = ?, owner = ?, tenant_id = ?, offer_id = ?, state = ?, delegated_provider_subscription_id = ?, updated_at_us = ? WHERE id = ?`,
				in.DisplayName, in.Owner, in.TenantID, in.OfferID, in.State, in.DelegatedProviderSubscriptionID, now, sid)
		} else {
			created = true
			_, err = tx.ExecContext(ctx, `INSERT INTO user_subscriptions (id, display_name, owner, tenant_id, offer_id, state, delegated_provider_subscription_id, created_at_us, updated_at_us)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, sid, in.DisplayName, in.Owner, in.TenantID, in.OfferID, in.State, in.DelegatedProviderSubscriptionID, now, now)
		}
		if err != nil {
			return err
		}
		return s.change(ctx, tx, sid, p.Actor(), in)
	})
	return in, created, err
}

// change records a subscription's new state in its history and in the
// audit log, in the transaction of the change.
func (s *Service) change(ctx context.Context, tx *store.Tx, id, actor string, sub Subscription) error {
	b, _ := json.Marshal(sub)
	if _, err := tx.ExecContext(ctx, `INSERT INTO user_subscription_changes (subscription_id, at_us, actor, data) VALUES (?, ?, ?, ?)`, id, clock.Micros(s.clock.Now()), actor, string(b)); err != nil {
		return err
	}
	return audit.Append(ctx, tx, audit.Entry{At: s.clock.Now(), Actor: actor, Action: "userSubscription.put", Kind: "userSubscription", ID: id, After: b})
}

// GetSubscription returns a user subscription visible to p.
func (s *Service) GetSubscription(ctx context.Context, p auth.Principal, providerSub, id string) (Subscription, error) {
	dp, err := s.scope(p, providerSub)
	if err != nil {
		return Subscription{}, err
	}
	sid, _ := arm.CanonicalGUID(id)
	sub, ok, err := getSub(ctx, s.db, sid)
	if err != nil {
		return sub, err
	}
	if !ok || (dp != "" && sub.DelegatedProviderSubscriptionID != dp) {
		return sub, arm.Errorf(arm.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", id)
	}
	return sub, nil
}

// ListSubscriptions lists the subscriptions p sees under the provider
// subscription in the path: all of them for the stack operator at the
// stack's provider subscription, a delegated provider's direct tenants
// otherwise.
func (s *Service) ListSubscriptions(ctx context.Context, p auth.Principal, providerSub string) ([]Subscription, error) {
	dp, err := s.scope(p, providerSub)
	if err != nil {
		return nil, err
	}
	q, args := `SELECT `+subColumns+` FROM user_subscriptions`, []any{}
	if dp != "" {
		q += ` WHERE delegated_provider_subscription_id = ?`
		args = append(args, dp)
	}
	return listSubs(ctx, s.db, q+` ORDER BY id`, args...)
}

const subColumns = `id, display_name, owner, tenant_id, offer_id, state, delegated_provider_subscription_id`

// listSubs runs a query of subColumns on q.
func listSubs(ctx context.Context, q store.Querier, query string, args ...any) ([]Subscription, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	return store.Collect(rows, err, scanSub)
}

func scanSub(r store.Scanner) (s Subscription, err error) {
	return s, r.Scan(&s.SubscriptionID, &s.DisplayName, &s.Owner, &s.TenantID, &s.OfferID, &s.State, &s.DelegatedProviderSubscriptionID)
}

// DeleteSubscription marks a subscription Deleted; its usage is kept.
func (s *Service) DeleteSubscription(ctx context.Context, p auth.Principal, providerSub, id string) (bool, error) {
	sub, err := s.GetSubscription(ctx, p, providerSub, id)
	if err != nil {
		if arm.Is(err, arm.NotFound) {
			return false, nil
		}
		return false, err
	}
	if sub.State == "Deleted" {
		return false, nil
	}
	sub.State = "Deleted"
	_, _, err = s.PutSubscription(ctx, p, providerSub, sub.SubscriptionID, sub)
	return err == nil, err
}

// Lookup returns a subscription by ID for internal callers (usage intake,
// the usage APIs), whatever its state.
func (s *Service) Lookup(ctx context.Context, id string) (Subscription, bool, error) {
	sid, ok := arm.CanonicalGUID(id)
	if !ok {
		return Subscription{}, false, nil
	}
	return getSub(ctx, s.db, sid)
}

// DirectTenants reports whether sub's delegated provider is provider.
func (s *Service) DirectTenants(ctx context.Context, provider string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM user_subscriptions WHERE delegated_provider_subscription_id = ? ORDER BY id`, provider)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// Change is one recorded version of a subscription.
type Change struct {
	At    time.Time       `json:"at"`
	Actor string          `json:"actor"`
	Data  json.RawMessage `json:"data"`
}

// History returns a subscription's recorded versions, oldest first.
func (s *Service) History(ctx context.Context, p auth.Principal, providerSub, id string) ([]Change, error) {
	sub, err := s.GetSubscription(ctx, p, providerSub, id)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT at_us, actor, data FROM user_subscription_changes WHERE subscription_id = ? ORDER BY seq`, sub.SubscriptionID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		var at int64
		var data string
		if err := rows.Scan(&at, &c.Actor, &data); err != nil {
			return nil, err
		}
		c.At, c.Data = clock.FromMicros(at), json.RawMessage(data)
		out = append(out, c)
	}
	return out, rows.Err()
}

// Exists reports whether a user subscription is known to the stack, in any
// state: resource providers may report final usage of a deleted one.
func (s *Service) Exists(ctx context.Context, id string) (bool, error) {
	_, ok, err := s.Lookup(ctx, id)
	return ok, err
}

// Owners returns the directory tenants that have owned a user subscription,
// in order: owner i owned it from since[i] (the first from the beginning of
// time, since usage may predate the subscription's record). An unknown
// subscription has none. The bridge sends each hour's owner then, so that
// commerce maps usage to the customer subscription of the tenant that owned
// it at the time, even if the subscription changed hands since.
func (s *Service) Owners(ctx context.Context, id string) (since []time.Time, owners []string, err error) {
	rows, err := s.db.QueryContext(ctx, `SELECT at_us, data FROM user_subscription_changes WHERE subscription_id = ? ORDER BY at_us, seq`, id)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var at int64
		var data string
		if err := rows.Scan(&at, &data); err != nil {
			return nil, nil, err
		}
		var v Subscription
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			return nil, nil, err
		}
		if n := len(owners); n > 0 && owners[n-1] == v.TenantID {
			continue // a change that kept the owner
		}
		from := clock.FromMicros(at)
		if len(owners) == 0 {
			from = time.Time{}
		}
		since, owners = append(since, from), append(owners, v.TenantID)
	}
	return since, owners, rows.Err()
}
