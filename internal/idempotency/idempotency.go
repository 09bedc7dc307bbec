// Package idempotency remembers the keys of what was already taken, so that
// a re-sent event (intake) or record (commerce's bridge ingestion) is
// acknowledged and not counted again. A claim commits or fails with the
// caller's write transaction, so a failed write never marks a key as seen.
package idempotency

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"

	"github.com/stackbill/stackbill/internal/store"
)

// Keys remembers idempotency keys. Claim runs inside the caller's write
// transaction, at most once per transaction: it reports which keys are new
// and records them, so that the record commits or fails with the
// transaction, and no other transaction sees a key as taken unless the
// claim that took it committed.
type Keys interface {
	Claim(ctx context.Context, tx *store.Tx, keys [][16]byte, expires int64) (fresh []bool, err error)
	// Freeze moves keys held in memory to disk once there are more than
	// the store keeps in memory, and reports how many it moved. Callers run
	// it in the background, beside the work that claims keys.
	Freeze(ctx context.Context, db *store.DB) (int64, error)
	// Purge forgets keys that expired before now (microseconds).
	Purge(ctx context.Context, db *store.DB, now int64) (int64, error)
}

// HotKeys is how many keys SQLite's store keeps in memory (about 36 bytes
// each) before Freeze moves them to disk.
const HotKeys = 1 << 20

// New returns the key store for db's engine: blocks on SQLite, where one
// process writes; one row per key on PostgreSQL, where several instances
// may claim at once and a unique index is what they agree on. table names
// the store: SQLite uses table_blocks (id, expires_at_us, keys) and
// table_pages (gen, prefix, expires_min, expires_max, keys), PostgreSQL
// table (key, expires_at_us).
func New(db *store.DB, table string) Keys { return NewHot(db, table, HotKeys) }

// NewHot is New with SQLite's in-memory limit set to hot keys.
func NewHot(db *store.DB, table string, hot int) Keys {
	if db.Dialect == store.Postgres {
		return rows{table: table}
	}
	return &blocks{table: table + "_blocks", pages: table + "_pages", hot: max(1, hot)}
}

// blocks is SQLite's. The keys of recent claims are in memory (hot), made
// durable as one row of concatenated keys per batch. Freeze moves them, a
// generation at a time, into pages on disk (cold): sorted, grouped by the
// key's first 12 bits, each key with its expiry. Memory keeps one Bloom
// filter per generation (about 1.8 bytes a key), so a new key costs a few
// filter probes, and a page is read only when a filter says the key may be
// in its generation. The sets are built from the rows on first use and
// topped up from any rows another process added: claim runs under SQLite's
// exclusive write lock, so reading the highest block ID and generation
// there sees every committed batch and freeze.
//
// A claim holds mu until its transaction has ended, and takes its keys back
// out of memory if it rolled back. database/sql gives the writer to the
// next transaction as soon as one ends, and ends one at once when its
// context is cancelled (a client that hung up), while the request is still
// unwinding; the next is often that client's re-send of the same batch. Had
// it found the keys of a claim that never committed, it would have
// acknowledged the batch as duplicates of nothing, and the usage would be
// lost. Freeze holds mu the same way.
type blocks struct {
	table, pages string
	hot          int
	mu           sync.Mutex
	loaded       bool
	last         int64 // the highest block ID read
	keys         map[[16]byte]struct{}
	gens         []generation // oldest first
}

// generation is one Freeze's keys on disk: its pages carry gen = id, the
// highest block ID it took.
type generation struct {
	id     int64
	filter *bloom.BloomFilter
}

// page entries: 16 bytes of key, then the key's expiry as a big-endian
// int64 of microseconds.
const entrySize = 24

func prefixOf(k [16]byte) int { return int(k[0])<<4 | int(k[1]>>4) }

func (d *blocks) catchUp(ctx context.Context, tx *store.Tx) error {
	var top, topGen int64
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT COALESCE(MAX(id), 0) FROM `+d.table+`), (SELECT COALESCE(MAX(gen), 0) FROM `+d.pages+`)`).Scan(&top, &topGen); err != nil {
		return fmt.Errorf("read idempotency blocks: %w", err)
	}
	if d.keys == nil {
		d.keys = map[[16]byte]struct{}{}
	}
	known := int64(0)
	if n := len(d.gens); n > 0 {
		known = d.gens[n-1].id
	}
	if topGen > known {
		if err := d.loadGenerations(ctx, tx, known); err != nil {
			return err
		}
	}
	if d.loaded && top <= d.last {
		return nil
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

// loadGenerations builds the filters of the generations after gen.
func (d *blocks) loadGenerations(ctx context.Context, tx *store.Tx, after int64) error {
	sizes, err := tx.QueryContext(ctx, `SELECT gen, SUM(LENGTH(keys)) FROM `+d.pages+` WHERE gen > ? GROUP BY gen ORDER BY gen`, after)
	if err != nil {
		return fmt.Errorf("read idempotency pages: %w", err)
	}
	first := len(d.gens)
	for sizes.Next() {
		var g, n int64
		if err := sizes.Scan(&g, &n); err != nil {
			sizes.Close()
			return err
		}
		d.gens = append(d.gens, generation{id: g, filter: bloom.NewWithEstimates(uint(max(1, n/entrySize)), 0.001)})
	}
	sizes.Close()
	if err := sizes.Err(); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT gen, keys FROM `+d.pages+` WHERE gen > ? ORDER BY gen`, after)
	if err != nil {
		return fmt.Errorf("read idempotency pages: %w", err)
	}
	defer rows.Close()
	i := first
	for rows.Next() {
		var g int64
		var b []byte
		if err := rows.Scan(&g, &b); err != nil {
			return err
		}
		for i < len(d.gens) && d.gens[i].id != g {
			i++
		}
		if i == len(d.gens) {
			return fmt.Errorf("idempotency pages: generation %d appeared while loading", g)
		}
		for ; len(b) >= entrySize; b = b[entrySize:] {
			d.gens[i].filter.Add(b[:16])
		}
	}
	return rows.Err()
}

// cold says whether k is in a generation on disk.
func (d *blocks) cold(ctx context.Context, tx *store.Tx, k [16]byte) (bool, error) {
	if len(d.gens) == 0 {
		return false, nil
	}
	// Hashed once for every generation: filters made for one false-positive
	// rate share their number of hash functions, whatever their size.
	hashes := d.gens[0].filter.K()
	locs := bloom.Locations(k[:], hashes)
	for i := len(d.gens) - 1; i >= 0; i-- {
		f := d.gens[i].filter
		if f.K() == hashes && !f.TestLocations(locs) || f.K() != hashes && !f.Test(k[:]) {
			continue
		}
		var b []byte
		err := tx.QueryRowContext(ctx, `SELECT keys FROM `+d.pages+` WHERE gen = ? AND prefix = ?`, d.gens[i].id, prefixOf(k)).Scan(&b)
		if store.IsNoRows(err) {
			continue // purged, or a false positive
		}
		if err != nil {
			return false, fmt.Errorf("read idempotency pages: %w", err)
		}
		n := len(b) / entrySize
		j := sort.Search(n, func(j int) bool { return bytes.Compare(b[j*entrySize:j*entrySize+16], k[:]) >= 0 })
		if j < n && bytes.Equal(b[j*entrySize:j*entrySize+16], k[:]) {
			return true, nil
		}
	}
	return false, nil
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
		if _, seen := d.keys[k]; seen {
			continue
		}
		seen, err := d.cold(ctx, tx, k)
		if err != nil {
			return nil, err
		}
		if !seen {
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

// Freeze moves keys from memory into generations of pages while more than
// d.hot are in memory, oldest blocks first, a generation of about d.hot
// keys per transaction: their keys, sorted, become one page per 12-bit
// prefix, and their blocks are deleted (block IDs are AUTOINCREMENT, never
// reused, so generation IDs keep rising). Generations stay the same size
// however many keys wait (a store upgraded with weeks of keys in blocks
// freezes them in many), so a page stays a few kilobytes to read.
func (d *blocks) Freeze(ctx context.Context, db *store.DB) (int64, error) {
	var total int64
	for {
		d.mu.Lock()
		n, loaded := len(d.keys), d.loaded
		d.mu.Unlock()
		if loaded && n <= d.hot {
			return total, nil
		}
		moved, err := d.freezeOne(ctx, db)
		total += moved
		if err != nil || moved == 0 {
			return total, err
		}
	}
}

// freezeOne freezes the oldest blocks holding at least d.hot keys. The set
// in memory is then read again from the blocks left (on the next claim or
// freeze, under mu): a fresh map, since maps never shrink.
func (d *blocks) freezeOne(ctx context.Context, db *store.DB) (int64, error) {
	var moved int64
	err := db.Write(ctx, func(tx *store.Tx) error {
		d.mu.Lock()
		var made *generation
		tx.AfterEnd(func(committed bool) {
			if committed && made != nil {
				d.gens = append(d.gens, *made)
				d.keys, d.loaded, d.last = nil, false, 0
			}
			d.mu.Unlock()
		})
		moved = 0
		if err := d.catchUp(ctx, tx); err != nil {
			return err
		}
		if len(d.keys) <= d.hot {
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, expires_at_us, keys FROM `+d.table+` ORDER BY id`)
		if err != nil {
			return fmt.Errorf("freeze idempotency keys: %w", err)
		}
		type entry struct {
			key [16]byte
			exp int64
		}
		entries := make([]entry, 0, d.hot+d.hot/8)
		var through int64 // the last block taken
		for len(entries) < d.hot && rows.Next() {
			var exp int64
			var b []byte
			if err := rows.Scan(&through, &exp, &b); err != nil {
				rows.Close()
				return err
			}
			for ; len(b) >= 16; b = b[16:] {
				entries = append(entries, entry{key: [16]byte(b[:16]), exp: exp})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.key[:], b.key[:]) })
		filter := bloom.NewWithEstimates(uint(max(1, len(entries))), 0.001)
		page := make([]byte, 0, 64*entrySize)
		for start := 0; start < len(entries); {
			p := prefixOf(entries[start].key)
			page = page[:0]
			lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
			end := start
			for ; end < len(entries) && prefixOf(entries[end].key) == p; end++ {
				e := entries[end]
				filter.Add(e.key[:])
				page = binary.BigEndian.AppendUint64(append(page, e.key[:]...), uint64(e.exp))
				lo, hi = min(lo, e.exp), max(hi, e.exp)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO `+d.pages+` (gen, prefix, expires_min, expires_max, keys) VALUES (?, ?, ?, ?, ?)`,
				through, p, lo, hi, page); err != nil {
				return fmt.Errorf("freeze idempotency keys: %w", err)
			}
			start = end
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+d.table+` WHERE id <= ?`, through); err != nil {
			return fmt.Errorf("freeze idempotency keys: %w", err)
		}
		made, moved = &generation{id: through, filter: filter}, int64(len(entries))
		return nil
	})
	return moved, err
}

// Purge forgets expired blocks, a few at a time so the writer is never held
// long, and drops their keys from memory once the delete has committed;
// then it deletes the pages whose keys have all expired and rewrites those
// holding some that have. A generation's filter goes once its last page
// has (until then, a key purged from a page costs one page read when its
// filter still answers for it).
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
			break
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
	for {
		var n int64
		var more bool
		err := db.Write(ctx, func(tx *store.Tx) error {
			n, more = 0, false
			rows, err := tx.QueryContext(ctx, `SELECT gen, prefix, expires_max, keys FROM `+d.pages+` WHERE expires_min < ? ORDER BY expires_min LIMIT 200`, now)
			if err != nil {
				return err
			}
			type page struct {
				gen, prefix, hi int64
				keys            []byte
			}
			var ps []page
			for rows.Next() {
				var p page
				if err := rows.Scan(&p.gen, &p.prefix, &p.hi, &p.keys); err != nil {
					rows.Close()
					return err
				}
				ps = append(ps, p)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			more = len(ps) == 200
			for _, p := range ps {
				kept := make([]byte, 0, len(p.keys))
				lo := int64(math.MaxInt64)
				for b := p.keys; len(b) >= entrySize; b = b[entrySize:] {
					if exp := int64(binary.BigEndian.Uint64(b[16:entrySize])); exp >= now {
						kept, lo = append(kept, b[:entrySize]...), min(lo, exp)
					} else {
						n++
					}
				}
				q, args := `DELETE FROM `+d.pages+` WHERE gen = ? AND prefix = ?`, []any{p.gen, p.prefix}
				if len(kept) > 0 {
					q, args = `UPDATE `+d.pages+` SET keys = ?, expires_min = ? WHERE gen = ? AND prefix = ?`, []any{kept, lo, p.gen, p.prefix}
				}
				if _, err := tx.ExecContext(ctx, q, args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("purge idempotency pages: %w", err)
		}
		total += n
		if !more {
			break
		}
	}
	err := db.Write(ctx, func(tx *store.Tx) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT gen FROM `+d.pages)
		if err != nil {
			return err
		}
		defer rows.Close()
		live := map[int64]bool{}
		for rows.Next() {
			var g int64
			if err := rows.Scan(&g); err != nil {
				return err
			}
			live[g] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		d.gens = slices.DeleteFunc(d.gens, func(g generation) bool { return !live[g.id] })
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("purge idempotency pages: %w", err)
	}
	return total, nil
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

func (rows) Freeze(context.Context, *store.DB) (int64, error) { return 0, nil }

func (d rows) Purge(ctx context.Context, db *store.DB, now int64) (int64, error) {
	return db.DeleteInBatches(ctx, `DELETE FROM `+d.table+` WHERE key IN (SELECT key FROM `+d.table+` WHERE expires_at_us < ? LIMIT 5000)`, now)
}
