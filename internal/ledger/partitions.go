package ledger

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// On PostgreSQL, commerce_usage is partitioned by usage month (migration
// 0019): one partition per month, named commerce_usage_yYYYYmMM, and a
// default partition for anything else. Partitions are created ahead of the
// records that fill them, for the previous, current and next month by the
// clock, so that creating one never moves rows; and retention drops a month
// whose records are all billed before the cut-off instead of deleting them
// row by row. SQLite keeps one table.

// partitionLock serialises partition changes between commerce instances.
const partitionLock = 7261004117

// partitionDDLWait bounds how long creating or dropping a partition waits
// for the table lock that it needs: a long reader (an export, a rating scan)
// holds a lock it conflicts with, and a DDL statement waiting in the queue
// would hold up every statement behind it. A partition that cannot be made
// now is made on a later try; its records meanwhile go to the default
// partition, and stay correct there.
const partitionDDLWait = "2s"

// monthPartitions remembers the months whose partitions this process has
// made or found.
type monthPartitions struct {
	mu    sync.Mutex
	known map[int64]bool
	// retryAt holds off the next try after a failure, so that a table lock
	// held by a long reader costs materialisation one wait a minute, not
	// one per batch.
	retryAt time.Time
}

func partitionName(month time.Time) string {
	return fmt.Sprintf("commerce_usage_y%04dm%02d", month.Year(), int(month.Month()))
}

// monthOfPartition reads the month back from a partition's name.
func monthOfPartition(name string) (time.Time, bool) {
	var y, m int
	if _, err := fmt.Sscanf(name, "commerce_usage_y%04dm%02d", &y, &m); err != nil || m < 1 || m > 12 {
		return time.Time{}, false
	}
	return time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC), true
}

// EnsurePartitions makes the partitions of the previous, current and next
// month by commerce's clock, where they are missing (PostgreSQL; nothing on
// SQLite). Materialisation calls it before it writes a batch (a map lookup
// once the months are known), in a transaction of its own and before its
// own touches the table. Only the clock decides: a partition per usage
// month a record names would let one stack whose clock is wrong, or
// hostile, make hundreds of partitions (a test world of usage over decades
// made 299, and planning over them slowed every query of the table); such
// records go to the default partition.
func (l *Ledger) EnsurePartitions(ctx context.Context) error {
	if l.db.Dialect != store.Postgres {
		return nil
	}
	l.parts.mu.Lock()
	wait := time.Now().Before(l.parts.retryAt)
	l.parts.mu.Unlock()
	if wait {
		return nil
	}
	this := clock.MonthStart(l.clock.Now())
	for _, m := range []time.Time{this.AddDate(0, -1, 0), this, clock.NextMonth(this)} {
		if err := l.ensurePartition(ctx, m); err != nil {
			l.parts.mu.Lock()
			l.parts.retryAt = time.Now().Add(time.Minute)
			l.parts.mu.Unlock()
			return err
		}
	}
	return nil
}

func (l *Ledger) ensurePartition(ctx context.Context, month time.Time) error {
	key := clock.Micros(month)
	l.parts.mu.Lock()
	known := l.parts.known[key]
	l.parts.mu.Unlock()
	if known {
		return nil
	}
	name := partitionName(month)
	lo, hi := clock.Micros(month), clock.Micros(clock.NextMonth(month))
	err := l.db.Write(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, `SET LOCAL lock_timeout = '`+partitionDDLWait+`'`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(partitionLock)); err != nil {
			return err
		}
		var exists, stray bool
		if err := tx.QueryRowContext(ctx, `SELECT to_regclass(?) IS NOT NULL`, name).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		// Records of the month already in the default partition (a stack
		// whose clock ran ahead) would have to move; they stay where they
		// are, and the month stays in the default partition.
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM commerce_usage_default WHERE usage_day_us >= ? AND usage_day_us < ?)`, lo, hi).Scan(&stray); err != nil {
			return err
		}
		if stray {
			l.logger.Warn("forwarded usage of a month arrived before its partition was made; the month stays in the default partition", "month", clock.Period(month))
			return nil
		}
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE TABLE %s PARTITION OF commerce_usage FOR VALUES FROM (%d) TO (%d)`, name, lo, hi))
		return err
	})
	if err != nil {
		return fmt.Errorf("make partition %s: %w", name, err)
	}
	l.parts.mu.Lock()
	if l.parts.known == nil {
		l.parts.known = map[int64]bool{}
	}
	l.parts.known[key] = true
	l.parts.mu.Unlock()
	return nil
}

// dropBilledPartitions drops the monthly partitions of months before
// before (YYYY-MM) whose every record was billed in a period before it, and
// answers how many records went with them. A month with records still
// unbilled, or billed from before on, is left for the row-by-row purge.
func (l *Ledger) dropBilledPartitions(ctx context.Context, before string) (int64, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'commerce_usage'::regclass`)
	if err != nil {
		return 0, err
	}
	var months []time.Time
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return 0, err
		}
		if m, ok := monthOfPartition(name); ok && clock.Period(m) < before {
			months = append(months, m)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var dropped int64
	for _, m := range months {
		name := partitionName(m)
		err := l.db.Write(ctx, func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, `SET LOCAL lock_timeout = '`+partitionDDLWait+`'`); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(partitionLock)); err != nil {
				return err
			}
			// Taken before counting, so that no record lands in the month
			// between the count and the drop.
			if _, err := tx.ExecContext(ctx, `LOCK TABLE `+name+` IN SHARE MODE`); err != nil {
				return err
			}
			var n, kept int64
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(*) FILTER (WHERE billed_period IS NULL OR billed_period >= ?) FROM `+name, before).Scan(&n, &kept); err != nil {
				return err
			}
			if kept > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `DROP TABLE `+name); err != nil {
				return err
			}
			dropped += n
			return nil
		})
		if err != nil {
			if isLockTimeout(err) {
				// Tried again at the next purge; the rows are deleted one by
				// one meanwhile if the purge gets to them.
				l.logger.Info("a billed month's partition is in use; it will be dropped at a later purge", "partition", name)
				continue
			}
			return dropped, fmt.Errorf("drop partition %s: %w", name, err)
		}
		l.parts.mu.Lock()
		delete(l.parts.known, clock.Micros(m))
		l.parts.mu.Unlock()
	}
	return dropped, nil
}

func isLockTimeout(err error) bool {
	return strings.Contains(err.Error(), "SQLSTATE 55P03")
}
