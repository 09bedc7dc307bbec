// Package idempotency remembers the keys of what was already taken, so that
// a re-sent event (intake) or record (commerce's bridge ingestion) is
// acknowledged and not counted again. A claim commits or fails with the
// caller's write transaction, so a failed write never marks a key as seen.
package idempotency

import (
	"context"
	"fmt"
	"sync"

	"github.com/stackbill/stackbill/internal/store"
)

// Keys remembers idempotency keys. Claim runs inside the caller's write
// transaction, at most once per transaction: it reports which keys are new
// and records them, so that the record commits or fails with the
// transaction, and no other transaction sees a key as taken unless the
// claim that took it committed.
type Keys interface {
	Claim(ctx context.Context, tx *store.Tx, keys [][16]byte, expires int64) (fresh []bool, err error)
	// Purge forgets keys that expired before now (microseconds).
	Purge(ctx context.Context, db *store.DB, now int64) (int64, error)
}

// New returns the key store for db's engine: blocks on SQLite, where one
// process writes; one row per key on PostgreSQL, where several instances
// may claim at once and a unique index is what they agree on. table names
// the store: SQLite uses table_blocks (id, expires_at_us, keys), PostgreSQL
// table (key, expires_at_us).
func New(db *store.DB, table string) Keys {
	if db.Dialect == store.Postgres {
		return rows{table: table}
	}
	return &blocks{table: table + "_blocks"}
}

// blocks is SQLite's: keys in memory, made durable as one row of
// concatenated keys per batch. The set is built from
// those rows on first use and topped up from any rows another process
// added: claim runs under SQLite's exclusive write lock, so reading the
// highest block ID there sees every committed batch.
//
// A claim holds mu until its transaction has ended, and takes its keys back
// out of memory if it rolled back. database/sql gives the writer to the
// next transaction as soon as one ends, and ends one at once when its
// context is cancelled (a client that hung up), while the request is still
// unwinding; the next is often that client's re-send of the same batch. Had
// it found the keys of a claim that never committed, it would have
// acknowledged the batch as duplicates of nothing, and the usage would be
// lost.
type blocks struct {
	table  string
	mu     sync.Mutex
	loaded bool
	last   int64
	keys   map[[16]byte]struct{}
}

func (d *blocks) catchUp(ctx context.Context, tx *store.Tx) error {
	var top int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM `+d.table).Scan(&top); err != nil {
		return fmt.Errorf("read idempotency blocks: %w", err)
	}
	if d.loaded && top <= d.last {
		return nil
	}
	if d.keys == nil {
		d.keys = map[[16]byte]struct{}{}
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, keys FROM `+d.table+` WHERE id > ? ORDER BY id`, d.last)
	if err != nil {
		return fmt.Errorf("read idempotency blocks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var b []byte
		if err := rows.Scan(&id, &b); err != nil {
			return err
		}
		for ; len(b) >= 16; b = b[16:] {
			d.keys[[16]byte(b[:16])] = struct{}{}
		}
		d.last = id
	}
	if err := rows.Err(); err != nil {
		return err
	}
	d.loaded = true
	return nil
}

func (d *blocks) Claim(ctx context.Context, tx *store.Tx, keys [][16]byte, expires int64) ([]bool, error) {
	d.mu.Lock()
	var added [][16]byte
	var before int64 // d.last before this claim's own block
	tx.AfterEnd(func(committed bool) {
		if !committed && added != nil {
			for _, k := range added {
				delete(d.keys, k)
			}
			d.last = before
		}
		d.mu.Unlock()
	})
	// What catchUp reads was committed by others and stays, whatever
	// becomes of this transaction.
	if err := d.catchUp(ctx, tx); err != nil {
		return nil, err
	}
	fresh := make([]bool, len(keys))
	blob := make([]byte, 0, 16*len(keys))
	for i, k := range keys {
		if _, seen := d.keys[k]; !seen {
			fresh[i] = true
			blob = append(blob, k[:]...)
		}
	}
	if len(blob) == 0 {
		return fresh, nil
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO `+d.table+` (expires_at_us, keys) VALUES (?, ?) RETURNING id`, expires, blob).Scan(&id); err != nil {
		return nil, fmt.Errorf("store idempotency keys: %w", err)
	}
	before, added = d.last, make([][16]byte, 0, len(blob)/16)
	for i, k := range keys {
		if fresh[i] {
			d.keys[k] = struct{}{}
			added = append(added, k)
		}
	}
	d.last = id
	return fresh, nil
}

// purge forgets expired blocks, a few at a time so the writer is never held
// long, and drops their keys from memory once the delete has committed.
func (d *blocks) Purge(ctx context.Context, db *store.DB, now int64) (int64, error) {
	var total int64
	for {
		var gone [][]byte
		err := db.Write(ctx, func(tx *store.Tx) error {
			gone = gone[:0]
			rows, err := tx.QueryContext(ctx, `DELETE FROM `+d.table+` WHERE id IN (SELECT id FROM `+d.table+` WHERE expires_at_us < ? ORDER BY expires_at_us LIMIT 50) RETURNING keys`, now)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var b []byte
				if err := rows.Scan(&b); err != nil {
					return err
				}
				gone = append(gone, b)
			}
			return rows.Err()
		})
		if err != nil {
			return total, fmt.Errorf("purge idempotency keys: %w", err)
		}
		if len(gone) == 0 {
			return total, nil
		}
		d.mu.Lock()
		for _, b := range gone {
			for ; len(b) >= 16; b = b[16:] {
				delete(d.keys, [16]byte(b[:16]))
				total++
			}
		}
		d.mu.Unlock()
	}
}

// rows is PostgreSQL's: one row per key under a unique index, which
// concurrent instances agree on.
type rows struct{ table string }

func (d rows) Claim(ctx context.Context, tx *store.Tx, keys [][16]byte, expires int64) ([]bool, error) {
	hexKeys := make([]string, len(keys))
	for i, k := range keys {
		hexKeys[i] = fmt.Sprintf("%x", k)
	}
	rows, err := tx.QueryContext(ctx, `INSERT INTO `+d.table+` (key, expires_at_us) SELECT k, $2 FROM unnest($1::text[]) AS k ON CONFLICT (key) DO NOTHING RETURNING key`, hexKeys, expires)
	if err != nil {
		return nil, fmt.Errorf("store idempotency keys: %w", err)
	}
	defer rows.Close()
	inserted := make(map[string]bool, len(keys))
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		inserted[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	fresh := make([]bool, len(keys))
	for i, k := range hexKeys {
		fresh[i] = inserted[k]
	}
	return fresh, nil
}

func (d rows) Purge(ctx context.Context, db *store.DB, now int64) (int64, error) {
	return db.DeleteInBatches(ctx, `DELETE FROM `+d.table+` WHERE key IN (SELECT key FROM `+d.table+` WHERE expires_at_us < ? LIMIT 5000)`, now)
}
