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
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/drainer"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/quarantine"
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

// intakeLock is the PostgreSQL advisory lock that orders acknowledgement
// against settling: intake holds it shared while it stamps and writes a
// batch, Settle takes it exclusively, so no batch stamped before the
// settled instant can still be on its way when records are read.
const intakeLock = 0x73626c6f67 // "sblog"

// drainRows is how many logged batches one aggregation transaction takes.
const drainRows = 16

// poison is logged data that aggregation cannot take: a payload that does
// not decode, or an event that would push an hourly record past
// money.MaxRecordQuantity. The fast path meets it and gives up its
// transaction; drain then takes the log row by row and event by event, and
// quarantines what does not fit, so that nobody else's usage waits on it.
type poison struct{ reason string }

func (p poison) Error() string { return p.reason }

// drain aggregates logged batches received before until into hourly
// records and deletes them from the log, in one transaction. settle waits
// for batches other instances are still writing or aggregating (PostgreSQL);
// the background loop skips those instead.
func (s *Service) drain(ctx context.Context, until int64, settle bool) (int, error) {
	n, err := s.drainFast(ctx, until, settle)
	var p poison
	if errors.As(err, &p) {
		return s.drainCareful(ctx, until, settle)
	}
	return n, err
}

func (s *Service) lockForSettle(ctx context.Context, tx *store.Tx, settle bool) error {
	if s.db.Dialect == store.Postgres && settle {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, intakeLock); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) drainFast(ctx context.Context, until int64, settle bool) (int, error) {
	var batches, events int
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		batches, events = 0, 0
		if err := s.lockForSettle(ctx, tx, settle); err != nil {
			return err
		}
		g := newGroups()
		ids, err := drainer.Take(ctx, tx, "usage_log", "received_us < ?", until, drainRows, settle, func(_, received int64, payload []byte) error {
			evs, err := decodeLog(payload)
			if err != nil {
				return poison{err.Error()}
			}
			reported := clock.Micros(clock.HourStart(clock.FromMicros(received)))
			for i := range evs {
				parts, err := g.parts(&evs[i])
				if err != nil {
					return poison{err.Error()}
				}
				for _, p := range parts {
					if g.add(recordKey{evs[i].sub, evs[i].meterKey, g.instance(evs[i].uri), clock.Micros(p.hour), reported}, p.qty, &evs[i]).Above(money.MaxRecordQuantity) {
						return poison{"an hourly record would exceed its bound"}
					}
				}
			}
			events += len(evs)
			return nil
		})
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		batches = len(ids)
		return s.finishDrain(ctx, tx, g, nil, ids)
	})
	if err != nil {
		return 0, err
	}
	s.drained(batches, events)
	return batches, nil
}

// finishDrain writes a drain's records and held items and deletes the log
// rows it took, in the drain's transaction, so each event lands exactly
// once: in a record or in quarantine.
func (s *Service) finishDrain(ctx context.Context, tx *store.Tx, g *groups, held []quarantine.Item, ids []any) error {
	if err := s.addRecords(ctx, tx, g.sorted(), g.vals); err != nil {
		return err
	}
	for _, it := range held {
		if err := quarantine.Add(ctx, tx, it); err != nil {
			return err
		}
	}
	return drainer.Trim(ctx, tx, "usage_log", ids)
}

func (s *Service) drained(batches, events int) {
	if batches > 0 {
		s.loop.Drained(int64(events))
		s.aggregated.Add(int64(events))
	}
}

// drainCareful takes one log row, checks each of its events against the
// records as stored, and quarantines what it cannot take: the whole row if
// it does not decode, else each event that is malformed or would push a
// record past its bound. The rest is aggregated as usual.
func (s *Service) drainCareful(ctx context.Context, until int64, settle bool) (int, error) {
	var batches, events int
	var held []quarantine.Item
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		batches, events, held = 0, 0, nil
		if err := s.lockForSettle(ctx, tx, settle); err != nil {
			return err
		}
		now := s.clock.Now()
		g := newGroups()
		stored := map[recordKey]money.Quantity{}
		// The row is read first and checked after: a query against the
		// stored records cannot run while the log's rows are still being
		// read on the same connection (PostgreSQL).
		var received int64
		var payload []byte
		ids, err := drainer.Take(ctx, tx, "usage_log", "received_us < ?", until, 1, settle, func(_, r int64, p []byte) error {
			received, payload = r, append([]byte(nil), p...)
			return nil
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		err = func() error {
			evs, err := decodeLog(payload)
			if err != nil {
				held = append(held, quarantine.Item{At: now, Stage: quarantine.Aggregation, Reason: "the intake log row does not decode: " + err.Error(),
					Payload: payload, Records: 1})
				return nil
			}
			reported := clock.Micros(clock.HourStart(clock.FromMicros(received)))
		events:
			for i := range evs {
				e := &evs[i]
				events++
				parts, err := g.parts(e)
				if err != nil {
					held = append(held, heldEvent(now, e, "the event's quantity does not parse: "+err.Error()))
					continue
				}
				keys := make([]recordKey, len(parts))
				for j, p := range parts {
					k := recordKey{e.sub, e.meterKey, g.instance(e.uri), clock.Micros(p.hour), reported}
					keys[j] = k
					base, ok := stored[k]
					if !ok {
						if base, err = s.storedQuantity(ctx, tx, k); err != nil {
							return err
						}
						stored[k] = base
					}
					sum := base.Add(p.qty)
					if v := g.vals[k]; v != nil {
						sum = sum.Add(v.qty)
					}
					if sum.Above(money.MaxRecordQuantity) {
						held = append(held, heldEvent(now, e, fmt.Sprintf("the hourly record of %s would exceed the bound of %s per record", clock.FromMicros(k.hour).Format(time.RFC3339), money.MaxRecordQuantity)))
						continue events
					}
				}
				for j, p := range parts {
					g.add(keys[j], p.qty, e)
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
		batches = len(ids)
		return s.finishDrain(ctx, tx, g, held, ids)
	})
	if err != nil {
		return 0, err
	}
	s.drained(batches, events)
	s.quarantined.Add(int64(len(held)))
	return batches, nil
}

func heldEvent(now time.Time, e *logged, reason string) quarantine.Item {
	hour := clock.HourStart(clock.FromMicros(e.startUs))
	return quarantine.Item{At: now, Stage: quarantine.Aggregation, Reason: reason, SubscriptionID: e.sub, MeterKey: e.meterKey, UsageHour: &hour,
		Quantity: e.qty, Records: 1, Payload: encodeLog(nil, []logged{*e})}
}

// storedQuantity is an hourly record's quantity as stored, zero if absent.
func (s *Service) storedQuantity(ctx context.Context, tx *store.Tx, k recordKey) (money.Quantity, error) {
	var q money.Quantity
	err := tx.QueryRowContext(ctx, `SELECT quantity FROM usage_records WHERE subscription_id = ? AND meter_key = ? AND instance = ? AND usage_hour_us = ? AND reported_hour_us = ?`,
		k.sub, k.meter, k.instance, k.hour, k.reported).Scan(&q)
	if store.IsNoRows(err) {
		return money.Zero, nil
	}
	return q, err
}

// Release takes a quarantined aggregation item again: its events are logged
// anew as received now, so they land in the open reported hour as late
// usage and a closed hour that a client or the bridge has read never
// changes. Aggregation checks them again; an event that still does not fit
// is held again.
func (s *Service) Release(ctx context.Context, tx *store.Tx, it quarantine.Item, now time.Time) error {
	evs, err := decodeLog(it.Payload)
	if err != nil {
		return arm.InvalidRequest("", "Quarantined item %d does not decode (%v), so it cannot be taken again; drop it.", it.ID, err)
	}
	if err := s.loadFloor(ctx); err != nil {
		return err
	}
	now = s.notBefore(now) // the clock may have gone back: see Service.floor
	s.raiseFloor(clock.Micros(now))
	if _, err := tx.ExecContext(ctx, `INSERT INTO usage_log (received_us, events, payload) VALUES (?, ?, ?)`, clock.Micros(now), len(evs), it.Payload); err != nil {
		return err
	}
	tx.AfterEnd(func(committed bool) {
		if committed {
			s.loop.Logged(int64(len(evs)))
		}
	})
	return nil
}

func compareRecordKeys(a, b recordKey) int {
	return cmp.Or(strings.Compare(a.sub, b.sub), strings.Compare(a.meter, b.meter), strings.Compare(a.instance, b.instance),
		cmp.Compare(a.hour, b.hour), cmp.Compare(a.reported, b.reported))
}

// groups collects one transaction's additions to hourly records.
type groups struct {
	vals      map[recordKey]*recordVal
	order     []recordKey
	instances map[string]string
}

func newGroups() *groups {
	return &groups{vals: map[recordKey]*recordVal{}, instances: map[string]string{}}
}

// instance is the record key of a resource URI; a resource reports several
// meters every hour, so its URI is hashed once per transaction.
func (g *groups) instance(uri string) string {
	inst, ok := g.instances[uri]
	if !ok {
		inst = InstanceKey(uri)
		g.instances[uri] = inst
	}
	return inst
}

// parts splits one logged event across its usage hours.
func (g *groups) parts(e *logged) ([]part, error) {
	total, err := money.ParseQuantity(e.qty)
	if err != nil {
		return nil, err
	}
	if e.level {
		// A level held for a time: the amount is level × hours.
		total = total.MulFrac(e.endUs-e.startUs, int64(time.Hour/time.Microsecond), partPlaces)
	}
	return split(total, clock.FromMicros(e.startUs), clock.FromMicros(e.endUs)), nil
}

// add adds one part of e to its record and returns the record's new
// quantity in this transaction.
func (g *groups) add(k recordKey, qty money.Quantity, e *logged) money.Quantity {
	v := g.vals[k]
	if v == nil {
		v = &recordVal{qty: money.Zero}
		g.vals[k] = v
		g.order = append(g.order, k)
	}
	v.qty = v.qty.Add(qty)
	v.events++
	v.resourceURI, v.location, v.tags, v.addl = e.uri, e.location, e.tags, e.addl
	return v.qty
}

// sorted is the records in index order: consecutive inserts land on the
// same pages of the record key index instead of all over it.
func (g *groups) sorted() []recordKey {
	slices.SortFunc(g.order, compareRecordKeys)
	return g.order
}

// Settle aggregates every batch acknowledged before until, so that records
// of reported hours before it are complete. Everything that reads records
// calls it first; it costs one short transaction when nothing is pending.
func (s *Service) Settle(ctx context.Context, until time.Time) error {
	u := clock.Micros(until)
	if until.IsZero() {
		u = math.MaxInt64
	}
	return drainer.Settle(ctx, func(ctx context.Context) (int, error) { return s.drain(ctx, u, true) })
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
	s.loop.Run(ctx, func(ctx context.Context) (n int64, err error) {
		err = s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(events), 0) FROM usage_log`).Scan(&n)
		return n, err
	}, logger, "usage aggregation failed")
}

// Backlog is the number of acknowledged events not yet aggregated, as this
// process counts them.
func (s *Service) Backlog() int64 { return s.loop.Backlog() }

// Aggregated counts the events this process has aggregated.
func (s *Service) Aggregated() int64 { return s.aggregated.Load() }
