package usage

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/drainer"
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
		if s.db.Dialect == store.Postgres && settle {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, intakeLock); err != nil {
				return err
			}
		}
		groups := map[recordKey]*recordVal{}
		instances := map[string]string{}
		var order []recordKey
		ids, err := drainer.Take(ctx, tx, "usage_log", "received_us < ?", until, drainRows, settle, func(_, received int64, payload []byte) error {
			evs, err := decodeLog(payload)
			if err != nil {
				return err
			}
			reported := clock.Micros(clock.HourStart(clock.FromMicros(received)))
			for i := range evs {
				if err := addToGroups(groups, &order, instances, reported, &evs[i]); err != nil {
					return err
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
		// In index order, consecutive inserts land on the same pages of
		// the record key index instead of all over it.
		slices.SortFunc(order, compareRecordKeys)
		if err := s.addRecords(ctx, tx, order, groups); err != nil {
			return err
		}
		if err := drainer.Trim(ctx, tx, "usage_log", ids); err != nil {
			return err
		}
		batches = len(ids)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if batches > 0 {
		s.loop.Drained(int64(events))
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
	var pending int64
	_ = s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(events), 0) FROM usage_log`).Scan(&pending)
	s.loop.Run(ctx, pending, logger, "usage aggregation failed")
}

// Backlog is the number of acknowledged events not yet aggregated, as this
// process counts them.
func (s *Service) Backlog() int64 { return s.loop.Backlog() }

// Aggregated counts the events this process has aggregated.
func (s *Service) Aggregated() int64 { return s.aggregated.Load() }
