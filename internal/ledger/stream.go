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
}

// Stream reads where cloud's stream stands and holds it for tx: a
// concurrent batch of the same cloud waits (PostgreSQL's row lock; SQLite
// has one writer). A cloud's first batch makes its row first, so that even
// two copies of that batch (a re-send while the first is still at work)
// take it in turn on PostgreSQL; a row made so counts no batch (Known is
// false) until one moves it.
func (l *Ledger) Stream(ctx context.Context, tx *store.Tx, cloudID string) (StreamState, error) {
	cloud := strings.ToLower(cloudID)
	for made := false; ; made = true {
		var st StreamState
		var batches int64
		err := tx.QueryRowContext(ctx, `SELECT reported_hour_us, seq, batches, unordered_through_us, covered_from_us FROM commerce_streams WHERE cloud_id = ?`+l.db.ForUpdate(), cloud).
			Scan(&st.At.ReportedHour, &st.At.ID, &batches, &st.UnorderedThrough, &st.CoveredFrom)
		switch {
		case errors.Is(err, sql.ErrNoRows) && !made:
			if _, err := tx.ExecContext(ctx, `INSERT INTO commerce_streams (cloud_id, reported_hour_us, seq, batches, updated_at_us) VALUES (?, 0, 0, 0, ?) ON CONFLICT (cloud_id) DO NOTHING`,
				cloud, clock.Micros(l.clock.Now())); err != nil {
				return st, fmt.Errorf("start the stream of cloud %s: %w", cloudID, err)
			}
			continue
		case err != nil:
			return st, fmt.Errorf("read the stream of cloud %s: %w", cloudID, err)
		}
		st.Known = batches > 0
		return st, nil
	}
}

// AdvanceStream moves cloud's stream to s.Through inside tx, never back (a
// repeated batch may end before where the stream stands). The batch that
// starts the stream starts its contiguous run at s.After.
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

// Known reports which of ids (forwarded record IDs of cloud, lower-case
// hex) the ledger holds: logged and not yet materialised, or in
// commerce_usage. The log is read first, so that a batch materialised
// between the two reads is found in commerce_usage; SQLite's single writer
// and, on PostgreSQL, the stream's row lock, held by the caller, keep the
// cloud's batches from being logged meanwhile. A repeated batch is rare, and
// the log holds at most the cloud's backlog, so decoding it costs less than
// materialising everything first.
func (l *Ledger) Known(ctx context.Context, tx *store.Tx, cloudID string, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	rows, err := tx.QueryContext(ctx, `SELECT payload FROM commerce_usage_log WHERE cloud_id = ? ORDER BY id`, strings.ToLower(cloudID))
	if err != nil {
		return nil, fmt.Errorf("read commerce usage log: %w", err)
	}
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			rows.Close()
			return nil, err
		}
		// A row that does not decode is held for the operator when it is
		// materialised; none of its records counts as known.
		if _, _, recs, err := Decode(payload); err == nil {
			for i := range recs {
				if want[recs[i].ID] {
					out[recs[i].ID] = true
				}
			}
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
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
