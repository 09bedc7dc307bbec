// Package quarantine owns the records that a background stage could not
// take: the quarantine table, who may see and resolve what is in it, and the
// audit of every resolution.
//
// A stage that meets a record it cannot process (an hourly sum past its
// bound, a payload that does not decode, usage outside its registration's
// window) adds the record here, with its reason, in the same transaction in
// which it takes everything else, so one bad record never stops the stage
// for other tenants. An operator lists what is held, then releases an item
// (the stage's Releaser takes it again, inside the transaction that marks it
// released) or drops it. Nothing is deleted: a resolved item keeps who
// resolved it and how.
package quarantine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/store"
)

// Stage names the background stage that held an item.
type Stage string

const (
	// Aggregation is the stack's: intake log → hourly records.
	Aggregation Stage = "aggregation"
	// Seal is the stack's: hourly records → the bridge's outbox.
	Seal Stage = "seal"
	// Ingest is commerce's: forwarded records → commerce's usage log.
	Ingest Stage = "ingest"
	// Materialise is commerce's: commerce's usage log → billable usage.
	Materialise Stage = "materialise"
)

// Stack reports whether the stage runs on the stack (else on commerce).
func (s Stage) Stack() bool { return s == Aggregation || s == Seal }

// Stages lists every stage, stack's first.
var Stages = []Stage{Aggregation, Seal, Ingest, Materialise}

// Item is one held record (or one undecodable batch).
type Item struct {
	ID              int64      `json:"id"`
	At              time.Time  `json:"at"`
	Stage           Stage      `json:"stage"`
	Key             string     `json:"key,omitempty"`
	Reason          string     `json:"reason"`
	RegistrationUID string     `json:"registrationUid,omitempty"`
	SubscriptionID  string     `json:"subscriptionId,omitempty"`
	MeterKey        string     `json:"meterId,omitempty"`
	UsageHour       *time.Time `json:"usageHour,omitempty"`
	Quantity        string     `json:"quantity,omitempty"`
	Records         int        `json:"records"`
	Resolution      string     `json:"resolution,omitempty"`
	ResolvedAt      *time.Time `json:"resolvedAt,omitempty"`
	ResolvedBy      string     `json:"resolvedBy,omitempty"`
	// Payload is what the stage needs to take the item again; its layout
	// belongs to the stage.
	Payload []byte `json:"-"`
}

// Add holds it inside tx, the transaction of the stage that met it. An
// item whose Key the stage already holds is not added twice.
func Add(ctx context.Context, tx *store.Tx, it Item) error {
	var hour any
	if it.UsageHour != nil {
		hour = clock.Micros(*it.UsageHour)
	}
	if it.Records == 0 {
		it.Records = 1
	}
	if it.Payload == nil {
		it.Payload = []byte{}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO quarantine (at_us, stage, record_key, reason, registration_uid, subscription_id, meter_key, usage_hour_us, quantity, records, payload)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (stage, record_key) WHERE record_key <> '' DO NOTHING`,
		clock.Micros(it.At), string(it.Stage), it.Key, truncate(it.Reason, 1000), it.RegistrationUID, it.SubscriptionID, it.MeterKey, hour, truncate(it.Quantity, 300), it.Records, it.Payload)
	if err != nil {
		return fmt.Errorf("quarantine %s record: %w", it.Stage, err)
	}
	if it.Stage.Stack() {
		// A stack's holds are its operator's, on the stack's own /metrics
		// and portal; events are commerce's.
		return nil
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err
	}
	data, err := json.Marshal(map[string]any{"stage": it.Stage, "reason": truncate(it.Reason, 1000), "registrationUid": it.RegistrationUID,
		"subscriptionId": it.SubscriptionID, "meterId": it.MeterKey, "usageHour": it.UsageHour, "quantity": truncate(it.Quantity, 300), "records": it.Records})
	if err != nil {
		return err
	}
	// Only the operator judges held records, so the event is the operator's.
	_, err = notify.Record(ctx, tx, notify.Event{Type: notify.QuarantineAdded, At: it.At, Subject: "quarantine/" + string(it.Stage), Data: data})
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Releaser takes a released item again, inside tx.
type Releaser func(ctx context.Context, tx *store.Tx, it Item, now time.Time) error

// Service lists and resolves held items.
type Service struct {
	db        *store.DB
	clock     *clock.Clock
	releasers map[Stage]Releaser
}

// NewService builds a Service; releasers says how each stage takes an item
// again (a stage without one can only be dropped).
func NewService(db *store.DB, c *clock.Clock, releasers map[Stage]Releaser) *Service {
	return &Service{db: db, clock: c, releasers: releasers}
}

// Visible says which stages p may see and resolve: the operator all of
// them, the stamp's own stack operator the stack's. Nobody else sees any:
// a held record is the operator's to judge.
func Visible(p auth.Principal) []Stage {
	switch {
	case p.Role == auth.RoleOperator:
		return Stages
	case p.Role == auth.RoleStackOperator && p.SubscriptionID == "":
		return []Stage{Aggregation, Seal}
	}
	return nil
}

func visible(p auth.Principal, s Stage) bool {
	for _, v := range Visible(p) {
		if v == s {
			return true
		}
	}
	return false
}

// Query selects items.
type Query struct {
	Stage Stage
	// Open lists only unresolved items.
	Open  bool
	After int64
	Limit int
}

const columns = `id, at_us, stage, record_key, reason, registration_uid, subscription_id, meter_key, usage_hour_us, quantity, records, payload, resolution, resolved_at_us, resolved_by`

func scan(row interface{ Scan(...any) error }) (Item, error) {
	var it Item
	var at int64
	var hour, resolved sql.NullInt64
	var stage string
	if err := row.Scan(&it.ID, &at, &stage, &it.Key, &it.Reason, &it.RegistrationUID, &it.SubscriptionID, &it.MeterKey, &hour, &it.Quantity, &it.Records,
		&it.Payload, &it.Resolution, &resolved, &it.ResolvedBy); err != nil {
		return it, err
	}
	it.At, it.Stage = clock.FromMicros(at), Stage(stage)
	if hour.Valid {
		t := clock.FromMicros(hour.Int64)
		it.UsageHour = &t
	}
	if resolved.Valid {
		t := clock.FromMicros(resolved.Int64)
		it.ResolvedAt = &t
	}
	return it, nil
}

// List returns the items p may see, oldest first.
func (s *Service) List(ctx context.Context, p auth.Principal, q Query) ([]Item, error) {
	stages := Visible(p)
	if q.Stage != "" {
		if !visible(p, q.Stage) {
			return nil, nil
		}
		stages = []Stage{q.Stage}
	}
	if len(stages) == 0 {
		return nil, nil
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 1000
	}
	args := []any{q.After}
	for _, st := range stages {
		args = append(args, string(st))
	}
	where := `id > ? AND stage IN (` + store.Placeholders(len(stages)) + `)`
	if q.Open {
		where += ` AND resolution = ''`
	}
	args = append(args, q.Limit)
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM quarantine WHERE `+where+` ORDER BY id LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		it, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

func notFound(id int64) error {
	return arm.Errorf(arm.NotFound, "QuarantineItemNotFound", "There is no quarantined item %d.", id)
}

// Get returns one item p may see; any other answers as missing.
func (s *Service) Get(ctx context.Context, p auth.Principal, id int64) (Item, error) {
	it, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM quarantine WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !visible(p, it.Stage)) {
		return Item{}, notFound(id)
	}
	return it, err
}

// Release takes the item again through its stage and marks it released.
func (s *Service) Release(ctx context.Context, p auth.Principal, id int64) (Item, error) {
	return s.resolve(ctx, p, id, "released")
}

// Drop marks the item dropped: it will never be billed.
func (s *Service) Drop(ctx context.Context, p auth.Principal, id int64) (Item, error) {
	return s.resolve(ctx, p, id, "dropped")
}

func (s *Service) resolve(ctx context.Context, p auth.Principal, id int64, how string) (Item, error) {
	var out Item
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		it, err := scan(tx.QueryRowContext(ctx, `SELECT `+columns+` FROM quarantine WHERE id = ?`+s.db.ForUpdate(), id))
		if errors.Is(err, sql.ErrNoRows) || (err == nil && !visible(p, it.Stage)) {
			return notFound(id)
		}
		if err != nil {
			return err
		}
		if it.Resolution != "" {
			return arm.Errorf(arm.Invalid, "QuarantineItemResolved", "Quarantined item %d was already %s by %s.", id, it.Resolution, it.ResolvedBy)
		}
		now := s.clock.Now()
		if how == "released" {
			rel := s.releasers[it.Stage]
			if rel == nil {
				return arm.Errorf(arm.Invalid, "QuarantineReleaseUnavailable", "Items held by the %s stage cannot be released by this instance; drop it, or release it where that stage runs.", it.Stage)
			}
			if err := rel(ctx, tx, it, now); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE quarantine SET resolution = ?, resolved_at_us = ?, resolved_by = ? WHERE id = ?`, how, clock.Micros(now), p.Actor(), id); err != nil {
			return err
		}
		before := it
		it.Resolution, it.ResolvedAt, it.ResolvedBy = how, &now, p.Actor()
		out = it
		return audit.Append(ctx, tx, audit.Entry{At: now, Actor: p.Actor(), Action: map[string]string{"released": "quarantine.release", "dropped": "quarantine.drop"}[how], Kind: "quarantine",
			ID: fmt.Sprint(id), Before: audit.JSON(before), After: audit.JSON(it)})
	})
	return out, err
}

// Counts is the number of unresolved items per stage.
func (s *Service) Counts(ctx context.Context) (map[Stage]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT stage, COUNT(*) FROM quarantine WHERE resolution = '' GROUP BY stage`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[Stage]int64{}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[Stage(st)] = n
	}
	return out, rows.Err()
}

// HeldPerRegistration is the number of records held and unresolved per
// registration (items that name one): what a partner is told is waiting
// on the operator from its stamps.
func (s *Service) HeldPerRegistration(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT registration_uid, SUM(records) FROM quarantine WHERE resolution = '' AND registration_uid <> '' GROUP BY registration_uid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var uid string
		var n int64
		if err := rows.Scan(&uid, &n); err != nil {
			return nil, err
		}
		out[uid] = n
	}
	return out, rows.Err()
}
