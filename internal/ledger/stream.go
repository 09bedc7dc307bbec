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
	// Pending: the batch that last moved the stream is still in the log,
	// not yet in commerce_usage, so Known cannot see its records.
	Pending bool
}

// Stream reads where cloud's stream stands and holds it for tx: a
// concurrent batch of the same cloud waits (PostgreSQL's row lock; SQLite
// has one writer).
func (l *Ledger) Stream(ctx context.Context, tx *store.Tx, cloudID string) (StreamState, error) {
	var st StreamState
	var logID, batches int64
	err := tx.QueryRowContext(ctx, `SELECT reported_hour_us, seq, log_id, batches, unordered_through_us, covered_from_us FROM commerce_streams WHERE cloud_id = ?`+l.db.ForUpdate(), strings.ToLower(cloudID)).
		Scan(&st.At.ReportedHour, &st.At.ID, &logID, &batches, &st.UnorderedThrough, &st.CoveredFrom)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return st, nil
	case err != nil:
		return st, fmt.Errorf("read the stream of cloud %s: %w", cloudID, err)
	}
	st.Known = batches > 0
	if logID > 0 {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM commerce_usage_log WHERE id = ?`, logID).Scan(&one)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return st, fmt.Errorf("read commerce usage log: %w", err)
		}
		st.Pending = err == nil
	}
	return st, nil
}

// AdvanceStream moves cloud's stream to s.Through inside tx, never back:
// on PostgreSQL two first batches of a cloud find no row to lock, and the
// one that commits second may be the earlier. The batch that starts the
// stream starts its contiguous run at s.After. logID is the log row that
// took the batch (0: the batch stored nothing, and the last row that did
// still stands).
func (l *Ledger) AdvanceStream(ctx context.Context, tx *store.Tx, cloudID string, s wire.Stream, logID int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO commerce_streams (cloud_id, reported_hour_us, seq, log_id, batches, covered_from_us, updated_at_us) VALUES (?, ?, ?, ?, 1, ?, ?)
		ON CONFLICT (cloud_id) DO UPDATE SET reported_hour_us = excluded.reported_hour_us, seq = excluded.seq,
		log_id = CASE WHEN excluded.log_id > 0 THEN excluded.log_id ELSE commerce_streams.log_id END,
		covered_from_us = CASE WHEN commerce_streams.batches = 0 THEN excluded.covered_from_us ELSE commerce_streams.covered_from_us END,
		batches = commerce_streams.batches + 1, updated_at_us = excluded.updated_at_us
		WHERE commerce_streams.batches = 0 OR (commerce_streams.reported_hour_us, commerce_streams.seq) < (excluded.reported_hour_us, excluded.seq)`,
		strings.ToLower(cloudID), s.Through.ReportedHour, s.Through.ID, logID, s.After.ReportedHour, clock.Micros(l.clock.Now()))
	if err != nil {
		return fmt.Errorf("advance the stream of cloud %s: %w", cloudID, err)
	}
	return nil
}

// MarkUnordered records that a batch without a stream position took records
// of cloud reported up to reportedUs, logged in log row logID (0: none).
func (l *Ledger) MarkUnordered(ctx context.Context, tx *store.Tx, cloudID string, reportedUs, logID int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO commerce_streams (cloud_id, reported_hour_us, seq, log_id, batches, unordered_through_us, updated_at_us) VALUES (?, 0, 0, ?, 0, ?, ?)
		ON CONFLICT (cloud_id) DO UPDATE SET unordered_through_us = CASE WHEN excluded.unordered_through_us > commerce_streams.unordered_through_us
			THEN excluded.unordered_through_us ELSE commerce_streams.unordered_through_us END,
		log_id = CASE WHEN excluded.log_id > 0 THEN excluded.log_id ELSE commerce_streams.log_id END, updated_at_us = excluded.updated_at_us`,
		strings.ToLower(cloudID), logID, reportedUs, clock.Micros(l.clock.Now()))
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
