// Package drainer runs the background half of stackbill's
// acknowledge-from-a-log designs: the stack's intake (events logged, then
// aggregated into hourly records) and commerce's bridge ingestion (records
// logged, then materialised for billing). The hot path acknowledges once a
// batch is in its log; a Loop drains the log behind it and gives way to the
// hot path while batches keep coming, for a bounded time and backlog, so
// that a burst is acknowledged at full speed. Readers never wait for the
// loop: they settle what they read themselves.
package drainer

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/stackbill/stackbill/internal/store"
)

// idleGap is how long the hot path must have been quiet before the loop
// takes the writer: producers leave gaps of a few milliseconds between
// batches while they send and the server parses.
const idleGap = 100 * time.Millisecond

// recount is how often Run reads the backlog from the log itself.
const recount = 10 * time.Second

// Loop drains a log in the background.
type Loop struct {
	drain      func(ctx context.Context) (int, error)
	delay      time.Duration
	maxBacklog int64
	recount    time.Duration

	inflight, lastEnd, backlog, drained atomic.Int64
	wake                                chan struct{}
}

// New builds a Loop. drain takes one transaction's worth of the log and
// reports how many log rows it took (0: nothing is left that it may take).
// delay is how long the loop gives way while batches keep arriving, and
// maxBacklog the backlog at which it stops giving way.
func New(drain func(ctx context.Context) (int, error), delay time.Duration, maxBacklog int64) *Loop {
	return &Loop{drain: drain, delay: delay, maxBacklog: maxBacklog, recount: recount, wake: make(chan struct{}, 1)}
}

// Begin marks a batch in flight on the hot path; the returned function ends
// it.
func (l *Loop) Begin() (end func()) {
	l.inflight.Add(1)
	return func() {
		l.lastEnd.Store(time.Now().UnixNano())
		l.inflight.Add(-1)
	}
}

// Logged counts n more units (events, records) waiting in the log and wakes
// the loop.
func (l *Loop) Logged(n int64) {
	l.backlog.Add(n)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Drained counts n units taken from the log, by the loop or by a reader
// that settled.
func (l *Loop) Drained(n int64) {
	l.backlog.Add(-n)
	l.drained.Add(n)
}

// Total is the number of units this process has drained since it started.
func (l *Loop) Total() int64 { return l.drained.Load() }

// Backlog is the number of units waiting in the log, as this process counts
// them (Run starts from what the log holds).
func (l *Loop) Backlog() int64 { return l.backlog.Load() }

func (l *Loop) busy() bool {
	return l.inflight.Load() > 0 || time.Since(time.Unix(0, l.lastEnd.Load())) < idleGap
}

// Run drains until ctx ends. count reads what the log holds; the backlog is
// set from it at start and every few seconds after, because this process's
// own count cannot see batches that another instance on the same database
// logged or drained (several commerce instances, or the demo's seeding
// instance), and would drift without bound. failure is the message logged
// when a drain fails.
func (l *Loop) Run(ctx context.Context, count func(context.Context) (int64, error), logger *slog.Logger, failure string) {
	var counted time.Time
	recount := func() {
		if n, err := count(ctx); err == nil {
			l.backlog.Store(n)
		}
		counted = time.Now()
	}
	recount()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var since time.Time
	for ctx.Err() == nil {
		if time.Since(counted) >= l.recount {
			recount()
		}
		if l.busy() && l.backlog.Load() < l.maxBacklog {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) < l.delay {
				select {
				case <-ctx.Done():
					return
				case <-time.After(5 * time.Millisecond):
				}
				continue
			}
		}
		n, err := l.drain(ctx)
		if err != nil {
			if ctx.Err() == nil && logger != nil {
				logger.Error(failure, "err", err)
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
		since = time.Time{}
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-tick.C:
		}
	}
}

// Take reads up to limit rows (id, received_us, payload) of a log table that
// match where (one placeholder, bound to arg), in id order, inside tx, and
// hands each to each. On PostgreSQL it locks what it reads: a settling
// reader waits for rows another instance is draining (they are gone once it
// commits), the background loop skips them. It returns the ids it read, for
// Trim in the same transaction.
func Take(ctx context.Context, tx *store.Tx, table, where string, arg any, limit int, settle bool,
	each func(id, received int64, payload []byte) error) ([]any, error) {
	q := `SELECT id, received_us, payload FROM ` + table + ` WHERE ` + where + ` ORDER BY id LIMIT ?`
	if tx.DB().Dialect == store.Postgres {
		if settle {
			q += ` FOR UPDATE`
		} else {
			q += ` FOR UPDATE SKIP LOCKED`
		}
	}
	rows, err := tx.QueryContext(ctx, q, arg, limit)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	var ids []any
	for rows.Next() {
		var id, received int64
		var payload []byte
		if err := rows.Scan(&id, &received, &payload); err != nil {
			return nil, err
		}
		if err := each(id, received, payload); err != nil {
			return nil, fmt.Errorf("%s row %d: %w", table, id, err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Trim deletes the log rows Take read, in the transaction that used them, so
// that each is drained exactly once.
func Trim(ctx context.Context, tx *store.Tx, table string, ids []any) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE id IN (`+store.Placeholders(len(ids))+`)`, ids...); err != nil {
		return fmt.Errorf("trim %s: %w", table, err)
	}
	return nil
}

// Settle calls drain until a call takes nothing.
func Settle(ctx context.Context, drain func(ctx context.Context) (int, error)) error {
	for {
		n, err := drain(ctx)
		if err != nil || n == 0 {
			return err
		}
	}
}
