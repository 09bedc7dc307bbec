package notify

import (
	"context"
	"database/sql"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// Delivery is one event's delivery to one endpoint, with its attempts.
type Delivery struct {
	ID          int64     `json:"id"`
	EventID     string    `json:"eventId"`
	EventType   string    `json:"eventType"`
	EndpointID  string    `json:"endpointId"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt *string   `json:"nextAttemptAt,omitempty"`
	LastStatus  int       `json:"lastStatus,omitempty"`
	LastError   string    `json:"lastError,omitempty"`
	UpdatedAt   string    `json:"updatedAt"`
	Log         []Attempt `json:"log,omitempty"`
}

// Attempt is one try at a delivery.
type Attempt struct {
	Attempt    int    `json:"attempt"`
	At         string `json:"at"`
	DurationMs int64  `json:"durationMs"`
	Status     int    `json:"status,omitempty"`
	Error      string `json:"error,omitempty"`
	Response   string `json:"response,omitempty"`
}

// Deliveries lists an endpoint's deliveries, newest first, before a
// delivery ID (0: from the newest), at most limit.
func (s *Service) Deliveries(ctx context.Context, p auth.Principal, endpointID string, before int64, limit int) ([]Delivery, error) {
	if _, err := s.load(ctx, s.db, p, endpointID); err != nil {
		return nil, err
	}
	if limit < 1 || limit > 500 {
		limit = 100
	}
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := s.db.QueryContext(ctx, `SELECT d.id, d.event_id, v.type, d.endpoint_id, d.state, d.attempts, d.next_attempt_us, d.last_status, d.last_error, d.updated_at_us
		FROM notify_deliveries d JOIN notify_events v ON v.id = d.event_id WHERE d.endpoint_id = ? AND d.id < ? ORDER BY d.id DESC LIMIT ?`, endpointID, before, limit)
	return store.Collect(rows, err, scanDelivery)
}

func scanDelivery(r store.Scanner) (Delivery, error) {
	var d Delivery
	var next, updated int64
	if err := r.Scan(&d.ID, &d.EventID, &d.EventType, &d.EndpointID, &d.State, &d.Attempts, &next, &d.LastStatus, &d.LastError, &updated); err != nil {
		return Delivery{}, err
	}
	if d.State == "pending" {
		t := stamp(clock.FromMicros(next))
		d.NextAttempt = &t
	}
	d.UpdatedAt = stamp(clock.FromMicros(updated))
	return d, nil
}

// Delivery is one delivery of an endpoint p keeps, with every attempt.
func (s *Service) Delivery(ctx context.Context, p auth.Principal, endpointID string, id int64) (Delivery, error) {
	if _, err := s.load(ctx, s.db, p, endpointID); err != nil {
		return Delivery{}, err
	}
	return s.delivery(ctx, s.db, endpointID, id)
}

func (s *Service) delivery(ctx context.Context, q store.Querier, endpointID string, id int64) (Delivery, error) {
	d, err := scanDelivery(q.QueryRowContext(ctx, `SELECT d.id, d.event_id, v.type, d.endpoint_id, d.state, d.attempts, d.next_attempt_us, d.last_status, d.last_error, d.updated_at_us
		FROM notify_deliveries d JOIN notify_events v ON v.id = d.event_id WHERE d.endpoint_id = ? AND d.id = ?`, endpointID, id))
	if err == sql.ErrNoRows {
		return Delivery{}, arm.Errorf(arm.NotFound, "DeliveryNotFound", "Delivery %d of webhook endpoint '%s' was not found.", id, endpointID)
	}
	if err != nil {
		return Delivery{}, err
	}
	rows, err := q.QueryContext(ctx, `SELECT attempt, at_us, duration_us, status, error, response FROM notify_attempts WHERE delivery_id = ? ORDER BY attempt`, id)
	if err != nil {
		return Delivery{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var a Attempt
		var at, dur int64
		if err := rows.Scan(&a.Attempt, &at, &dur, &a.Status, &a.Error, &a.Response); err != nil {
			return Delivery{}, err
		}
		a.At, a.DurationMs = stamp(clock.FromMicros(at)), dur/1000
		d.Log = append(d.Log, a)
	}
	return d, rows.Err()
}

// Replay sends a delivery again, now, whatever its state: the receiver
// gets the same webhook-id, so one that kept it drops the repeat. Its
// attempts count on, and it gets the whole schedule again.
func (s *Service) Replay(ctx context.Context, p auth.Principal, endpointID string, id int64) (Delivery, error) {
	var out Delivery
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		if _, err := s.load(ctx, tx, p, endpointID); err != nil {
			return err
		}
		if _, err := s.delivery(ctx, tx, endpointID, id); err != nil {
			return err
		}
		now := clock.Micros(s.clock.Now())
		if _, err := tx.ExecContext(ctx, `UPDATE notify_deliveries SET state = 'pending', round = 0, next_attempt_us = ?, lease_until_us = 0, updated_at_us = ? WHERE id = ?`, now, now, id); err != nil {
			return err
		}
		var err error
		out, err = s.delivery(ctx, tx, endpointID, id)
		return err
	})
	return out, err
}

// Retention is how long events, their deliveries and their attempts are
// kept: long enough to replay a month's deliveries after a partner's
// receiver was down, short enough that the log does not grow for ever.
const Retention = 90 * 24 * time.Hour

// Purge deletes what happened before before: events, with their deliveries
// and attempts once no delivery of theirs is still pending (the retry
// schedule ends within two days, so none is). It returns the events
// deleted.
func (s *Service) Purge(ctx context.Context, before time.Time) (int64, error) {
	at := clock.Micros(before)
	if _, err := s.db.DeleteInBatches(ctx, `DELETE FROM notify_attempts WHERE delivery_id IN (SELECT d.id FROM notify_deliveries d JOIN notify_events v ON v.id = d.event_id
		WHERE v.at_us < ? AND d.state <> 'pending' AND EXISTS (SELECT 1 FROM notify_attempts a WHERE a.delivery_id = d.id) LIMIT 500)`, at); err != nil {
		return 0, err
	}
	if _, err := s.db.DeleteInBatches(ctx, `DELETE FROM notify_deliveries WHERE id IN (SELECT d.id FROM notify_deliveries d JOIN notify_events v ON v.id = d.event_id
		WHERE v.at_us < ? AND d.state <> 'pending' LIMIT 1000)`, at); err != nil {
		return 0, err
	}
	return s.db.DeleteInBatches(ctx, `DELETE FROM notify_events WHERE seq IN (SELECT v.seq FROM notify_events v WHERE v.at_us < ?
		AND NOT EXISTS (SELECT 1 FROM notify_deliveries d WHERE d.event_id = v.id) LIMIT 1000)`, at)
}
