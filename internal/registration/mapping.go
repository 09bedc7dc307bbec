package registration

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/store"
)

// CustomerSubscription maps a directory tenant to its CSP subscription on one
// registration.
type CustomerSubscription struct {
	Registration Key
	ID           string // the customer's Azure subscription, lower-case GUID
	TenantID     string
	ETag         string
	CreatedAt    time.Time
	CreatedBy    string
}

type mappingRow struct {
	id        int64
	cs        string
	tenant    string
	etag      string
	from      int64
	createdBy string
}

func (s *Service) liveMapping(ctx context.Context, q store.Querier, regUID, column, value string) (mappingRow, bool, error) {
	var m mappingRow
	err := q.QueryRowContext(ctx, `SELECT id, customer_subscription_id, tenant_id, etag, valid_from_us, created_by FROM tenant_mappings
		WHERE registration_uid = ? AND `+column+` = ? AND valid_to_us IS NULL`, regUID, value).Scan(&m.id, &m.cs, &m.tenant, &m.etag, &m.from, &m.createdBy)
	if errors.Is(err, sql.ErrNoRows) {
		return m, false, nil
	}
	return m, err == nil, err
}

func (m mappingRow) public(k Key) CustomerSubscription {
	return CustomerSubscription{Registration: k, ID: m.cs, TenantID: m.tenant, ETag: m.etag, CreatedAt: clock.FromMicros(m.from), CreatedBy: m.createdBy}
}

// mappingVisible says whether p may see and change the mapping of customer
// subscription cs on a registration p may manage. A partner sees every
// mapping on its registrations; a reseller only its own customers'
// (a provider may map another reseller's customer onto a registration the
// reseller can manage, and that mapping stays the other reseller's).
func (s *Service) mappingVisible(ctx context.Context, p auth.Principal, cs string) (bool, error) {
	if p.Role != auth.RoleReseller {
		return true, nil
	}
	r, err := s.resolver.Resolve(ctx, cs)
	if errors.Is(err, directory.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, errMetadataResolverBadGateway()
	}
	return r.Reseller != "" && r.Reseller == p.PartnerID, nil
}

// requireMappingsManageable refuses a change that would touch a live
// mapping the caller may not change (deleting or moving the registration
// that holds it), without naming the mapping.
func (s *Service) requireMappingsManageable(ctx context.Context, p auth.Principal, regUID string) error {
	if p.Role != auth.RoleReseller {
		return nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT customer_subscription_id FROM tenant_mappings WHERE registration_uid = ? AND valid_to_us IS NULL`, regUID)
	if err != nil {
		return err
	}
	var subs []string
	for rows.Next() {
		var cs string
		if err := rows.Scan(&cs); err != nil {
			rows.Close()
			return err
		}
		subs = append(subs, cs)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, cs := range subs {
		ok, err := s.mappingVisible(ctx, p, cs)
		if err != nil {
			return err
		}
		if !ok {
			return arm.Errorf(arm.Denied, "AuthorizationFailed",
				"The registration holds tenant mappings of customers that are not yours, so you cannot delete or move it. Ask your provider to remove those mappings first.")
		}
	}
	return nil
}

// checkMultiTenant applies rules 2 and 3 of the package documentation.
func checkMultiTenant(r Registration) *arm.Error {
	if r.BillingModel != PayAsYouUse {
		return errCustomerSubscriptionsNotAllowed()
	}
	if !r.Approved {
		return errUnauthorizedCspRegistration(r.Key.Name)
	}
	return nil
}

// PutCustomerSubscription adds a tenant's CSP subscription to a registration,
// replacing the tenant's previous mapping if it had one. The rules run in the
// order listed in the package documentation.
func (s *Service) PutCustomerSubscription(ctx context.Context, p auth.Principal, k Key, customerSub, tenantID string, pre Precondition) (CustomerSubscription, error) {
	tenant, ok := arm.CanonicalGUID(tenantID)
	if !ok {
		return CustomerSubscription{}, arm.InvalidRequest("properties.tenantId", "properties.tenantId must be the GUID of the customer's directory tenant; got '%s'.", tenantID)
	}
	// Rule 1.
	k, aerr := ValidateKey(k)
	if aerr != nil {
		return CustomerSubscription{}, errRegistrationNotFound(k)
	}
	// The directory's answers for the registration's subscription (who may
	// manage it) and for the customer subscription (rules 4 to 10), asked
	// together and outside the write transaction (the directory may be
	// another service). The customer's answer is judged in rule order once
	// the registration has been read under lock: one read of the
	// registration, not one before the transaction and one inside it.
	cs, csValid := arm.CanonicalGUID(customerSub)
	if !isManager(p) {
		return CustomerSubscription{}, errRegistrationNotFound(k)
	}
	ids := []string{k.SubscriptionID}
	if csValid {
		ids = append(ids, cs)
	}
	answers, errs := s.resolver.ResolveEach(ctx, ids)
	allowed, def, err := judgeAccess(p, answers[0], errs[0])
	if err != nil {
		return CustomerSubscription{}, err
	}
	if !allowed {
		return CustomerSubscription{}, errRegistrationNotFound(k)
	}
	var target directory.ResolvedSubscription
	var resolveErr error
	if csValid {
		target, resolveErr = answers[1], errs[1]
	}
	judge := func(reg Registration) error {
		// Rule 4.
		if !csValid {
			return errInvalidCustomerSubscriptionID(customerSub)
		}
		// Rules 5 and 6.
		if errors.Is(resolveErr, directory.ErrNotFound) {
			return errInvalidCustomerSubscriptionID(customerSub)
		}
		if resolveErr != nil {
			return errMetadataResolverBadGateway()
		}
		// Rule 7.
		if target.Offer != directory.OfferCSP {
			return errInvalidCSPSubscription(customerSub)
		}
		// Rule 8: you cannot register someone else's customers.
		if def == nil || def.RollsUpTo == "" || target.RollsUpTo != def.RollsUpTo {
			return errBadCustomerSubscriptionID(customerSub, reg.Key.Name)
		}
		// Rule 9: a sibling reseller's customer answers exactly as a
		// subscription that does not exist (rule 6), so a reseller cannot
		// learn which subscriptions its siblings hold.
		if p.Role == auth.RoleReseller && target.Reseller != p.PartnerID {
			return errInvalidCustomerSubscriptionID(customerSub)
		}
		// Rule 10: the mapping decides whose usage is billed to the
		// subscription, so it must name the tenant that owns it.
		if target.CustomerTenantID != tenant {
			return arm.Errorf(arm.Invalid, "CustomerTenantMismatch",
				"The customer subscription %s belongs to the directory tenant %s, not to %s. Map each tenant to a CSP subscription created in that tenant (the one its users sign in with).",
				cs, target.CustomerTenantID, tenant).WithTarget("properties.tenantId")
		}
		return nil
	}
	// Two PUTs racing for one tenant on PostgreSQL can both close its old
	// mapping and both insert; the live-tenant unique index lets one win and
	// the other retries against the winner's state.
	for attempt := 0; ; attempt++ {
		out, err := s.writeMapping(ctx, p, k, cs, tenant, pre, judge, target.Scope)
		if err != nil && store.IsUniqueViolation(err) && attempt < 5 {
			continue
		}
		return out, err
	}
}

// writeMapping applies rules 1 to 3 to the registration read under a shared
// lock (approval or billing model may change meanwhile, and such a change,
// which takes the row exclusively, waits for mapping writers, not the other
// way round), then judge's rules, then maps the tenant. scope is the audit
// scope of the customer subscription ("" to look it up).
func (s *Service) writeMapping(ctx context.Context, p auth.Principal, k Key, cs, tenant string, pre Precondition, judge func(Registration) error, scope string) (CustomerSubscription, error) {
	var out CustomerSubscription
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		cur, exists, err := s.load(ctx, tx, k, shareLock)
		if err != nil {
			return err
		}
		if !exists {
			return errRegistrationNotFound(k)
		}
		k = cur.Key
		// Rules 2 and 3.
		if aerr := checkMultiTenant(cur); aerr != nil {
			return aerr
		}
		if err := judge(cur); err != nil {
			return err
		}
		// Close the live mappings of this subscription and of this tenant
		// (at most one each, possibly the same row) and read them back in the
		// same statement. When a check below refuses the change, or the
		// mapping is already exactly so, the transaction is rolled back and
		// nothing was closed. UNION ALL rather than OR, so that each arm uses
		// its partial unique index instead of scanning the registration's
		// whole mapping history.
		now := s.clock.Now()
		rows, err := tx.QueryContext(ctx, `UPDATE tenant_mappings SET valid_to_us = ?, removed_by = ? WHERE valid_to_us IS NULL AND id IN (
				SELECT id FROM tenant_mappings WHERE registration_uid = ? AND customer_subscription_id = ? AND valid_to_us IS NULL
				UNION ALL
				SELECT id FROM tenant_mappings WHERE registration_uid = ? AND tenant_id = ? AND valid_to_us IS NULL)
			RETURNING id, customer_subscription_id, tenant_id, etag, valid_from_us, created_by`, clock.Micros(now), p.Actor(), cur.UID, cs, cur.UID, tenant)
		if err != nil {
			return err
		}
		var byCS mappingRow
		var hasCS bool
		var replaced []string
		var closed []any
		latest := clock.Micros(now)
		for rows.Next() {
			var m mappingRow
			if err := rows.Scan(&m.id, &m.cs, &m.tenant, &m.etag, &m.from, &m.createdBy); err != nil {
				rows.Close()
				return err
			}
			closed, latest = append(closed, m.id), max(latest, m.from)
			if m.cs == cs {
				byCS, hasCS = m, true
				replaced = append([]string{m.cs}, replaced...)
			} else {
				replaced = append(replaced, m.cs)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if latest > clock.Micros(now) {
			// The UPDATE waited for another PUT that mapped this tenant or
			// subscription after this one read the clock: the new mapping
			// starts where that one does, and what it replaces ends there,
			// so the history has neither gap nor overlap. (Rare: one more
			// statement, only then.)
			now = clock.FromMicros(latest)
			args := append([]any{latest}, closed...)
			if _, err := tx.ExecContext(ctx, `UPDATE tenant_mappings SET valid_to_us = ? WHERE id IN (`+store.Placeholders(len(closed))+`)`, args...); err != nil {
				return err
			}
		}
		// Rule 11.
		if perr := pre.check("customer subscription", hasCS, byCS.etag); perr != nil {
			return perr
		}
		// A re-map closes the mappings it replaces: the caller must be
		// allowed to change each of them.
		for _, old := range replaced {
			if old == cs {
				continue
			}
			if ok, err := s.mappingVisible(ctx, p, old); err != nil || !ok {
				if err != nil {
					return err
				}
				return arm.Forbidden(p.Actor(), "Microsoft.AzureStack/registrations/customerSubscriptions/write", k.ResourceID()+"/customerSubscriptions/"+cs)
			}
		}
		if hasCS && byCS.tenant == tenant {
			out = byCS.public(k)
			return errUnchanged // already mapped exactly so: PUT is idempotent
		}
		m := mappingRow{cs: cs, tenant: tenant, etag: newETag(), from: clock.Micros(now), createdBy: p.Actor()}
		// Queued: a race lost on the live-mapping unique index surfaces
		// from Write, where PutCustomerSubscription retries it.
		if err := tx.Queue(ctx, `INSERT INTO tenant_mappings (registration_uid, customer_subscription_id, tenant_id, etag, valid_from_us, created_by)
			VALUES (?, ?, ?, ?, ?, ?)`, cur.UID, m.cs, m.tenant, m.etag, m.from, m.createdBy); err != nil {
			return err
		}
		out = m.public(k)
		action := "mapping_added"
		if len(replaced) > 0 {
			action = "mapping_replaced"
		}
		return s.eventScoped(ctx, tx, cur.UID, now, p.Actor(), action, map[string]any{"customerSubscriptionId": cs, "tenantId": tenant, "replaced": replaced}, scope)
	})
	if errors.Is(err, errUnchanged) {
		return out, nil
	}
	return out, err
}

// errUnchanged rolls back a write that found nothing to change.
var errUnchanged = errors.New("unchanged")

// GetCustomerSubscription returns a live mapping.
func (s *Service) GetCustomerSubscription(ctx context.Context, p auth.Principal, k Key, customerSub string) (CustomerSubscription, error) {
	k, aerr := ValidateKey(k)
	if aerr != nil {
		return CustomerSubscription{}, errRegistrationNotFound(k)
	}
	if err := s.requireRead(ctx, p, k); err != nil {
		return CustomerSubscription{}, err
	}
	cs, valid := arm.CanonicalGUID(customerSub)
	// The registration and the live mapping in one read; the checks still
	// answer in the order they always did.
	reg, m, exists, mapped, err := s.loadMapping(ctx, k, cs)
	if err != nil {
		return CustomerSubscription{}, err
	}
	if !exists {
		return CustomerSubscription{}, errRegistrationNotFound(k)
	}
	if !valid {
		return CustomerSubscription{}, errCustomerSubscriptionNotFound(customerSub, reg.Key.Name)
	}
	// Another reseller's mapping answers exactly as a missing one.
	if ok, err := s.mappingVisible(ctx, p, cs); err != nil || !ok {
		if err != nil {
			return CustomerSubscription{}, err
		}
		return CustomerSubscription{}, errCustomerSubscriptionNotFound(customerSub, reg.Key.Name)
	}
	if !mapped {
		return CustomerSubscription{}, errCustomerSubscriptionNotFound(customerSub, reg.Key.Name)
	}
	return m.public(reg.Key), nil
}

// loadMapping reads a live registration and its live mapping of customer
// subscription cs ("" reads the registration alone).
func (s *Service) loadMapping(ctx context.Context, k Key, cs string) (reg Registration, m mappingRow, exists, mapped bool, err error) {
	var id sql.NullInt64
	var mcs, tenant, etag, createdBy sql.NullString
	var from sql.NullInt64
	reg, err = scanRegistration(s.db.QueryRowContext(ctx, `SELECT `+regColumnsOf("r")+`, m.id, m.customer_subscription_id, m.tenant_id, m.etag, m.valid_from_us, m.created_by
		FROM registrations r LEFT JOIN tenant_mappings m ON m.registration_uid = r.uid AND m.customer_subscription_id = ? AND m.valid_to_us IS NULL
		WHERE r.lookup_key = ? AND r.deleted_at_us IS NULL`, cs, k.lookup()), &id, &mcs, &tenant, &etag, &from, &createdBy)
	if errors.Is(err, sql.ErrNoRows) {
		return Registration{}, m, false, false, nil
	}
	if err != nil {
		return Registration{}, m, false, false, err
	}
	if !id.Valid {
		return reg, m, true, false, nil
	}
	m = mappingRow{id: id.Int64, cs: mcs.String, tenant: tenant.String, etag: etag.String, from: from.Int64, createdBy: createdBy.String}
	return reg, m, true, true, nil
}

// ListCustomerSubscriptions returns one page of live mappings ordered by
// subscription ID, and the cursor of the next page.
func (s *Service) ListCustomerSubscriptions(ctx context.Context, p auth.Principal, k Key, after string, limit int) ([]CustomerSubscription, string, error) {
	reg, err := s.Get(ctx, p, k)
	if err != nil {
		return nil, "", err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	// A reseller's page skips other resellers' mappings, so it may take
	// several reads to fill.
	var out []CustomerSubscription
	for {
		rows, err := s.db.QueryContext(ctx, `SELECT id, customer_subscription_id, tenant_id, etag, valid_from_us, created_by FROM tenant_mappings
			WHERE registration_uid = ? AND valid_to_us IS NULL AND customer_subscription_id > ? ORDER BY customer_subscription_id LIMIT ?`, reg.UID, after, limit+1)
		if err != nil {
			return nil, "", err
		}
		var ms []mappingRow
		for rows.Next() {
			var m mappingRow
			if err := rows.Scan(&m.id, &m.cs, &m.tenant, &m.etag, &m.from, &m.createdBy); err != nil {
				rows.Close()
				return nil, "", err
			}
			ms = append(ms, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, "", err
		}
		for _, m := range ms {
			ok, err := s.mappingVisible(ctx, p, m.cs)
			if err != nil {
				return nil, "", err
			}
			if ok {
				out = append(out, m.public(reg.Key))
			}
			after = m.cs
		}
		if len(out) > limit || len(ms) <= limit {
			break
		}
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// DeleteCustomerSubscription ends a mapping, so the tenant's usage goes to the
// default subscription again. Deleting a mapping that was already removed is
// a harmless retry (existed=false, ARM answers 204); deleting one that was
// never on the registration is CustomerSubscriptionNotFound, since that is
// usually a mistyped ID.
func (s *Service) DeleteCustomerSubscription(ctx context.Context, p auth.Principal, k Key, customerSub string, pre Precondition) (bool, error) {
	reg, err := s.Get(ctx, p, k)
	if err != nil {
		return false, err
	}
	cs, ok := arm.CanonicalGUID(customerSub)
	if !ok {
		return false, errCustomerSubscriptionNotFound(customerSub, reg.Key.Name)
	}
	if ok, err := s.mappingVisible(ctx, p, cs); err != nil || !ok {
		if err != nil {
			return false, err
		}
		return false, errCustomerSubscriptionNotFound(customerSub, reg.Key.Name)
	}
	existed := false
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		cur, exists, err := s.load(ctx, tx, reg.Key, shareLock)
		if err != nil {
			return err
		}
		if !exists || cur.UID != reg.UID {
			return errRegistrationNotFound(k)
		}
		m, live, err := s.liveMapping(ctx, tx, cur.UID, "customer_subscription_id", cs)
		if err != nil {
			return err
		}
		if !live {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tenant_mappings WHERE registration_uid = ? AND customer_subscription_id = ?`, cur.UID, cs).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return errCustomerSubscriptionNotFound(customerSub, reg.Key.Name)
			}
			return nil
		}
		if perr := pre.check("customer subscription", true, m.etag); perr != nil {
			return perr
		}
		existed = true
		now := s.clock.Now()
		if _, err := tx.ExecContext(ctx, `UPDATE tenant_mappings SET valid_to_us = ?, removed_by = ? WHERE id = ?`, clock.Micros(now), p.Actor(), m.id); err != nil {
			return err
		}
		return s.event(ctx, tx, cur.UID, now, p.Actor(), "mapping_removed", map[string]any{"customerSubscriptionId": cs, "tenantId": m.tenant})
	})
	return existed, err
}

// MappingAt returns the customer subscription a tenant was mapped to on a
// registration at instant t, if any. Billing charges each usage hour by it.
func (s *Service) MappingAt(ctx context.Context, registrationUID, tenantID string, t time.Time) (string, bool, error) {
	tenant, _ := arm.CanonicalGUID(tenantID)
	var cs string
	at := clock.Micros(t)
	err := s.db.QueryRowContext(ctx, `SELECT customer_subscription_id FROM tenant_mappings
		WHERE registration_uid = ? AND tenant_id = ? AND valid_from_us <= ? AND (valid_to_us IS NULL OR valid_to_us > ?)
		ORDER BY valid_from_us DESC LIMIT 1`, registrationUID, tenant, at, at).Scan(&cs)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return cs, err == nil, err
}

// MappingInterval is one period in which a tenant was mapped to a customer
// subscription: [From, To), To zero while it holds.
type MappingInterval struct {
	TenantID             string
	CustomerSubscription string
	From, To             time.Time
}

// Mappings returns every mapping interval a registration ever had, so that a
// batch of usage can be charged hour by hour without a query per record.
func (s *Service) Mappings(ctx context.Context, registrationUID string) ([]MappingInterval, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT tenant_id, customer_subscription_id, valid_from_us, valid_to_us FROM tenant_mappings WHERE registration_uid = ? ORDER BY valid_from_us, id`, registrationUID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MappingInterval
	for rows.Next() {
		var m MappingInterval
		var from int64
		var to sql.NullInt64
		if err := rows.Scan(&m.TenantID, &m.CustomerSubscription, &from, &to); err != nil {
			return nil, err
		}
		m.From = clock.FromMicros(from)
		if to.Valid {
			m.To = clock.FromMicros(to.Int64)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// ScopeOf is the partner whose audit view holds what concerns r.
func (s *Service) ScopeOf(ctx context.Context, r Registration) (string, error) {
	return directory.ScopeOfSubscription(ctx, s.db, r.Key.SubscriptionID)
}

// ByUID returns a registration by its internal ID, and whether it is still
// live (not deleted).
func (s *Service) ByUID(ctx context.Context, uid string) (Registration, bool, error) {
	var deleted sql.NullInt64
	r, err := scanRegistration(s.db.QueryRowContext(ctx, `SELECT `+regColumns+`, deleted_at_us FROM registrations WHERE uid = ?`, uid), &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return Registration{}, false, nil
	}
	return r, err == nil && !deleted.Valid, err
}

// Label is how a registration is named on a bill and in a reconciliation
// file.
type Label struct {
	Name    string `json:"name"`
	CloudID string `json:"cloudId"`
}

// Labels names every registration by its UID.
func (s *Service) Labels(ctx context.Context) (map[string]Label, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT uid, name, cloud_id FROM registrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Label{}
	for rows.Next() {
		var uid string
		var l Label
		if err := rows.Scan(&uid, &l.Name, &l.CloudID); err != nil {
			return nil, err
		}
		out[uid] = l
	}
	return out, rows.Err()
}
