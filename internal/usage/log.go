package usage

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/varbuf"
)

// logged is one accepted event as the intake log keeps it: validated and
// normalised, so aggregation never parses JSON or looks anything up again.
type logged struct {
	sub, meterKey  string
	level          bool
	qty            string
	startUs, endUs int64
	uri, location  string
	tags, addl     string
}

// encodeLog appends events to a log payload: a version byte, a count, then
// each event's fields (varbuf). It is private to this package and read back
// only by decodeLog, within one version of stackbill or the next (a change
// of layout gets a new leading version byte).
func encodeLog(b []byte, events []logged) []byte {
	b = append(b, logVersion)
	b = binary.AppendUvarint(b, uint64(len(events)))
	for i := range events {
		e := &events[i]
		b = varbuf.AppendString(b, e.sub)
		b = varbuf.AppendString(b, e.meterKey)
		b = varbuf.AppendBool(b, e.level)
		b = varbuf.AppendString(b, e.qty)
		b = binary.AppendVarint(b, e.startUs)
		b = binary.AppendVarint(b, e.endUs-e.startUs)
		b = varbuf.AppendString(b, e.uri)
		b = varbuf.AppendString(b, e.location)
		b = varbuf.AppendString(b, e.tags)
		b = varbuf.AppendString(b, e.addl)
	}
	return b
}

const logVersion = 1

// errCorruptLog means a log payload does not decode; aggregation stops
// rather than guess, and says which row.
var errCorruptLog = errors.New("corrupt intake log payload")

func decodeLog(b []byte) ([]logged, error) {
	r := varbuf.NewReader(b)
	if r.Byte() != logVersion {
		return nil, errCorruptLog
	}
	n := r.Count()
	out := make([]logged, 0, n)
	for i := 0; i < n; i++ {
		var e logged
		e.sub = r.Text()
		e.meterKey = r.Text()
		e.level = r.Bool()
		e.qty = r.Text()
		e.startUs = r.Varint()
		e.endUs = e.startUs + r.Varint()
		e.uri = r.Text()
		e.location = r.Text()
		e.tags = r.Text()
		e.addl = r.Text()
		out = append(out, e)
	}
	if r.Done() != nil {
		return nil, errCorruptLog
	}
	return out, nil
}

// keyDedup remembers idempotency keys. claim runs inside the intake write
// transaction: it reports which keys are new and records them so that the
// record commits or fails with the transaction. undo forgets what an attempt
// that did not commit recorded in memory.
type keyDedup interface {
	claim(ctx context.Context, tx *store.Tx, keys [][16]byte, expires int64) (fresh []bool, undo func(), err error)
	purge(ctx context.Context, db *store.DB, now int64) (int64, error)
}

// blockDedup is SQLite's: keys in memory, made durable as one row of
// concatenated keys per batch (usage_dedup_blocks). The set is built from
// those rows on first use and topped up from any rows another process
// added: claim runs under SQLite's exclusive write lock, so reading the
// highest block ID there sees every committed batch.
type blockDedup struct {
	mu     sync.Mutex
	loaded bool
	last   int64
	keys   map[[16]byte]struct{}
}

func (d *blockDedup) catchUp(ctx context.Context, tx *store.Tx) error {
	var top int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM usage_dedup_blocks`).Scan(&top); err != nil {
		return fmt.Errorf("read idempotency blocks: %w", err)
	}
	if d.loaded && top <= d.last {
		return nil
	}
	if d.keys == nil {
		d.keys = map[[16]byte]struct{}{}
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, keys FROM usage_dedup_blocks WHERE id > ? ORDER BY id`, d.last)
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

func (d *blockDedup) claim(ctx context.Context, tx *store.Tx, keys [][16]byte, expires int64) ([]bool, func(), error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.catchUp(ctx, tx); err != nil {
		return nil, nil, err
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
		return fresh, func() {}, nil
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO usage_dedup_blocks (expires_at_us, keys) VALUES (?, ?) RETURNING id`, expires, blob).Scan(&id); err != nil {
		return nil, nil, fmt.Errorf("store idempotency keys: %w", err)
	}
	prevLast := d.last
	for i, k := range keys {
		if fresh[i] {
			d.keys[k] = struct{}{}
		}
	}
	d.last = id
	undo := func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for i, k := range keys {
			if fresh[i] {
				delete(d.keys, k)
			}
		}
		if d.last == id {
			d.last = prevLast
		}
	}
	return fresh, undo, nil
}

// purge forgets expired blocks, a few at a time so the writer is never held
// long, and drops their keys from memory once the delete has committed.
func (d *blockDedup) purge(ctx context.Context, db *store.DB, now int64) (int64, error) {
	var total int64
	for {
		var gone [][]byte
		err := db.Write(ctx, func(tx *store.Tx) error {
			gone = gone[:0]
			rows, err := tx.QueryContext(ctx, `DELETE FROM usage_dedup_blocks WHERE id IN (SELECT id FROM usage_dedup_blocks WHERE expires_at_us < ? ORDER BY expires_at_us LIMIT 50) RETURNING keys`, now)
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

// tableDedup is PostgreSQL's: one row per key under a unique index, which
// concurrent instances taking intake agree on.
type tableDedup struct{}

func (tableDedup) claim(ctx context.Context, tx *store.Tx, keys [][16]byte, expires int64) ([]bool, func(), error) {
	hexKeys := make([]string, len(keys))
	for i, k := range keys {
		hexKeys[i] = fmt.Sprintf("%x", k)
	}
	rows, err := tx.QueryContext(ctx, `INSERT INTO usage_dedup (key, expires_at_us) SELECT k, $2 FROM unnest($1::text[]) AS k ON CONFLICT (key) DO NOTHING RETURNING key`, hexKeys, expires)
	if err != nil {
		return nil, nil, fmt.Errorf("store idempotency keys: %w", err)
	}
	defer rows.Close()
	inserted := make(map[string]bool, len(keys))
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, nil, err
		}
		inserted[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	fresh := make([]bool, len(keys))
	for i, k := range hexKeys {
		fresh[i] = inserted[k]
	}
	return fresh, func() {}, nil
}

func (tableDedup) purge(ctx context.Context, db *store.DB, now int64) (int64, error) {
	return db.DeleteInBatches(ctx, `DELETE FROM usage_dedup WHERE key IN (SELECT key FROM usage_dedup WHERE expires_at_us < ? LIMIT 5000)`, now)
}

// intakeLock is the PostgreSQL advisory lock that orders acknowledgement
// against settling: intake holds it shared while it stamps and writes a
// batch, Settle takes it exclusively, so no batch stamped before the
// settled instant can still be on its way when records are read.
const intakeLock = 0x73626c6f67 // "sblog"

// drainRows is how many logged batches one aggregation transaction takes.
const drainRows = 16

// drain aggregates logged batches received before until into hourly
// records and deletes them from the log, in one transaction. settle waits
// for batches other instances are still writing or aggregating (PostgreSQL);
// the background loop skips those instead.
func (s *Service) drain(ctx context.Context, until int64, settle bool) (int, error) {
	var batches, events int
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		batches, events = 0, 0
		q := `SELECT id, received_us, payload FROM usage_log WHERE received_us < ? ORDER BY id LIMIT ?`
		if s.db.Dialect == store.Postgres {
			if settle {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, intakeLock); err != nil {
					return err
				}
				q += ` FOR UPDATE`
			} else {
				q += ` FOR UPDATE SKIP LOCKED`
			}
		}
		rows, err := tx.QueryContext(ctx, q, until, drainRows)
		if err != nil {
			return fmt.Errorf("read intake log: %w", err)
		}
		groups := map[recordKey]*recordVal{}
		instances := map[string]string{}
		var order []recordKey
		var ids []any
		for rows.Next() {
			var id, received int64
			var payload []byte
			if err := rows.Scan(&id, &received, &payload); err != nil {
				rows.Close()
				return err
			}
			evs, err := decodeLog(payload)
			if err != nil {
				rows.Close()
				return fmt.Errorf("intake log row %d: %w", id, err)
			}
			reported := clock.Micros(clock.HourStart(clock.FromMicros(received)))
			for i := range evs {
				if err := addToGroups(groups, &order, instances, reported, &evs[i]); err != nil {
					rows.Close()
					return fmt.Errorf("intake log row %d: %w", id, err)
				}
			}
			ids = append(ids, id)
			events += len(evs)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		// In index order, consecutive inserts land on the same pages of
		// the record key index instead of all over it.
		slices.SortFunc(order, compareRecordKeys)
		if err := s.addRecords(ctx, tx, order, groups); err != nil {
			return err
		}
		ph := strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")
		if _, err := tx.ExecContext(ctx, `DELETE FROM usage_log WHERE id IN (`+ph+`)`, ids...); err != nil {
			return fmt.Errorf("trim intake log: %w", err)
		}
		batches = len(ids)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if batches > 0 {
		s.backlog.Add(-int64(events))
		s.aggregated.Add(int64(events))
	}
	return batches, nil
}

func compareRecordKeys(a, b recordKey) int {
	return cmp.Or(strings.Compare(a.sub, b.sub), strings.Compare(a.meter, b.meter), strings.Compare(a.instance, b.instance),
		cmp.Compare(a.hour, b.hour), cmp.Compare(a.reported, b.reported))
}

// addToGroups splits one logged event across its usage hours and adds the
// parts to the records of its reported hour.
func addToGroups(groups map[recordKey]*recordVal, order *[]recordKey, instances map[string]string, reported int64, e *logged) error {
	total, err := money.ParseQuantity(e.qty)
	if err != nil {
		return err
	}
	start, end := clock.FromMicros(e.startUs), clock.FromMicros(e.endUs)
	if e.level {
		// A level held for a time: the amount is level × hours.
		total = total.MulFrac(e.endUs-e.startUs, int64(time.Hour/time.Microsecond), partPlaces)
	}
	// A resource reports several meters every hour: hash its URI once per
	// transaction.
	inst, ok := instances[e.uri]
	if !ok {
		inst = instanceKey(e.uri)
		instances[e.uri] = inst
	}
	for _, p := range split(total, start, end) {
		k := recordKey{e.sub, e.meterKey, inst, clock.Micros(p.hour), reported}
		v := groups[k]
		if v == nil {
			v = &recordVal{qty: money.Zero}
			groups[k] = v
			*order = append(*order, k)
		}
		v.qty = v.qty.Add(p.qty)
		v.events++
		v.resourceURI, v.location, v.tags, v.addl = e.uri, e.location, e.tags, e.addl
	}
	return nil
}

// Settle aggregates every batch acknowledged before until, so that records
// of reported hours before it are complete. Everything that reads records
// calls it first; it costs one short transaction when nothing is pending.
func (s *Service) Settle(ctx context.Context, until time.Time) error {
	u := clock.Micros(until)
	if until.IsZero() {
		u = math.MaxInt64
	}
	for {
		n, err := s.drain(ctx, u, true)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// AggregateDelay is how long the background aggregation defers to intake
// while batches keep arriving. A burst shorter than this is acknowledged at
// full speed and aggregated after it; a longer one is aggregated alongside,
// which slows acknowledgements to what the records can absorb. Readers
// never wait for it: they Settle what they read.
const AggregateDelay = 10 * time.Second

// maxBacklog bounds the events waiting in the log before aggregation stops
// deferring to intake.
const maxBacklog = 2_000_000

// Run aggregates the intake log in the background until ctx ends.
func (s *Service) Run(ctx context.Context, logger *slog.Logger) {
	var pending int64
	_ = s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(events), 0) FROM usage_log`).Scan(&pending)
	s.backlog.Store(pending)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var deferSince time.Time
	for ctx.Err() == nil {
		if s.busy() && s.backlog.Load() < maxBacklog {
			if deferSince.IsZero() {
				deferSince = time.Now()
			}
			if time.Since(deferSince) < AggregateDelay {
				select {
				case <-ctx.Done():
					return
				case <-time.After(5 * time.Millisecond):
				}
				continue
			}
		}
		n, err := s.drain(ctx, math.MaxInt64, false)
		if err != nil {
			if ctx.Err() == nil && logger != nil {
				logger.Error("usage aggregation failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if n > 0 {
			continue
		}
		deferSince = time.Time{}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-tick.C:
		}
	}
}

// Backlog is the number of acknowledged events not yet aggregated, as this
// process counts them.
func (s *Service) Backlog() int64 { return s.backlog.Load() }

// Aggregated counts the events this process has aggregated.
func (s *Service) Aggregated() int64 { return s.aggregated.Load() }

// counters is embedded in Service.
type counters struct {
	inflight, backlog, aggregated atomic.Int64
	lastAck                       atomic.Int64 // unix nanoseconds
	wake                          chan struct{}
}

// idleGap is how long intake must have been quiet before background
// aggregation takes the writer: producers leave gaps of a few milliseconds
// between batches while they send and the stack parses.
const idleGap = 100 * time.Millisecond

// busy reports whether intake is taking batches now.
func (s *Service) busy() bool {
	return s.inflight.Load() > 0 || time.Since(time.Unix(0, s.lastAck.Load())) < idleGap
}

func (s *Service) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
