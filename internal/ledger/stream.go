package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/wire"
)

// StreamState is where a cloud's forwarding stream stands on commerce.
type StreamState struct {
	At    wire.Position
	Known bool // false: no stream batch from this cloud was ever taken
	// UnorderedThrough is the latest reported hour (µs) of a record taken
	// from this cloud without a stream position: stream records of hours up
	// to it may repeat one, so they are looked up.
	UnorderedThrough int64
	// CoveredFrom is the reported hour (µs) where the stream's contiguous
	// run starts: the first batch of a cloud that forwarded before
	// streams, or one that overtook its predecessor, starts it after
	// records commerce may not have, so records of hours up to it are
	// looked up when repeated, not taken as duplicates by their place.
	CoveredFrom int64
	// Pending: records of this cloud are still in the log, not yet in
	// commerce_usage, so Known cannot see them.
	Pending bool
}

// Stream reads where cloud's stream stands and holds it for tx: a
// concurrent batch of the same cloud waits (PostgreSQL's row lock; SQLite
// has one writer).
func (l *Ledger) Stream(ctx context.Context, tx *store.Tx, cloudID string) (StreamState, error) {
	var st StreamState
	var batches int64
	err := tx.QueryRowContext(ctx, `SELECT reported_hour_us, seq, batches, unordered_through_us, covered_from_us FROM commerce_streams WHERE cloud_id = ?`+l.db.ForUpdate(), strings.ToLower(cloudID)).
		Scan(&st.At.ReportedHour, &st.At.ID, &batches, &st.UnorderedThrough, &st.CoveredFrom)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("read the stream of cloud %s: %w", cloudID, err)
	default:
		st.Known = batches > 0
	}
	// Any of the cloud's logged batches, not only the last: on PostgreSQL
	// the background materialisation may take them out of order.
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM commerce_usage_log WHERE cloud_id = ? LIMIT 1`, strings.ToLower(cloudID)).Scan(&one)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("read commerce usage log: %w", err)
	}
	st.Pending = err == nil
	return st, nil
}

// AdvanceStream moves cloud's stream to s.Through inside tx, never back:
// on PostgreSQL two first batches of a cloud find no row to lock, and the
// one that commits second may be the earlier. The batch that starts the
// stream starts its contiguous run at s.After.
func (l *Ledger) AdvanceStream(ctx context.Context, tx *store.Tx, cloudID string, s wire.Stream) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO commerce_streams (cloud_id, reported_hour_us, seq, batches, covered_from_us, updated_at_us) VALUES (?, ?, ?, 1, ?, ?)
		ON CONFLICT (cloud_id) DO UPDATE SET reported_hour_us = excluded.reported_hour_us, seq = excluded.seq,
		covered_from_us = CASE WHEN commerce_streams.batches = 0 THEN excluded.covered_from_us ELSE commerce_streams.covered_from_us END,
		batches = commerce_streams.batches + 1, updated_at_us = excluded.updated_at_us
		WHERE commerce_streams.batches = 0 OR (commerce_streams.reported_hour_us, commerce_streams.seq) < (excluded.reported_hour_us, excluded.seq)`,
		strings.ToLower(cloudID), s.Through.ReportedHour, s.Through.ID, s.After.ReportedHour, clock.Micros(l.clock.Now()))
	if err != nil {
		return fmt.Errorf("advance the stream of cloud %s: %w", cloudID, err)
	}
	return nil
}

// MarkUnordered records that a batch without a stream position took records
// of cloud reported up to reportedUs.
func (l *Ledger) MarkUnordered(ctx context.Context, tx *store.Tx, cloudID string, reportedUs int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO commerce_streams (cloud_id, reported_hour_us, seq, batches, unordered_through_us, updated_at_us) VALUES (?, 0, 0, 0, ?, ?)
		ON CONFLICT (cloud_id) DO UPDATE SET unordered_through_us = CASE WHEN excluded.unordered_through_us > commerce_streams.unordered_through_us
			THEN excluded.unordered_through_us ELSE commerce_streams.unordered_through_us END, updated_at_us = excluded.updated_at_us`,
		strings.ToLower(cloudID), reportedUs, clock.Micros(l.clock.Now()))
	if err != nil {
		return fmt.Errorf("mark the stream of cloud %s: %w", cloudID, err)
	}
	return nil
}

// knownChunk bounds the IDs of one lookup statement.
const knownChunk = 500

// Known reports which of ids (forwarded record IDs, lower-case hex)
// commerce_usage holds. Records still in the log are not seen: callers
// settle first (StreamState.Pending says when that is needed).
func (l *Ledger) Known(ctx context.Context, tx *store.Tx, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(ids); start += knownChunk {
		part := ids[start:min(len(ids), start+knownChunk)]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM commerce_usage WHERE id IN (?`+strings.Repeat(", ?", len(part)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("look up forwarded records: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = true
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	return out, nil
}
