package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// Selection picks forwarded usage of billing meters, as one invoice run
// takes it.
type Selection struct {
	// Billed selects the records finalization stamped with Period.
	// Otherwise the selection is what is still unbilled with usage days
	// before End, and from Start unless Late (a draft whose previous period
	// is finalized takes late usage too).
	Billed     bool
	Period     string
	Start, End time.Time
	Late       bool
	// DayFrom and DayTo, when set, narrow the selection to part of its
	// usage days, so that parts can be summed side by side.
	DayFrom, DayTo time.Time
	// ReceivedBefore, when set, leaves out what commerce received from then
	// on.
	ReceivedBefore time.Time
	// Subscriptions, when not nil, keeps only these charged subscriptions
	// (an empty list keeps nothing).
	Subscriptions []string
}

// DaySum is usage summed per rating series (registration, subscription and
// billing meter) and day.
type DaySum struct {
	Registration, Subscription, Meter string
	Day                               time.Time
	Quantity                          money.Quantity
	Series                            int64
}

// where selects a selection's records.
func (rs Selection) where() (string, []any) {
	var sb strings.Builder
	var args []any
	sb.WriteString(`series_id > 0`) // usage of a billing meter
	if rs.Billed {
		sb.WriteString(` AND billed_period = ?`)
		args = append(args, rs.Period)
	} else {
		// Period bounds are midnights, so filtering on the usage day selects
		// the same records as the usage hour would, through the rating index.
		sb.WriteString(` AND billed_period IS NULL AND usage_day_us < ?`)
		args = append(args, clock.Micros(rs.End))
		if !rs.Late {
			sb.WriteString(` AND usage_day_us >= ?`)
			args = append(args, clock.Micros(rs.Start))
		}
	}
	if !rs.DayFrom.IsZero() {
		sb.WriteString(` AND usage_day_us >= ?`)
		args = append(args, clock.Micros(rs.DayFrom))
	}
	if !rs.DayTo.IsZero() {
		sb.WriteString(` AND usage_day_us < ?`)
		args = append(args, clock.Micros(rs.DayTo))
	}
	if !rs.ReceivedBefore.IsZero() {
		sb.WriteString(` AND received_at_us < ?`)
		args = append(args, clock.Micros(rs.ReceivedBefore))
	}
	if rs.Subscriptions != nil {
		if len(rs.Subscriptions) == 0 {
			sb.WriteString(` AND 1 = 0`)
		} else {
			sb.WriteString(` AND series_id IN (SELECT id FROM rating_series WHERE charged_subscription_id IN (` + store.Placeholders(len(rs.Subscriptions)) + `))`)
			for _, s := range rs.Subscriptions {
				args = append(args, s)
			}
		}
	}
	return sb.String(), args
}

// DaySums sums a selection's records per rating series (registration,
// subscription and meter) and day. The database does the sums over each
// record's integer units in one ordered pass of commerce_usage_rating, whose
// keys are integers (day, series), so rating reads one row per group instead
// of one per record; memory grows with the groups, never with the records. A group holding records whose quantity has no
// exact integer units (more than nine decimals, or stored before the units
// column existed) adds those from their exact text, and a sum that would
// overflow SQLite's 64-bit integers falls back to summing every record's
// text in Go, so the result is exact either way.
//
// Outside a transaction the period is split at its middle day and the two
// halves are summed at once on two connections, each in a snapshot of its
// own: the scan is the cost of rating, and it is the part that uses both
// cores. The halves hold different days, so no record is summed twice.
// Inside a transaction (finalization) there is one connection and one pass.
func (l *Ledger) DaySums(ctx context.Context, q store.Querier, rs Selection) ([]DaySum, int64, error) {
	db, ok := q.(*store.DB)
	if !ok {
		out, n, err := aggregateTx(ctx, q, rs)
		sortDaySums(out)
		return out, n, err
	}
	mid := clock.DayStart(rs.Start.Add(rs.End.Sub(rs.Start) / 2))
	lo, hi := rs, rs
	lo.DayTo, hi.DayFrom = mid, mid
	type part struct {
		aggs []DaySum
		n    int64
		err  error
	}
	parts := make(chan part, 2)
	for _, p := range []Selection{lo, hi} {
		go func() {
			var r part
			r.err = db.Read(ctx, func(tx *store.Tx) error {
				var err error
				r.aggs, r.n, err = aggregateTx(ctx, tx, p)
				return err
			})
			parts <- r
		}()
	}
	var out []DaySum
	var n int64
	var firstErr error
	for range 2 {
		r := <-parts
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		out, n = append(out, r.aggs...), n+r.n
	}
	if firstErr != nil {
		return nil, 0, firstErr
	}
	sortDaySums(out)
	return out, n, nil
}

// aggregateTx sums a rate set on one connection, in no particular order.
func aggregateTx(ctx context.Context, q store.Querier, rs Selection) ([]DaySum, int64, error) {
	if tx, ok := q.(*store.Tx); ok && tx.DB().Dialect == store.Postgres {
		// PostgreSQL's default 4 MB of work memory spills the grouping of
		// a month to disk; give this transaction room to hash it in memory.
		// JIT compilation costs more than it saves on this one pass.
		if _, err := tx.ExecContext(ctx, `SET LOCAL work_mem = '256MB'`); err != nil {
			return nil, 0, err
		}
		if _, err := tx.ExecContext(ctx, `SET LOCAL jit = off`); err != nil {
			return nil, 0, err
		}
	}
	out, n, err := aggregateInStore(ctx, q, rs)
	if err != nil && isIntegerOverflow(err) {
		return aggregateRecords(ctx, q, rs)
	}
	return out, n, err
}

func isIntegerOverflow(err error) bool {
	return strings.Contains(err.Error(), "integer overflow")
}

func aggregateInStore(ctx context.Context, q store.Querier, rs Selection) ([]DaySum, int64, error) {
	series, err := loadSeries(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	where, args := rs.where()
	rows, err := q.QueryContext(ctx, `SELECT series_id, usage_day_us, SUM(billing_units), COUNT(billing_units), COUNT(*)
		FROM commerce_usage WHERE `+where+` GROUP BY usage_day_us, series_id`, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []DaySum
	var inexact []int // groups with records that have no integer units
	var n int64
	var units sql.RawBytes
	for rows.Next() {
		var id, day, withUnits, count int64
		if err := rows.Scan(&id, &day, &units, &withUnits, &count); err != nil {
			return nil, 0, err
		}
		k, ok := series[id]
		if !ok {
			return nil, 0, fmt.Errorf("forwarded usage names rating series %d, which does not exist", id)
		}
		a := DaySum{Registration: k.reg, Subscription: k.sub, Meter: k.meter, Day: clock.FromMicros(day), Series: id}
		if withUnits > 0 {
			if a.Quantity, err = money.FromUnits(units); err != nil {
				return nil, 0, fmt.Errorf("forwarded usage units: %w", err)
			}
		}
		if withUnits < count {
			inexact = append(inexact, len(out))
		}
		out = append(out, a)
		n += count
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	rows.Close()
	for _, i := range inexact {
		if err := addExact(ctx, q, rs, &out[i]); err != nil {
			return nil, 0, err
		}
	}
	return out, n, nil
}

type seriesNames struct{ reg, sub, meter string }

// loadSeries reads the rating series, a row per registration, subscription
// and billing meter that ever had usage: far fewer than records.
func loadSeries(ctx context.Context, q store.Querier) (map[int64]seriesNames, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, registration_uid, charged_subscription_id, billing_meter_id FROM rating_series`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]seriesNames{}
	for rows.Next() {
		var id int64
		var k seriesNames
		if err := rows.Scan(&id, &k.reg, &k.sub, &k.meter); err != nil {
			return nil, err
		}
		out[id] = k
	}
	return out, rows.Err()
}

// addExact adds to a group the records the store could not sum as units.
func addExact(ctx context.Context, q store.Querier, rs Selection, a *DaySum) error {
	where, args := rs.where()
	args = append(args, clock.Micros(a.Day), a.Series)
	rows, err := q.QueryContext(ctx, `SELECT billing_quantity FROM commerce_usage WHERE `+where+`
		AND usage_day_us = ? AND series_id = ? AND billing_units IS NULL`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	sum := money.Sum{}
	sum.Add(a.Quantity)
	var qty sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&qty); err != nil {
			return err
		}
		if err := sum.AddText(qty); err != nil {
			return fmt.Errorf("forwarded usage quantity: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	a.Quantity = sum.Quantity()
	return nil
}

// aggregateRecords streams every record of a rate set and sums its exact
// text in Go: the path for sums too large for the store's integers.
func aggregateRecords(ctx context.Context, q store.Querier, rs Selection) ([]DaySum, int64, error) {
	where, args := rs.where()
	rows, err := q.QueryContext(ctx, `SELECT registration_uid, charged_subscription_id, billing_meter_id, usage_day_us, billing_quantity FROM commerce_usage WHERE `+where, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	type key struct {
		reg, sub, meter string
		day             int64
	}
	sums := map[key]*money.Sum{}
	var qty sql.RawBytes
	var n int64
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.reg, &k.sub, &k.meter, &k.day, &qty); err != nil {
			return nil, 0, err
		}
		s := sums[k]
		if s == nil {
			s = &money.Sum{}
			sums[k] = s
		}
		if err := s.AddText(qty); err != nil {
			return nil, 0, fmt.Errorf("forwarded usage quantity: %w", err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	out := make([]DaySum, 0, len(sums))
	for k, s := range sums {
		out = append(out, DaySum{Registration: k.reg, Subscription: k.sub, Meter: k.meter, Day: clock.FromMicros(k.day), Quantity: s.Quantity()})
	}
	return out, n, nil
}

// sortDaySums orders groups as rating consumes them: per subscription and
// meter in usage order, so tiers accumulate across the period's days.
func sortDaySums(out []DaySum) {
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Subscription != b.Subscription {
			return a.Subscription < b.Subscription
		}
		if a.Meter != b.Meter {
			return a.Meter < b.Meter
		}
		if !a.Day.Equal(b.Day) {
			return a.Day.Before(b.Day)
		}
		return a.Registration < b.Registration
	})
}

// Count counts a selection's records.
func (l *Ledger) Count(ctx context.Context, q store.Querier, rs Selection) (int64, error) {
	where, args := rs.where()
	var n int64
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM commerce_usage WHERE `+where, args...).Scan(&n)
	return n, err
}

// EarliestDay is the first usage day of a selection (ok false when it is
// empty): one index probe.
func (l *Ledger) EarliestDay(ctx context.Context, q store.Querier, rs Selection) (day time.Time, ok bool, err error) {
	where, args := rs.where()
	var first sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MIN(usage_day_us) FROM commerce_usage WHERE `+where, args...).Scan(&first); err != nil {
		return time.Time{}, false, err
	}
	return clock.FromMicros(first.Int64), first.Valid, nil
}

// Row is one forwarded record as a reconciliation file lists it. Its byte
// slices are valid only until the callback that receives it returns.
type Row struct {
	Registration, Subscription, Meter []byte
	HourUs                            int64
	Quantity                          []byte // the billing quantity's exact text
	ResourceURI, LocalMeter, LocalSub []byte
	Location, Tags                    []byte
}

// Rows streams a selection's records in reconciliation order: charged
// subscription, billing meter, usage day, registration, resource, local
// meter and local subscription, so that a reader groups them in one pass.
func (l *Ledger) Rows(ctx context.Context, q store.Querier, rs Selection, fn func(*Row) error) error {
	where, args := rs.where()
	rows, err := q.QueryContext(ctx, `SELECT registration_uid, charged_subscription_id, billing_meter_id, usage_hour_us, billing_quantity, resource_uri,
		local_meter_key, local_subscription_id, location, tags FROM commerce_usage WHERE `+where+`
		ORDER BY charged_subscription_id, billing_meter_id, usage_day_us, registration_uid, resource_uri, local_meter_key, local_subscription_id`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var reg, sub, mtr, uri, local, localSub, loc, tags, qty sql.RawBytes
	var r Row
	for rows.Next() {
		if err := rows.Scan(&reg, &sub, &mtr, &r.HourUs, &qty, &uri, &local, &localSub, &loc, &tags); err != nil {
			return err
		}
		r.Registration, r.Subscription, r.Meter, r.Quantity, r.ResourceURI, r.LocalMeter, r.LocalSub, r.Location, r.Tags = reg, sub, mtr, qty, uri, local, localSub, loc, tags
		if err := fn(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// EarliestUnbilled is the first usage day of unbilled usage, before
// before when it is set (ok false when there is none).
func (l *Ledger) EarliestUnbilled(ctx context.Context, q store.Querier, before time.Time) (day time.Time, ok bool, err error) {
	var early sql.NullInt64
	if before.IsZero() {
		err = q.QueryRowContext(ctx, `SELECT MIN(usage_day_us) FROM commerce_usage WHERE billed_period IS NULL`).Scan(&early)
	} else {
		err = q.QueryRowContext(ctx, `SELECT MIN(usage_day_us) FROM commerce_usage WHERE billed_period IS NULL AND usage_day_us < ?`, clock.Micros(before)).Scan(&early)
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return clock.FromMicros(early.Int64), early.Valid, nil
}

// MarkBilled stamps period on the unbilled usage of days before end that
// commerce received before receivedBefore: what finalizing period bills.
func (l *Ledger) MarkBilled(ctx context.Context, tx *store.Tx, period string, end, receivedBefore time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE commerce_usage SET billed_period = ? WHERE billed_period IS NULL AND usage_day_us < ? AND received_at_us < ?`,
		period, clock.Micros(end), clock.Micros(receivedBefore)); err != nil {
		return fmt.Errorf("stamp usage: %w", err)
	}
	return nil
}

// PurgeBilled deletes forwarded usage billed in periods before before
// (YYYY-MM), in batches along the (billed period, usage hour) index.
// On PostgreSQL it first drops the monthly partitions that hold nothing
// else, which costs the same for a month of a thousand records as of a
// billion.
func (l *Ledger) PurgeBilled(ctx context.Context, before string) (int64, error) {
	var dropped int64
	if l.db.Dialect == store.Postgres {
		var err error
		if dropped, err = l.dropBilledPartitions(ctx, before); err != nil {
			return dropped, err
		}
	}
	n, err := l.db.DeleteInBatches(ctx, `DELETE FROM commerce_usage WHERE id IN (SELECT id FROM commerce_usage WHERE billed_period IS NOT NULL AND billed_period < ? LIMIT 5000)`, before)
	return dropped + n, err
}

// LocalOnly streams the usage of local-only meters (no billing meter) in
// usage hours [start, end): charged subscription, local meter key and the
// quantity's exact text, valid until fn returns.
func (l *Ledger) LocalOnly(ctx context.Context, q store.Querier, start, end time.Time, fn func(sub, meterKey string, qty []byte) error) error {
	// The usage-day bounds say the same as the hour bounds; on PostgreSQL
	// they let the query skip the months' partitions outside them.
	return streamQuantities(ctx, q, fn, `SELECT charged_subscription_id, local_meter_key, quantity FROM commerce_usage
		WHERE billing_meter_id = '' AND usage_hour_us >= ? AND usage_hour_us < ? AND usage_day_us >= ? AND usage_day_us <= ?`,
		clock.Micros(start), clock.Micros(end), clock.Micros(clock.DayStart(start)), clock.Micros(clock.DayStart(end.Add(-time.Microsecond))))
}

// BilledIn streams the usage of billing meters with usage days in [start,
// end) that periods from through to billed: charged subscription, billing
// meter and the billing quantity's exact text, valid until fn returns.
// Usage is never billed before its own period, so from is that period and
// the rating index bounds the scan.
func (l *Ledger) BilledIn(ctx context.Context, q store.Querier, from, to string, start, end time.Time, fn func(sub, meter string, qty []byte) error) error {
	return streamQuantities(ctx, q, fn, `SELECT charged_subscription_id, billing_meter_id, billing_quantity FROM commerce_usage
		WHERE series_id > 0 AND billed_period >= ? AND billed_period <= ? AND usage_day_us >= ? AND usage_day_us < ?`,
		from, to, clock.Micros(start), clock.Micros(end))
}

// streamQuantities runs a query of (subscription, meter, quantity text)
// rows and hands each to fn, the quantity's bytes valid until fn returns.
func streamQuantities(ctx context.Context, q store.Querier, fn func(sub, meter string, qty []byte) error, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var sub, mtr string
	var qty sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&sub, &mtr, &qty); err != nil {
			return err
		}
		if err := fn(sub, mtr, qty); err != nil {
			return err
		}
	}
	return rows.Err()
}

// daySumsByPeriod sums usage of billing meters in [from, to) (midnights) per
// rating series and day through the rating index (DaySums): one selection
// for what is unbilled (period "") and one per period from from's to
// now's that may have billed it (late usage is billed on a later
// invoice). subscriptions nil selects every one.
func (l *Ledger) daySumsByPeriod(ctx context.Context, subscriptions []string, from, to, now time.Time, fn func(period string, d DaySum)) error {
	if err := l.Settle(ctx); err != nil {
		return err
	}
	sels := []Selection{{Start: from, End: to, Subscriptions: subscriptions}}
	periods := []string{""}
	for p := clock.MonthStart(from); !p.After(now); p = clock.NextMonth(p) {
		sels = append(sels, Selection{Billed: true, Period: clock.Period(p), Start: from, End: to, DayFrom: from, DayTo: to, Subscriptions: subscriptions})
		periods = append(periods, clock.Period(p))
	}
	for i, sel := range sels {
		parts, _, err := l.DaySums(ctx, l.db, sel)
		if err != nil {
			return err
		}
		for _, d := range parts {
			fn(periods[i], d)
		}
	}
	return nil
}

// MeterDays sums forwarded usage of billing meters per meter and usage day
// over [from, to), billed or not, for subscriptions (nil: every one): what
// a chart of usage over time needs, read as sums per series and day, not a
// row per record, so a page that charts two months stays cheap however
// many records they hold.
func (l *Ledger) MeterDays(ctx context.Context, subscriptions []string, from, to, now time.Time) ([]DaySum, error) {
	type key struct {
		meter string
		day   int64
	}
	sums := map[key]money.Quantity{}
	err := l.daySumsByPeriod(ctx, subscriptions, from, to, now, func(_ string, d DaySum) {
		k := key{d.Meter, clock.Micros(d.Day)}
		if q, ok := sums[k]; ok {
			sums[k] = q.Add(d.Quantity)
		} else {
			sums[k] = d.Quantity
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]DaySum, 0, len(sums))
	for k, q := range sums {
		out = append(out, DaySum{Meter: k.meter, Day: clock.FromMicros(k.day), Quantity: q})
	}
	sortDaySums(out)
	return out, nil
}

// DailyTotals sums forwarded usage per subscription, meter and usage day
// over [from, to) (midnights) for subscriptions (nil: every one), split by
// the period whose invoice billed it ("" while unbilled): what a usage page
// charts and tables. Billing meters are summed per rating series and day
// through the rating index (DaySums), one selection for what is unbilled
// and one per period that may have billed the range (late usage is billed
// on a later invoice); meters without a billing meter, which rating never
// reads, are summed from their own index. Quantities are in the billing
// meter's unit, or the local meter's for those without one.
func (l *Ledger) DailyTotals(ctx context.Context, subscriptions []string, from, to, now time.Time) ([]ChargedTotal, error) {
	if subscriptions != nil && len(subscriptions) == 0 {
		return nil, nil
	}
	type key struct {
		sub, meter, local string
		day               int64
	}
	out := map[key]*ChargedTotal{}
	add := func(k key, period string, q money.Quantity) {
		t := out[k]
		if t == nil {
			t = &ChargedTotal{SubscriptionID: k.sub, BillingMeterID: k.meter, LocalMeterID: k.local, Day: clock.FromMicros(k.day), Quantity: money.Zero}
			out[k] = t
		}
		t.Quantity = t.Quantity.Add(q)
		t.addInvoiced(period, q)
	}
	if err := l.daySumsByPeriod(ctx, subscriptions, from, to, now, func(period string, d DaySum) {
		add(key{sub: d.Subscription, meter: d.Meter, day: clock.Micros(d.Day)}, period, d.Quantity)
	}); err != nil {
		return nil, err
	}
	args := []any{clock.Micros(from), clock.Micros(to), clock.Micros(from), clock.Micros(clock.DayStart(to.Add(-time.Microsecond)))}
	q := `SELECT charged_subscription_id, local_meter_key, usage_day_us, quantity, billed_period FROM commerce_usage
		WHERE billing_meter_id = '' AND usage_hour_us >= ? AND usage_hour_us < ? AND usage_day_us >= ? AND usage_day_us <= ?`
	if subscriptions != nil {
		q += ` AND charged_subscription_id IN (` + store.Placeholders(len(subscriptions)) + `)`
		for _, s := range subscriptions {
			args = append(args, s)
		}
	}
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var sub, local string
		var day int64
		var qty money.Quantity
		var closed sql.NullString // the period whose finalization closed it (it bills nothing)
		if err := rows.Scan(&sub, &local, &day, &qty, &closed); err != nil {
			return nil, err
		}
		add(key{sub: sub, local: local, day: day}, closed.String, qty)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	res := make([]ChargedTotal, 0, len(out))
	for _, t := range out {
		// Periods in order, what is not billed yet last.
		sort.Slice(t.Invoiced, func(i, j int) bool {
			a, b := t.Invoiced[i].Period, t.Invoiced[j].Period
			return a != "" && (b == "" || a < b)
		})
		res = append(res, *t)
	}
	sort.Slice(res, func(i, j int) bool {
		a, b := res[i], res[j]
		switch {
		case a.SubscriptionID != b.SubscriptionID:
			return a.SubscriptionID < b.SubscriptionID
		case a.BillingMeterID != b.BillingMeterID:
			return a.BillingMeterID < b.BillingMeterID
		case a.LocalMeterID != b.LocalMeterID:
			return a.LocalMeterID < b.LocalMeterID
		}
		return a.Day.Before(b.Day)
	})
	return res, nil
}
