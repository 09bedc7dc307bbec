// Package registration implements the Microsoft.AzureStack registrations and
// their customerSubscriptions: the object, stored on the commerce side, that
// documents which Azure subscriptions to charge for a given stack.
//
// A registration's own subscription is its default subscription, charged for
// every tenant that has no mapping. Each customerSubscription maps one
// directory tenant to that tenant's CSP subscription. The seed's rules decide
// whether a mapping may be added; they run in this order, and the first that
// fails answers:
//
//  1. the caller may manage the registration's subscription, and the
//     registration exists                   → RegistrationNotFound (404)
//  2. the billing model is PayAsYouUse      → CustomerSubscriptionsNotAllowed (400)
//  3. the registration is approved for
//     multi-tenancy                         → UnauthorizedCspRegistration (403)
//  4. the customer subscription ID is a GUID → InvalidCustomerSubscriptionId (400)
//  5. the directory answers                 → MetadataResolverBadGatewayError (502)
//  6. the directory knows the subscription  → InvalidCustomerSubscriptionId (400)
//  7. it is a CSP subscription              → InvalidCSPSubscription (400)
//  8. it rolls up to the same partner as the
//     default subscription                  → BadCustomerSubscriptionId (400)
//  9. a reseller may add only its own
//     customers' subscriptions              → InvalidCustomerSubscriptionId
//     (400, as for one that does not exist: a reseller learns nothing of
//     its siblings' customers)
//  10. the body's tenantId is the directory
//     tenant that owns the subscription      → CustomerTenantMismatch (400)
//  11. If-Match/If-None-Match hold           → PreconditionFailed (412)
//
// Body problems (malformed JSON, unknown fields, a tenantId that is not a GUID)
// are rejected before any of these, with 400 InvalidRequestContent.
//
// Nothing is ever deleted: registrations are soft-deleted, mappings are closed
// with an end time, and every change is an event with its actor, so that
// billing can ask which mapping was in force at any hour (MappingAt).
package registration

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/store"
)

// Resolver answers what the rules need to know about a subscription. It is
// the embedded directory or a remote one; any error other than
// directory.ErrNotFound means the directory could not answer.
type Resolver interface {
	Resolve(ctx context.Context, subscriptionID string) (directory.ResolvedSubscription, error)
	// ResolveEach answers Resolve for each of ids (in one round trip where
	// the directory can).
	ResolveEach(ctx context.Context, ids []string) ([]directory.ResolvedSubscription, []error)
}

// Key names a registration the way ARM does. Comparisons are
// case-insensitive; the original spelling is kept for responses.
type Key struct {
	SubscriptionID string
	ResourceGroup  string
	Name           string
}

func (k Key) lookup() string {
	return strings.ToLower(k.SubscriptionID + "/" + k.ResourceGroup + "/" + k.Name)
}

// ResourceID is the ARM id of the registration.
func (k Key) ResourceID() string {
	return "/subscriptions/" + k.SubscriptionID + "/resourceGroups/" + k.ResourceGroup + "/providers/Microsoft.AzureStack/registrations/" + k.Name
}

// Registration is a registered stack.
type Registration struct {
	UID                           string
	Key                           Key
	Location                      string
	Tags                          map[string]string
	ETag                          string
	CloudID                       string
	ObjectID                      string
	BillingModel                  BillingModel
	AgreementNumber               string
	UsageReportingEnabled         bool
	MarketplaceSyndicationEnabled bool
	Token                         string
	Approved                      bool
	ApprovedAt                    *time.Time
	ApprovedBy                    string
	RemoteManagementAt            *time.Time
	RemoteManagementBy            string
	CreatedAt                     time.Time
	CreatedBy                     string
	UpdatedAt                     time.Time
	UpdatedBy                     string
}

// Service manages registrations and their tenant mappings.
type Service struct {
	db       *store.DB
	resolver Resolver
	clock    *clock.Clock
}

// NewService builds a Service.
func NewService(db *store.DB, resolver Resolver, c *clock.Clock) *Service {
	return &Service{db: db, resolver: resolver, clock: c}
}

// Precondition carries the If-Match / If-None-Match headers.
type Precondition struct {
	IfMatch     string
	IfNoneMatch string
}

func (p Precondition) check(what string, exists bool, etag string) *arm.Error {
	if p.IfNoneMatch == "*" && exists {
		return arm.Errorf(arm.Precondition, "PreconditionFailed", "The %s already exists and If-None-Match: * was given.", what)
	}
	if p.IfMatch == "" {
		return nil
	}
	if !exists {
		return arm.Errorf(arm.Precondition, "PreconditionFailed", "The %s does not exist, so If-Match cannot match.", what)
	}
	if p.IfMatch == "*" {
		return nil
	}
	for _, m := range strings.Split(p.IfMatch, ",") {
		m = strings.TrimPrefix(strings.TrimSpace(m), "W/")
		if m == etag || `"`+m+`"` == etag {
			return nil
		}
	}
	return errPrecondition(what, etag)
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_().-]{1,90}$`)

// ValidateKey checks the path parameters of a registration.
func ValidateKey(k Key) (Key, *arm.Error) {
	sub, ok := arm.CanonicalGUID(k.SubscriptionID)
	if !ok {
		return k, arm.Errorf(arm.Invalid, "InvalidSubscriptionId", "The provided subscription identifier '%s' is malformed or invalid.", k.SubscriptionID)
	}
	k.SubscriptionID = sub
	if !nameRe.MatchString(k.ResourceGroup) || strings.HasSuffix(k.ResourceGroup, ".") {
		return k, arm.Errorf(arm.Invalid, "InvalidResourceGroup", "The resource group name '%s' is invalid: use 1-90 letters, digits, '_', '(', ')', '-' or '.', not ending in '.'.", k.ResourceGroup)
	}
	if !nameRe.MatchString(k.Name) || strings.HasSuffix(k.Name, ".") {
		return k, arm.Errorf(arm.Invalid, "InvalidResourceName", "The registration name '%s' is invalid: use 1-90 letters, digits, '_', '(', ')', '-' or '.', not ending in '.'.", k.Name)
	}
	return k, nil
}

func newETag() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return fmt.Sprintf(`"%s-%s-%s-%s-%s"`, h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// access decides whether p may manage registrations in a subscription. The
// operator may do everything; a partner manages subscriptions that roll up to
// it; a reseller those of its own customers. The directory answer is returned
// for callers that need it.
func (s *Service) access(ctx context.Context, p auth.Principal, subscriptionID string) (bool, *directory.ResolvedSubscription, error) {
	if !isManager(p) {
		return false, nil, nil
	}
	r, err := s.resolver.Resolve(ctx, subscriptionID)
	return judgeAccess(p, r, err)
}

// judgeAccess is access given the directory's answer for the subscription.
func judgeAccess(p auth.Principal, r directory.ResolvedSubscription, err error) (bool, *directory.ResolvedSubscription, error) {
	if !isManager(p) {
		return false, nil, nil
	}
	if errors.Is(err, directory.ErrNotFound) {
		return p.Role == auth.RoleOperator, nil, nil
	}
	if err != nil {
		return false, nil, errMetadataResolverBadGateway()
	}
	switch p.Role {
	case auth.RoleOperator:
		return true, &r, nil
	case auth.RolePartner:
		return r.RollsUpTo == p.PartnerID, &r, nil
	default:
		return r.Reseller != "" && r.Reseller == p.PartnerID, &r, nil
	}
}

// requireRead resolves access for operations on an existing registration.
// Without access the caller learns nothing: the answer is RegistrationNotFound.
func (s *Service) requireRead(ctx context.Context, p auth.Principal, k Key) error {
	ok, _, err := s.access(ctx, p, k.SubscriptionID)
	if err != nil {
		return err
	}
	if !ok {
		return errRegistrationNotFound(k)
	}
	return nil
}

const regColumns = `uid, subscription_id, resource_group, name, location, tags, etag, cloud_id, object_id, billing_model, agreement_number,
	usage_reporting_enabled, marketplace_syndication_enabled, token, approved, approved_at_us, approved_by, remote_management_at_us,
	remote_management_by, created_at_us, created_by, updated_at_us, updated_by`

// regColumnsOf is regColumns qualified with a table alias, for joins.
func regColumnsOf(alias string) string {
	cols := strings.Split(regColumns, ",")
	for i, c := range cols {
		cols[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// scanRegistration reads regColumns, then any extra columns into extra.
func scanRegistration(row interface{ Scan(...any) error }, extra ...any) (Registration, error) {
	var r Registration
	var tags, model string
	var approvedAt, rmAt sql.NullInt64
	var created, updated int64
	dest := append([]any{&r.UID, &r.Key.SubscriptionID, &r.Key.ResourceGroup, &r.Key.Name, &r.Location, &tags, &r.ETag, &r.CloudID, &r.ObjectID,
		&model, &r.AgreementNumber, &r.UsageReportingEnabled, &r.MarketplaceSyndicationEnabled, &r.Token, &r.Approved, &approvedAt,
		&r.ApprovedBy, &rmAt, &r.RemoteManagementBy, &created, &r.CreatedBy, &updated, &r.UpdatedBy}, extra...)
	if err := row.Scan(dest...); err != nil {
		return r, err
	}
	r.BillingModel = BillingModel(model)
	r.CreatedAt, r.UpdatedAt = clock.FromMicros(created), clock.FromMicros(updated)
	if approvedAt.Valid {
		t := clock.FromMicros(approvedAt.Int64)
		r.ApprovedAt = &t
	}
	if rmAt.Valid {
		t := clock.FromMicros(rmAt.Int64)
		r.RemoteManagementAt = &t
	}
	if err := json.Unmarshal([]byte(tags), &r.Tags); err != nil {
		return r, fmt.Errorf("registration %s tags: %w", r.UID, err)
	}
	return r, nil
}

// Row locks taken by load.
const (
	noLock = iota
	shareLock
	updateLock
)

func (s *Service) load(ctx context.Context, q store.Querier, k Key, lock int) (Registration, bool, error) {
	suffix := ""
	switch lock {
	case shareLock:
		suffix = s.db.ForShare()
	case updateLock:
		suffix = s.db.ForUpdate()
	}
	r, err := scanRegistration(q.QueryRowContext(ctx, `SELECT `+regColumns+` FROM registrations WHERE lookup_key = ? AND deleted_at_us IS NULL`+suffix, k.lookup()))
	if errors.Is(err, sql.ErrNoRows) {
		return Registration{}, false, nil
	}
	return r, err == nil, err
}

func (s *Service) event(ctx context.Context, tx *store.Tx, uid string, at time.Time, actor, action string, data any) error {
	return s.eventScoped(ctx, tx, uid, at, actor, action, data, "")
}

// eventScoped records a registration event and its audit entry. scope, when
// the caller already holds the directory's answer for the subscription the
// entry is about, saves asking for it again inside the transaction.
func (s *Service) eventScoped(ctx context.Context, tx *store.Tx, uid string, at time.Time, actor, action string, data any, scope string) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if err = tx.Queue(ctx, `INSERT INTO registration_events (registration_uid, at_us, actor, action, data) VALUES (?, ?, ?, ?, ?)`,
		uid, clock.Micros(at), actor, action, string(b)); err != nil {
		return err
	}
	// The audit log keeps registrations and tenant mappings as entities of
	// their own; a mapping is audited in its customer's scope, so a reseller
	// sees the mappings of its customers.
	e := audit.Entry{At: at, Actor: actor, Action: "registration." + action, Kind: "registration", ID: uid, After: b, Scope: scope}
	scopeSub := ""
	if m, ok := data.(map[string]any); ok && strings.HasPrefix(action, "mapping_") {
		cs, _ := m["customerSubscriptionId"].(string)
		e.Kind, e.ID, e.Action, scopeSub = "tenantMapping", uid+"/"+cs, "tenantMapping."+strings.TrimPrefix(action, "mapping_"), cs
		if action == "mapping_removed" {
			e.After = audit.JSON(nil)
		}
	} else {
		if action == "deleted" {
			e.After = audit.JSON(nil)
		}
		if e.Scope == "" {
			if err := tx.QueryRowContext(ctx, `SELECT subscription_id FROM registrations WHERE uid = ?`, uid).Scan(&scopeSub); err != nil {
				return err
			}
		}
	}
	if e.Scope == "" {
		if e.Scope, err = directory.ScopeOfSubscription(ctx, tx, scopeSub); err != nil {
			return err
		}
	}
	return audit.Append(ctx, tx, e)
}

// snapshot is what a registration event records.
func snapshot(r Registration) map[string]any {
	return map[string]any{
		"id": r.Key.ResourceID(), "location": r.Location, "tags": r.Tags, "etag": r.ETag, "cloudId": r.CloudID, "objectId": r.ObjectID,
		"billingModel": r.BillingModel, "agreementNumber": r.AgreementNumber, "usageReportingEnabled": r.UsageReportingEnabled,
		"multiTenancyApproved": r.Approved,
	}
}

// PutInput is a registration PUT or PATCH body after decoding.
type PutInput struct {
	Location *string
	Token    *string
	Tags     map[string]string // nil: leave as is (PATCH) or empty (PUT)
}

// Put creates or replaces a registration. created is true when it did not
// exist (ARM answers 201 then, 200 otherwise).
func (s *Service) Put(ctx context.Context, p auth.Principal, k Key, in PutInput, pre Precondition) (Registration, bool, error) {
	k, aerr := ValidateKey(k)
	if aerr != nil {
		return Registration{}, false, aerr
	}
	if in.Location == nil || !strings.EqualFold(*in.Location, "global") {
		got := "<missing>"
		if in.Location != nil {
			got = *in.Location
		}
		return Registration{}, false, arm.Errorf(arm.Invalid, "LocationNotAvailableForResourceType",
			"The provided location '%s' is not available for resource type 'Microsoft.AzureStack/registrations'. List of available regions for the resource type is 'global'.", got).WithTarget("location")
	}
	if in.Token == nil {
		return Registration{}, false, arm.InvalidRequest("properties.registrationToken", "The request body must contain properties.registrationToken.")
	}
	tok, aerr := DecodeToken(*in.Token)
	if aerr != nil {
		return Registration{}, false, aerr
	}
	ok, resolved, err := s.access(ctx, p, k.SubscriptionID)
	if err != nil {
		return Registration{}, false, err
	}
	if !ok {
		return Registration{}, false, arm.Forbidden(p.Actor(), "Microsoft.AzureStack/registrations/write", "/subscriptions/"+k.SubscriptionID)
	}
	if resolved == nil {
		return Registration{}, false, arm.Errorf(arm.NotFound, "SubscriptionNotFound",
			"The subscription '%s' could not be found in the partner directory. A registration's subscription is its default subscription and must exist.", k.SubscriptionID)
	}
	// The token must come from the stack of its cloud before anything else
	// is decided about that cloud (checked again when it is bound, below).
	if err := s.checkCloudKey(ctx, tok); err != nil {
		return Registration{}, false, err
	}
	moving, err := s.movesFrom(ctx, p, k, tok.CloudID, resolved)
	if err != nil {
		return Registration{}, false, err
	}
	var out Registration
	created := false
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		now := s.clock.Now()
		cur, exists, err := s.load(ctx, tx, k, updateLock)
		if err != nil {
			return err
		}
		if perr := pre.check("registration", exists, cur.ETag); perr != nil {
			return perr
		}
		if exists && cur.CloudID != tok.CloudID {
			return arm.Errorf(arm.Invalid, "RegistrationCloudIdMismatch",
				"Registration '%s' belongs to the cloud %s, but the token was generated by the cloud %s. Each cloud needs its own registration: use another name, or delete this registration first.",
				k.Name, cur.CloudID, tok.CloudID).WithTarget("properties.registrationToken")
		}
		if err := s.bindCloud(ctx, tx, tok, p.Actor(), now); err != nil {
			return err
		}
		out = Registration{
			UID: newUID(), Key: k, Location: "global", Tags: in.Tags, ETag: newETag(), CloudID: tok.CloudID, ObjectID: tok.ObjectID,
			BillingModel: tok.BillingModel, AgreementNumber: tok.AgreementNumber, UsageReportingEnabled: tok.UsageReporting(),
			MarketplaceSyndicationEnabled: tok.MarketplaceSyndicationEnabled == nil || *tok.MarketplaceSyndicationEnabled,
			Token:                         *in.Token, CreatedAt: now, CreatedBy: p.Actor(), UpdatedAt: now, UpdatedBy: p.Actor(),
		}
		if out.Tags == nil {
			out.Tags = map[string]string{}
		}
		if exists {
			out.UID, out.Key = cur.UID, cur.Key // keep the spelling it was created with
			out.Approved, out.ApprovedAt, out.ApprovedBy = cur.Approved, cur.ApprovedAt, cur.ApprovedBy
			out.RemoteManagementAt, out.RemoteManagementBy = cur.RemoteManagementAt, cur.RemoteManagementBy
			out.CreatedAt, out.CreatedBy = cur.CreatedAt, cur.CreatedBy
			return s.save(ctx, tx, out, "updated")
		}
		created = true
		tags, _ := json.Marshal(out.Tags)
		_, err = tx.ExecContext(ctx, `INSERT INTO registrations (uid, subscription_id, resource_group, name, lookup_key, location, tags, etag, cloud_id, object_id,
			billing_model, agreement_number, usage_reporting_enabled, marketplace_syndication_enabled, token, approved, approved_by, remote_management_by,
			created_at_us, created_by, updated_at_us, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', '', ?, ?, ?, ?)`,
			out.UID, k.SubscriptionID, k.ResourceGroup, k.Name, k.lookup(), out.Location, string(tags), out.ETag, out.CloudID, out.ObjectID,
			string(out.BillingModel), out.AgreementNumber, store.Bool(out.UsageReportingEnabled), store.Bool(out.MarketplaceSyndicationEnabled), out.Token,
			clock.Micros(now), out.CreatedBy, clock.Micros(now), out.UpdatedBy)
		if err != nil {
			return err
		}
		if err := s.event(ctx, tx, out.UID, now, p.Actor(), "created", snapshot(out)); err != nil {
			return err
		}
		for _, old := range moving {
			if err := s.move(ctx, tx, p, old, &out, now); err != nil {
				return err
			}
		}
		return nil
	})
	return out, created, err
}

// movesFrom finds live registrations of the same cloud in other
// subscriptions: creating this one moves them here. A move touches the
// registration it retires and every tenant mapping on it, so the caller must
// be allowed to manage each of them, and both subscriptions must roll up to
// the same CSP partner; a stack cannot be taken over by another partner's
// subscription, nor by a reseller from its provider.
func (s *Service) movesFrom(ctx context.Context, p auth.Principal, k Key, cloudID string, target *directory.ResolvedSubscription) ([]Registration, error) {
	// A cloud has one live registration: one under another name, in this
	// subscription or another, moves here. Two at once would give two
	// bridge credentials the same cloud's record IDs.
	rows, err := s.db.QueryContext(ctx, `SELECT `+regColumns+` FROM registrations WHERE cloud_id = ? AND deleted_at_us IS NULL AND lookup_key <> ?`, cloudID, k.lookup())
	if err != nil {
		return nil, err
	}
	var olds []Registration
	for rows.Next() {
		r, err := scanRegistration(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		olds = append(olds, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(olds) == 0 {
		return nil, nil
	}
	if _, exists, err := s.load(ctx, s.db, k, noLock); err != nil {
		return nil, err
	} else if exists {
		return nil, nil // an update of this registration, not a move
	}
	for _, old := range olds {
		// The message names the registration only to a caller who may
		// manage it; to anyone else it says no more than the token did.
		mayManage, from, err := s.access(ctx, p, old.Key.SubscriptionID)
		if err != nil {
			return nil, err
		}
		if !mayManage || from == nil {
			return nil, arm.Errorf(arm.Invalid, "RegistrationMoveNotAllowed",
				"The cloud %s is already registered in a subscription that you cannot manage. A registration moves to another subscription only when the caller may manage both and both roll up to the same CSP partner. Ask whoever registered this cloud to delete that registration if it really changes hands.",
				cloudID).WithTarget("properties.registrationToken")
		}
		if from.RollsUpTo == "" || from.RollsUpTo != target.RollsUpTo {
			return nil, arm.Errorf(arm.Invalid, "RegistrationMoveNotAllowed",
				"The cloud %s is registered as '%s' in subscription %s. A registration can move to subscription %s only when both subscriptions roll up to the same CSP partner; they do not. Delete the existing registration first if this cloud really changes hands.",
				cloudID, old.Key.Name, old.Key.SubscriptionID, k.SubscriptionID).WithTarget("properties.registrationToken")
		}
		if err := s.requireMappingsManageable(ctx, p, old.UID); err != nil {
			return nil, err
		}
	}
	return olds, nil
}

// checkCloudKey refuses a token for a bound cloud signed by another key.
func (s *Service) checkCloudKey(ctx context.Context, tok Token) error {
	var key string
	err := s.db.QueryRowContext(ctx, `SELECT stack_key FROM cloud_keys WHERE cloud_id = ?`, tok.CloudID).Scan(&key)
	switch {
	case store.IsNoRows(err):
		return nil
	case err != nil:
		return err
	case key != tok.StackKey:
		return errInvalidToken("it is not signed by the stack of cloud %s: a cloud's tokens are signed by the key of the stack that first registered it.", tok.CloudID)
	}
	return nil
}

// bindCloud ties a cloud to the key that signed its first registration
// token, and refuses a token for that cloud signed by any other key.
func (s *Service) bindCloud(ctx context.Context, tx *store.Tx, tok Token, actor string, now time.Time) error {
	var key string
	err := tx.QueryRowContext(ctx, `SELECT stack_key FROM cloud_keys WHERE cloud_id = ?`+s.db.ForUpdate(), tok.CloudID).Scan(&key)
	switch {
	case store.IsNoRows(err):
		if _, err := tx.ExecContext(ctx, `INSERT INTO cloud_keys (cloud_id, stack_key, bound_at_us, bound_by) VALUES (?, ?, ?, ?) ON CONFLICT (cloud_id) DO NOTHING`,
			tok.CloudID, tok.StackKey, clock.Micros(now), actor); err != nil {
			return err
		}
		// Two first registrations racing: the key that won is the cloud's.
		if err := tx.QueryRowContext(ctx, `SELECT stack_key FROM cloud_keys WHERE cloud_id = ?`, tok.CloudID).Scan(&key); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if key != tok.StackKey {
		return errInvalidToken("it is not signed by the stack of cloud %s: a cloud's tokens are signed by the key of the stack that first registered it.", tok.CloudID)
	}
	return nil
}

// CloudSince is when a cloud was first registered (under any name, in any
// subscription), or the zero time if never.
func (s *Service) CloudSince(ctx context.Context, cloudID string) (time.Time, error) {
	var first sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MIN(created_at_us) FROM registrations WHERE cloud_id = ?`, strings.ToLower(cloudID)).Scan(&first); err != nil {
		return time.Time{}, err
	}
	if !first.Valid {
		return time.Time{}, nil
	}
	return clock.FromMicros(first.Int64), nil
}

// move retires old in favour of the new registration: approval and live
// tenant mappings carry over from now on, and the old registration (with its
// bridge credential) ends, so the stack must be activated again.
func (s *Service) move(ctx context.Context, tx *store.Tx, p auth.Principal, old Registration, to *Registration, now time.Time) error {
	at := clock.Micros(now)
	if _, err := tx.ExecContext(ctx, `INSERT INTO tenant_mappings (registration_uid, customer_subscription_id, tenant_id, etag, valid_from_us, created_by)
		SELECT ?, customer_subscription_id, tenant_id, etag, ?, ? FROM tenant_mappings WHERE registration_uid = ? AND valid_to_us IS NULL`, to.UID, at, p.Actor(), old.UID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tenant_mappings SET valid_to_us = ?, removed_by = ? WHERE registration_uid = ? AND valid_to_us IS NULL`, at, p.Actor(), old.UID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE registrations SET deleted_at_us = ?, deleted_by = ? WHERE uid = ?`, at, p.Actor(), old.UID); err != nil {
		return err
	}
	if err := s.event(ctx, tx, old.UID, now, p.Actor(), "moved", map[string]any{"to": to.Key.ResourceID()}); err != nil {
		return err
	}
	if old.Approved && !to.Approved {
		to.Approved, to.ApprovedAt, to.ApprovedBy = true, old.ApprovedAt, old.ApprovedBy
		return s.save(ctx, tx, *to, "moved_here")
	}
	return s.event(ctx, tx, to.UID, now, p.Actor(), "moved_here", map[string]any{"from": old.Key.ResourceID()})
}

func (s *Service) save(ctx context.Context, tx *store.Tx, r Registration, action string) error {
	tags, _ := json.Marshal(r.Tags)
	var approvedAt, rmAt any
	if r.ApprovedAt != nil {
		approvedAt = clock.Micros(*r.ApprovedAt)
	}
	if r.RemoteManagementAt != nil {
		rmAt = clock.Micros(*r.RemoteManagementAt)
	}
	_, err := tx.ExecContext(ctx, `UPDATE registrations SET location = ?, tags = ?, etag = ?, cloud_id = ?, object_id = ?, billing_model = ?, agreement_number = ?,
		usage_reporting_enabled = ?, marketplace_syndication_enabled = ?, token = ?, approved = ?, approved_at_us = ?, approved_by = ?,
		remote_management_at_us = ?, remote_management_by = ?, updated_at_us = ?, updated_by = ? WHERE uid = ?`,
		r.Location, string(tags), r.ETag, r.CloudID, r.ObjectID, string(r.BillingModel), r.AgreementNumber, store.Bool(r.UsageReportingEnabled),
		store.Bool(r.MarketplaceSyndicationEnabled), r.Token, store.Bool(r.Approved), approvedAt, r.ApprovedBy, rmAt, r.RemoteManagementBy,
		clock.Micros(r.UpdatedAt), r.UpdatedBy, r.UID)
	if err != nil {
		return err
	}
	return s.event(ctx, tx, r.UID, r.UpdatedAt, r.UpdatedBy, action, snapshot(r))
}

// Patch updates the parts of a registration the body names.
func (s *Service) Patch(ctx context.Context, p auth.Principal, k Key, in PutInput, pre Precondition) (Registration, error) {
	k, aerr := ValidateKey(k)
	if aerr != nil {
		return Registration{}, errRegistrationNotFound(k)
	}
	if in.Location != nil && !strings.EqualFold(*in.Location, "global") {
		return Registration{}, arm.Errorf(arm.Invalid, "LocationNotAvailableForResourceType",
			"The provided location '%s' is not available for resource type 'Microsoft.AzureStack/registrations'. List of available regions for the resource type is 'global'.", *in.Location).WithTarget("location")
	}
	var tok Token
	if in.Token != nil {
		if tok, aerr = DecodeToken(*in.Token); aerr != nil {
			return Registration{}, aerr
		}
	}
	if err := s.requireRead(ctx, p, k); err != nil {
		return Registration{}, err
	}
	var out Registration
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		cur, exists, err := s.load(ctx, tx, k, updateLock)
		if err != nil {
			return err
		}
		if !exists {
			return errRegistrationNotFound(k)
		}
		if perr := pre.check("registration", true, cur.ETag); perr != nil {
			return perr
		}
		out = cur
		if in.Token != nil {
			if tok.CloudID != cur.CloudID {
				return arm.Errorf(arm.Invalid, "RegistrationCloudIdMismatch",
					"Registration '%s' belongs to the cloud %s, but the token was generated by the cloud %s.", k.Name, cur.CloudID, tok.CloudID).WithTarget("properties.registrationToken")
			}
			if err := s.bindCloud(ctx, tx, tok, p.Actor(), s.clock.Now()); err != nil {
				return err
			}
			out.ObjectID, out.BillingModel, out.AgreementNumber = tok.ObjectID, tok.BillingModel, tok.AgreementNumber
			out.UsageReportingEnabled = tok.UsageReporting()
			out.MarketplaceSyndicationEnabled = tok.MarketplaceSyndicationEnabled == nil || *tok.MarketplaceSyndicationEnabled
			out.Token = *in.Token
		}
		if in.Tags != nil {
			out.Tags = in.Tags
		}
		out.ETag, out.UpdatedAt, out.UpdatedBy = newETag(), s.clock.Now(), p.Actor()
		return s.save(ctx, tx, out, "updated")
	})
	return out, err
}

// Get returns a registration.
func (s *Service) Get(ctx context.Context, p auth.Principal, k Key) (Registration, error) {
	k, aerr := ValidateKey(k)
	if aerr != nil {
		return Registration{}, errRegistrationNotFound(k)
	}
	if err := s.requireRead(ctx, p, k); err != nil {
		return Registration{}, err
	}
	r, ok, err := s.load(ctx, s.db, k, noLock)
	if err != nil {
		return Registration{}, err
	}
	if !ok {
		return Registration{}, errRegistrationNotFound(k)
	}
	return r, nil
}

// Delete soft-deletes a registration and ends its tenant mappings. existed is
// false when there was nothing to delete (ARM answers 204 then).
func (s *Service) Delete(ctx context.Context, p auth.Principal, k Key, pre Precondition) (bool, error) {
	k, aerr := ValidateKey(k)
	if aerr != nil {
		return false, aerr
	}
	if err := s.requireRead(ctx, p, k); err != nil {
		return false, err
	}
	existed := false
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		cur, exists, err := s.load(ctx, tx, k, updateLock)
		if err != nil || !exists {
			return err
		}
		if perr := pre.check("registration", true, cur.ETag); perr != nil {
			return perr
		}
		if err := s.requireMappingsManageable(ctx, p, cur.UID); err != nil {
			return err
		}
		existed = true
		now := clock.Micros(s.clock.Now())
		if _, err := tx.ExecContext(ctx, `UPDATE tenant_mappings SET valid_to_us = ?, removed_by = ? WHERE registration_uid = ? AND valid_to_us IS NULL`, now, p.Actor(), cur.UID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE registrations SET deleted_at_us = ?, deleted_by = ? WHERE uid = ?`, now, p.Actor(), cur.UID); err != nil {
			return err
		}
		return s.event(ctx, tx, cur.UID, s.clock.Now(), p.Actor(), "deleted", snapshot(cur))
	})
	return existed, err
}

// ListQuery selects registrations.
type ListQuery struct {
	SubscriptionID string // required except for operator-wide listings
	ResourceGroup  string // optional
	CloudID        string // optional filter
	After          string // lookup key of the last item of the previous page
	Limit          int
}

// List returns one page of registrations and the cursor of the next page.
func (s *Service) List(ctx context.Context, p auth.Principal, q ListQuery) ([]Registration, string, error) {
	if q.SubscriptionID != "" {
		sub, ok := arm.CanonicalGUID(q.SubscriptionID)
		if !ok {
			return nil, "", arm.Errorf(arm.Invalid, "InvalidSubscriptionId", "The provided subscription identifier '%s' is malformed or invalid.", q.SubscriptionID)
		}
		q.SubscriptionID = sub
		ok, _, err := s.access(ctx, p, sub)
		if err != nil {
			return nil, "", err
		}
		if !ok {
			return nil, "", arm.Forbidden(p.Actor(), "Microsoft.AzureStack/registrations/read", "/subscriptions/"+sub)
		}
	} else if p.Role != auth.RoleOperator {
		return nil, "", arm.Forbidden(p.Actor(), "Microsoft.AzureStack/registrations/read", "/")
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	sqlText := `SELECT ` + regColumns + `, lookup_key FROM registrations WHERE deleted_at_us IS NULL AND lookup_key > ?`
	args := []any{q.After}
	if q.SubscriptionID != "" {
		sqlText += ` AND subscription_id = ?`
		args = append(args, q.SubscriptionID)
	}
	if q.ResourceGroup != "" {
		sqlText += ` AND lookup_key LIKE ?`
		args = append(args, strings.ToLower(q.SubscriptionID+"/"+escapeLike(q.ResourceGroup))+"/%")
		sqlText += ` ESCAPE '\'`
	}
	if q.CloudID != "" {
		cid, _ := arm.CanonicalGUID(q.CloudID)
		sqlText += ` AND cloud_id = ?`
		args = append(args, cid)
	}
	sqlText += ` ORDER BY lookup_key LIMIT ?`
	args = append(args, q.Limit+1)
	rows, err := s.db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var out []Registration
	var keys []string
	for rows.Next() {
		var key string
		r, err := scanRegistration(rows, &key)
		if err != nil {
			return nil, "", err
		}
		out = append(out, r)
		keys = append(keys, key)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > q.Limit {
		out = out[:q.Limit]
		next = keys[q.Limit-1]
	}
	return out, next, nil
}

func escapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// Approve sets or clears multi-tenancy approval. Only the operator approves,
// and only registrations whose default subscription is CSP or CSPSS: the seed
// says multi-tenant usage reporting needs one.
func (s *Service) Approve(ctx context.Context, p auth.Principal, k Key, approve bool) (Registration, error) {
	if p.Role != auth.RoleOperator {
		return Registration{}, arm.Forbidden(p.Actor(), "Microsoft.AzureStack/registrations/approveMultiTenancy/action", k.ResourceID())
	}
	k, aerr := ValidateKey(k)
	if aerr != nil {
		return Registration{}, errRegistrationNotFound(k)
	}
	var owner directory.ResolvedSubscription
	if approve {
		r, err := s.resolver.Resolve(ctx, k.SubscriptionID)
		owner = r
		if err != nil && !errors.Is(err, directory.ErrNotFound) {
			return Registration{}, errMetadataResolverBadGateway()
		}
		if err != nil || (r.Offer != directory.OfferCSP && r.Offer != directory.OfferCSPSS) {
			offer := "unknown"
			if err == nil {
				offer = string(r.Offer)
			}
			return Registration{}, arm.Errorf(arm.Invalid, "MultiTenancyRequiresCspSubscription",
				"Registration '%s' cannot be approved for multi-tenancy: its default subscription %s has offer type %s. For multi-tenant usage reporting to work, the default subscription must be a CSP or CSPSS subscription.",
				k.Name, k.SubscriptionID, offer)
		}
	}
	var out Registration
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		cur, exists, err := s.load(ctx, tx, k, updateLock)
		if err != nil {
			return err
		}
		if !exists {
			return errRegistrationNotFound(k)
		}
		out = cur
		if cur.Approved == approve {
			return nil
		}
		now := s.clock.Now()
		out.Approved, out.ETag, out.UpdatedAt, out.UpdatedBy = approve, newETag(), now, p.Actor()
		action := "approval_revoked"
		if approve {
			out.ApprovedAt, out.ApprovedBy, action = &now, p.Actor(), "approved"
			data, err := json.Marshal(map[string]any{"registration": out.Key.ResourceID(), "cloudId": out.CloudID, "approvedBy": p.Actor(), "approvedAt": now})
			if err != nil {
				return err
			}
			// Approvals can be revoked and given again: each is its own event.
			if _, err := notify.Record(ctx, tx, notify.Event{Type: notify.RegistrationApproved, At: now, PartnerID: owner.RollsUpTo, ResellerID: owner.Reseller,
				Subject: out.Key.ResourceID(), Data: data}); err != nil {
				return err
			}
		}
		return s.save(ctx, tx, out, action)
	})
	return out, err
}

// EnableRemoteManagement records the caller's consent to remote management.
func (s *Service) EnableRemoteManagement(ctx context.Context, p auth.Principal, k Key) error {
	k, aerr := ValidateKey(k)
	if aerr != nil {
		return errRegistrationNotFound(k)
	}
	if err := s.requireRead(ctx, p, k); err != nil {
		return err
	}
	return s.db.Write(ctx, func(tx *store.Tx) error {
		cur, exists, err := s.load(ctx, tx, k, updateLock)
		if err != nil {
			return err
		}
		if !exists {
			return errRegistrationNotFound(k)
		}
		now := s.clock.Now()
		cur.RemoteManagementAt, cur.RemoteManagementBy, cur.UpdatedAt, cur.UpdatedBy, cur.ETag = &now, p.Actor(), now, p.Actor(), newETag()
		return s.save(ctx, tx, cur, "remote_management_enabled")
	})
}

// Event is one recorded change of a registration or its mappings.
type Event struct {
	Seq    int64           `json:"seq"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"`
	Action string          `json:"action"`
	Data   json.RawMessage `json:"data"`
}

// History returns every event of the registration currently at k, and of
// earlier registrations deleted under the same name, oldest first.
func (s *Service) History(ctx context.Context, p auth.Principal, k Key) ([]Event, error) {
	k, aerr := ValidateKey(k)
	if aerr != nil {
		return nil, errRegistrationNotFound(k)
	}
	if err := s.requireRead(ctx, p, k); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT e.seq, e.at_us, e.actor, e.action, e.data FROM registration_events e
		JOIN registrations r ON r.uid = e.registration_uid WHERE r.lookup_key = ? ORDER BY e.seq`, k.lookup())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		var data string
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &data); err != nil {
			return nil, err
		}
		e.At, e.Data = clock.FromMicros(at), json.RawMessage(data)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errRegistrationNotFound(k)
	}
	return out, nil
}

// isManager says whether p's role may manage registrations at all; access
// decides for which subscriptions.
func isManager(p auth.Principal) bool {
	switch p.Role {
	case auth.RoleOperator, auth.RolePartner, auth.RoleReseller:
		return true
	}
	return false
}
