// Package notify owns what commerce tells partners as it happens: the event
// log (an invoice finalized, a registration approved, a record held back,
// ...), the webhook endpoints partners and the operator register, and the
// outbox that delivers each event to each endpoint, signed as Standard
// Webhooks specifies, with every attempt logged.
//
// An event is recorded by the package whose change it reports, inside that
// change's transaction (Record), together with one delivery row per
// endpoint that takes it: an event exists exactly when its change
// committed, and a committed event is never without its deliveries. The
// sender (Run) sends deliveries that are due under a lease, so several
// commerce instances never send one at once and a sender killed mid-send
// leaves it to be sent again when the lease runs out, with the same
// webhook-id, which receivers use to drop the repeat.
//
// Who sees what: the operator every event and endpoint; a partner the
// events of its billing relationship (its resellers' included) and its own
// endpoints; a reseller the events about its own customers and its own
// endpoints. End customers and stack roles see none.
package notify

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// The event types.
const (
	InvoiceFinalized     = "invoice.finalized"
	InvoiceDraftUpdated  = "invoice.draft_updated"
	UsageUnpriced        = "usage.unpriced"
	BridgeLagging        = "bridge.lagging"
	QuarantineAdded      = "quarantine.added"
	RegistrationApproved = "registration.approved"
	// BudgetThresholdCrossed is package budget's: a budget's threshold
	// crossed in one of its periods, once.
	BudgetThresholdCrossed = "budget.threshold_crossed"
)

// Types lists every event type, in the order the API documents them.
func Types() []string {
	return []string{BudgetThresholdCrossed, InvoiceFinalized, InvoiceDraftUpdated, UsageUnpriced, BridgeLagging, QuarantineAdded, RegistrationApproved}
}

// Event is one thing that happened.
type Event struct {
	// ID is the event's identity, sent as webhook-id. A recorder that may
	// record the same occurrence twice (two instances, a retried step)
	// gives a stable ID, and the second Record is a no-op.
	ID   string    `json:"id"`
	Seq  int64     `json:"seq"`
	Type string    `json:"type"`
	At   time.Time `json:"timestamp"`
	// PartnerID is the partner who holds the billing relationship, and
	// ResellerID the reseller concerned, if any; both empty for an event
	// only the operator sees.
	PartnerID  string `json:"partnerId,omitempty"`
	ResellerID string `json:"resellerId,omitempty"`
	// Subject names the object the event is about (an invoice number, a
	// registration's resource ID).
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
}

// maxPayload bounds what one event carries; the subject's own API has the
// rest.
const maxPayload = 64 << 10

// Record adds e in tx, the transaction of the change it reports, with a
// pending delivery for every enabled endpoint that takes its type and may
// see it. It reports whether the event is new (false: an event with its ID
// was already recorded, and nothing changed).
func Record(ctx context.Context, tx *store.Tx, e Event) (bool, error) {
	if e.ID == "" {
		e.ID = newID("msg_")
	}
	if !knownType(e.Type) {
		return false, fmt.Errorf("notify: unknown event type %q", e.Type)
	}
	if len(e.Data) == 0 {
		e.Data = json.RawMessage(`{}`)
	}
	if len(e.Data) > maxPayload {
		return false, fmt.Errorf("notify: %s event %s carries %d bytes, over %d", e.Type, e.ID, len(e.Data), maxPayload)
	}
	at := clock.Micros(e.At)
	res, err := tx.ExecContext(ctx, `INSERT INTO notify_events (id, type, partner_id, reseller_id, subject, at_us, payload) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		e.ID, e.Type, e.PartnerID, e.ResellerID, e.Subject, at, string(e.Data))
	if err != nil {
		return false, fmt.Errorf("record %s event: %w", e.Type, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	// The operator's endpoints take every event; a partner's, the events
	// of its billing relationship; a reseller's, its own.
	_, err = tx.ExecContext(ctx, `INSERT INTO notify_deliveries (event_id, endpoint_id, state, attempts, round, next_attempt_us, lease_until_us, last_status, last_error, updated_at_us)
		SELECT ?, e.id, 'pending', 0, 0, ?, 0, 0, '', ? FROM notify_endpoints e
		WHERE e.enabled = 1 AND (e.owner_id = '' OR (e.owner_id = ? AND ? <> '') OR (e.owner_id = ? AND ? <> ''))
		AND EXISTS (SELECT 1 FROM notify_endpoint_types t WHERE t.endpoint_id = e.id AND t.type IN ('*', ?))`,
		e.ID, at, at, e.PartnerID, e.PartnerID, e.ResellerID, e.ResellerID, e.Type)
	if err != nil {
		return false, fmt.Errorf("queue deliveries of %s event: %w", e.Type, err)
	}
	return true, nil
}

func knownType(t string) bool {
	for _, k := range Types() {
		if k == t {
			return true
		}
	}
	return false
}

// newID is prefix and 26 characters of base32 randomness (130 bits).
func newID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Service lists events, keeps endpoints and sends deliveries.
type Service struct {
	db     *store.DB
	clock  *clock.Clock
	policy Policy
	sender sender
}

// Commerce is whether p may use the notification API at all: the operator,
// partners and resellers. The route table admits the same roles; this is the
// domain's own check.
func commerce(p auth.Principal) bool {
	return p.Role == auth.RoleOperator || p.Role == auth.RolePartner || p.Role == auth.RoleReseller
}

// visible is the SQL condition (and its arguments) for the events p sees.
func visible(p auth.Principal) (string, []any) {
	switch p.Role {
	case auth.RoleOperator:
		return "1 = 1", nil
	case auth.RolePartner:
		return "partner_id = ?", []any{p.PartnerID}
	case auth.RoleReseller:
		return "reseller_id = ?", []any{p.PartnerID}
	}
	return "1 = 0", nil
}

// EventQuery selects events: of one type (or any), after a sequence
// number, at most Limit.
type EventQuery struct {
	Type  string
	After int64
	Limit int
}

// Events lists the events p may see, oldest first.
func (s *Service) Events(ctx context.Context, p auth.Principal, q EventQuery) ([]Event, error) {
	if !commerce(p) {
		return nil, arm.Forbidden(p.Actor(), "events/read", "/v1/events")
	}
	if q.Type != "" && !knownType(q.Type) {
		return nil, arm.InvalidRequest("type", "'%s' is not an event type; the types are %s.", q.Type, strings.Join(Types(), ", "))
	}
	if q.Limit < 1 || q.Limit > 1000 {
		q.Limit = 100
	}
	cond, args := visible(p)
	query := `SELECT seq, id, type, partner_id, reseller_id, subject, at_us, payload FROM notify_events WHERE ` + cond + ` AND seq > ?`
	args = append(args, q.After)
	if q.Type != "" {
		query += ` AND type = ?`
		args = append(args, q.Type)
	}
	query += ` ORDER BY seq LIMIT ?`
	args = append(args, q.Limit)
	rows, err := s.db.QueryContext(ctx, query, args...)
	return store.Collect(rows, err, scanEvent)
}

// Recent counts the events p may see that happened at or after since, up
// to limit (the portal's bell shows "limit+" beyond it).
func (s *Service) Recent(ctx context.Context, p auth.Principal, since time.Time, limit int) (int, error) {
	if !commerce(p) {
		return 0, nil
	}
	cond, args := visible(p)
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM notify_events WHERE at_us >= ? AND `+cond+` LIMIT ?) AS recent`,
		append(append([]any{clock.Micros(since)}, args...), limit)...).Scan(&n)
	return n, err
}

// Latest lists the newest events p may see, of one type or any, newest
// first, at most limit.
func (s *Service) Latest(ctx context.Context, p auth.Principal, typ string, limit int) ([]Event, error) {
	if !commerce(p) {
		return nil, arm.Forbidden(p.Actor(), "events/read", "/v1/events")
	}
	cond, args := visible(p)
	q := `SELECT seq, id, type, partner_id, reseller_id, subject, at_us, payload FROM notify_events WHERE ` + cond
	if typ != "" {
		q, args = q+` AND type = ?`, append(args, typ)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY seq DESC LIMIT ?`, append(args, limit)...)
	return store.Collect(rows, err, scanEvent)
}

// Last is the newest event of a type about a subject, for a recorder that
// announces only what changed since.
func (s *Service) Last(ctx context.Context, typ, subject string) (Event, bool, error) {
	e, err := scanEvent(s.db.QueryRowContext(ctx, `SELECT seq, id, type, partner_id, reseller_id, subject, at_us, payload FROM notify_events WHERE type = ? AND subject = ? ORDER BY seq DESC LIMIT 1`, typ, subject))
	if err == sql.ErrNoRows {
		return Event{}, false, nil
	}
	return e, err == nil, err
}

// Event is one event p may see; one it may not is not found.
func (s *Service) Event(ctx context.Context, p auth.Principal, id string) (Event, error) {
	if !commerce(p) {
		return Event{}, arm.Forbidden(p.Actor(), "events/read", "/v1/events/"+id)
	}
	cond, args := visible(p)
	e, err := scanEvent(s.db.QueryRowContext(ctx, `SELECT seq, id, type, partner_id, reseller_id, subject, at_us, payload FROM notify_events WHERE id = ? AND `+cond,
		append([]any{id}, args...)...))
	if err == sql.ErrNoRows {
		return Event{}, errEventNotFound(id)
	}
	return e, err
}

func errEventNotFound(id string) error {
	return arm.Errorf(arm.NotFound, "EventNotFound", "Event '%s' was not found.", id)
}

func scanEvent(r store.Scanner) (Event, error) {
	var e Event
	var at int64
	var payload string
	if err := r.Scan(&e.Seq, &e.ID, &e.Type, &e.PartnerID, &e.ResellerID, &e.Subject, &at, &payload); err != nil {
		return Event{}, err
	}
	e.At, e.Data = clock.FromMicros(at), json.RawMessage(payload)
	return e, nil
}
