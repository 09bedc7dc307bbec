// Package ledger owns commerce's forwarded usage: the log that ingestion
// appends each acknowledged batch to, the rows materialised from it
// (commerce_usage), the rating series, where each cloud's forwarding stream
// stands and the forwarded-record keys (ingestion's deduplication), and the
// per-hour ingestion counters. Ingestion appends mapped batches; billing
// asks it for sums per series and day, streams of rows for reconciliation
// files and statements, and marks what an invoice billed; the portal and
// the API read totals and ingestion health. No other package names its
// tables.
package ledger

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"math"
	"sort"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/drainer"
	"github.com/stackbill/stackbill/internal/idempotency"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// Ledger is commerce's forwarded usage.
type Ledger struct {
	db     *store.DB
	clock  *clock.Clock
	logger *slog.Logger
	series seriesCache
	parts  monthPartitions
	dedup  idempotency.Keys
	// loop materialises the log behind ingestion, giving way to a stack
	// that is catching up, as intake's aggregation does.
	loop *drainer.Loop
}

// New builds the ledger.
func New(db *store.DB, c *clock.Clock, logger *slog.Logger) *Ledger {
	l := &Ledger{db: db, clock: c, logger: logger, dedup: idempotency.New(db, "commerce_dedup")}
	l.loop = drainer.New(func(ctx context.Context) (int, error) {
		n, err := l.drain(ctx, false, math.MaxInt64)
		if err == nil {
			_, err = l.dedup.Freeze(ctx, db)
		}
		return n, err
	}, MaterializeDelay, maxCommerceBacklog)
	return l
}

// HourCount is how many records were received in one hour.
type HourCount struct {
	Hour    time.Time `json:"hour"`
	Records int64     `json:"records"`
	Batches int64     `json:"batches"`
}

// ChargedTotal is forwarded usage summed per ledger.Charged subscription, billing
// meter (empty for local-only meters) and usage day.
type ChargedTotal struct {
	SubscriptionID string         `json:"subscriptionId"`
	BillingMeterID string         `json:"billingMeterId"`
	LocalMeterID   string         `json:"localMeterId"`
	Day            time.Time      `json:"day"`
	Quantity       money.Quantity `json:"quantity"`
	Mapped         bool           `json:"mapped"`
	// Invoiced splits Quantity by the period whose invoice billed it ("":
	// not billed yet): a day's usage that arrived after its month was
	// finalized is billed as late usage on a later invoice.
	Invoiced []PeriodQuantity `json:"invoiced,omitempty"`
}

// PeriodQuantity is a quantity billed on one period's invoice.
type PeriodQuantity struct {
	Period   string         `json:"period,omitempty"`
	Quantity money.Quantity `json:"quantity"`
}

// addInvoiced adds q to the part of t billed in period.
func (t *ChargedTotal) addInvoiced(period string, q money.Quantity) {
	for i := range t.Invoiced {
		if t.Invoiced[i].Period == period {
			t.Invoiced[i].Quantity = t.Invoiced[i].Quantity.Add(q)
			return
		}
	}
	t.Invoiced = append(t.Invoiced, PeriodQuantity{Period: period, Quantity: q})
}

// Totals sums forwarded usage for the given ledger.Charged subscriptions over
// [from, to) of usage time. Exact decimal sums are done here, not in SQL.
func (l *Ledger) Totals(ctx context.Context, subscriptions []string, from, to time.Time) ([]ChargedTotal, error) {
	if len(subscriptions) == 0 {
		return nil, nil
	}
	if err := l.Settle(ctx); err != nil {
		return nil, err
	}
	// The usage-day bounds say the same as the hour bounds; on PostgreSQL
	// they let the query skip the months' partitions outside them.
	args := []any{clock.Micros(from), clock.Micros(to), clock.Micros(clock.DayStart(from)), clock.Micros(clock.DayStart(to.Add(-time.Microsecond)))}
	for _, s := range subscriptions {
		args = append(args, s)
	}
	rows, err := l.db.QueryContext(ctx, `SELECT charged_subscription_id, billing_meter_id, local_meter_key, usage_hour_us, billing_quantity, quantity, mapped, billed_period FROM commerce_usage
		WHERE usage_hour_us >= ? AND usage_hour_us < ? AND usage_day_us >= ? AND usage_day_us <= ? AND charged_subscription_id IN (`+store.Placeholders(len(subscriptions))+`)
		ORDER BY charged_subscription_id, billing_meter_id, local_meter_key, usage_hour_us`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ChargedTotal
	for rows.Next() {
		var t ChargedTotal
		var hour int64
		var bq, q money.Quantity
		var billed sql.NullString
		if err := rows.Scan(&t.SubscriptionID, &t.BillingMeterID, &t.LocalMeterID, &hour, &bq, &q, &t.Mapped, &billed); err != nil {
			return nil, err
		}
		t.Day = clock.DayStart(clock.FromMicros(hour))
		t.Quantity = bq
		if t.BillingMeterID == "" {
			t.Quantity = q
		}
		if n := len(out); n > 0 && out[n-1].SubscriptionID == t.SubscriptionID && out[n-1].BillingMeterID == t.BillingMeterID &&
			out[n-1].LocalMeterID == t.LocalMeterID && out[n-1].Day.Equal(t.Day) && out[n-1].Mapped == t.Mapped {
			out[n-1].Quantity = out[n-1].Quantity.Add(t.Quantity)
			out[n-1].addInvoiced(billed.String, t.Quantity)
			continue
		}
		t.addInvoiced(billed.String, t.Quantity)
		out = append(out, t)
	}
	return out, rows.Err()
}

// StampHealth is what commerce has received from one registered stamp.
type StampHealth struct {
	RegistrationUID string      `json:"registrationUid"`
	CloudID         string      `json:"cloudId"`
	LastReceived    time.Time   `json:"lastReceived"`
	Records24h      int64       `json:"records24h"`
	Duplicates24h   int64       `json:"duplicates24h"`
	Batches24h      int64       `json:"batches24h"`
	Records         int64       `json:"records"`
	Hours           []HourCount `json:"hours"`
}

// Health reports, per stamp, what was received and when, with hourly counts
// from since on; the last 24 hours are summed separately.
func (l *Ledger) Health(ctx context.Context, since time.Time) ([]StampHealth, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT registration_uid, cloud_id, hour_us, records, duplicates, batches, last_at_us FROM ingest_hours ORDER BY registration_uid, hour_us`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	day := clock.Micros(l.clock.Now().Add(-24 * time.Hour))
	var out []StampHealth
	for rows.Next() {
		var uid, cloud string
		var hour, recs, dups, batches, last int64
		if err := rows.Scan(&uid, &cloud, &hour, &recs, &dups, &batches, &last); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || out[n-1].RegistrationUID != uid {
			out = append(out, StampHealth{RegistrationUID: uid, CloudID: cloud})
		}
		h := &out[len(out)-1]
		h.Records += recs
		if t := clock.FromMicros(last); t.After(h.LastReceived) {
			h.LastReceived = t
		}
		if hour >= day {
			h.Records24h, h.Duplicates24h, h.Batches24h = h.Records24h+recs, h.Duplicates24h+dups, h.Batches24h+batches
		}
		if hour >= clock.Micros(since) {
			h.Hours = append(h.Hours, HourCount{Hour: clock.FromMicros(hour), Records: recs, Batches: batches})
		}
	}
	return out, rows.Err()
}

// Stored counts the records materialised for a stamp: what reached billing,
// each exactly once.
func (l *Ledger) Stored(ctx context.Context, cloudID string) (int64, error) {
	var n int64
	err := l.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM commerce_usage WHERE cloud_id = ?`, cloudID).Scan(&n)
	return n, err
}

// HourRecord is one forwarded record: one hour of one resource's usage of
// one local meter, as the stack's hourly aggregation closed it and commerce
// charged it.
type HourRecord struct {
	Hour              time.Time      `json:"usageHour"`
	CloudID           string         `json:"cloudId"`
	LocalSubscription string         `json:"localSubscriptionId"`
	LocalMeterID      string         `json:"localMeterId"`
	ResourceURI       string         `json:"resourceUri"`
	Quantity          money.Quantity `json:"quantity"`        // in the local meter's unit
	BillingQuantity   money.Quantity `json:"billingQuantity"` // in the billing meter's unit
	Mapped            bool           `json:"mapped"`
	BilledPeriod      string         `json:"billedPeriod,omitempty"`
}

// HourRecords lists the records charged to subscription for billingMeter
// (a local meter key, with local set, for usage no billing meter covers)
// with usage hours in [from, to), in hour and resource order: the hourly
// detail behind a day of an invoice line. It returns at most limit records
// and whether there were more.
func (l *Ledger) HourRecords(ctx context.Context, subscription, meter string, local bool, from, to time.Time, limit int) ([]HourRecord, bool, error) {
	if err := l.Settle(ctx); err != nil {
		return nil, false, err
	}
	col := "billing_meter_id"
	if local {
		col = "billing_meter_id = '' AND local_meter_key"
	}
	rows, err := l.db.QueryContext(ctx, `SELECT usage_hour_us, cloud_id, local_subscription_id, local_meter_key, resource_uri, quantity, billing_quantity, mapped, billed_period
		FROM commerce_usage WHERE charged_subscription_id = ? AND usage_hour_us >= ? AND usage_hour_us < ? AND usage_day_us >= ? AND usage_day_us <= ? AND `+col+` = ?
		ORDER BY usage_hour_us, resource_uri, local_meter_key, local_subscription_id LIMIT ?`,
		subscription, clock.Micros(from), clock.Micros(to), clock.Micros(clock.DayStart(from)), clock.Micros(clock.DayStart(to.Add(-time.Microsecond))), meter, limit+1)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var out []HourRecord
	for rows.Next() {
		var h HourRecord
		var hour int64
		var billed sql.NullString
		if err := rows.Scan(&hour, &h.CloudID, &h.LocalSubscription, &h.LocalMeterID, &h.ResourceURI, &h.Quantity, &h.BillingQuantity, &h.Mapped, &billed); err != nil {
			return nil, false, err
		}
		h.Hour, h.BilledPeriod = clock.FromMicros(hour), billed.String
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// UtilizationRow is a subscription's usage of one meter in one bucket (an
// hour or a day), per resource when asked: what Partner Center's Azure
// utilization API lists.
type UtilizationRow struct {
	Start       time.Time
	Meter       string // the billing meter, or the local meter key when Local
	Local       bool
	ResourceURI string
	// LocalMeter and LocalSubscription are the stack's meter key and user
	// subscription of the resource (with details).
	LocalMeter, LocalSubscription string
	Location                      string
	Tags                          string
	Quantity                      money.Quantity // in the billing meter's unit (the local one's when Local)
}

// maxUtilizationRecords bounds the records one utilization read sums (and
// so its memory, at most one group per record): a caller asks for a
// shorter range instead.
const maxUtilizationRecords = 250_000

// MaxReportDelay bounds how long after its usage hour a record is
// reported: the stack's intake takes no event older than 34 days.
const MaxReportDelay = 36 * 24 * time.Hour

// Utilization sums subscription's forwarded records reported in
// [from, to) (the stack's reported hour: when usage was reported to
// billing, as Partner Center filters) per usage bucket (hours, or days)
// and meter, and per resource when details is set, in bucket, meter and
// resource order.
func (l *Ledger) Utilization(ctx context.Context, subscription string, from, to time.Time, hourly, details bool) ([]UtilizationRow, error) {
	if err := l.Settle(ctx); err != nil {
		return nil, err
	}
	// Usage lies at most MaxReportDelay before its report, and never after
	// it: the bounds let the charged-subscription index (and the monthly
	// partitions) narrow the scan.
	usageFrom := from.Add(-MaxReportDelay)
	rows, err := l.db.QueryContext(ctx, `SELECT usage_hour_us, billing_meter_id, local_meter_key, local_subscription_id, resource_uri, location, tags, quantity, billing_quantity
		FROM commerce_usage WHERE charged_subscription_id = ? AND reported_hour_us >= ? AND reported_hour_us < ?
		AND usage_hour_us >= ? AND usage_hour_us < ? AND usage_day_us >= ? AND usage_day_us <= ?
		LIMIT ?`,
		subscription, clock.Micros(from), clock.Micros(to), clock.Micros(usageFrom), clock.Micros(to), clock.Micros(clock.DayStart(usageFrom)),
		clock.Micros(clock.DayStart(to.Add(-time.Microsecond))), maxUtilizationRecords+1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type key struct {
		start                    int64
		meter, uri, lmeter, lsub string
		local                    bool
	}
	sums := map[key]*UtilizationRow{}
	n := 0
	for rows.Next() {
		n++
		if n > maxUtilizationRecords {
			return nil, ErrTooManyRecords
		}
		var hour int64
		var bm, lm, lsub, uri, loc, tags string
		var q, bq money.Quantity
		if err := rows.Scan(&hour, &bm, &lm, &lsub, &uri, &loc, &tags, &q, &bq); err != nil {
			return nil, err
		}
		start := clock.FromMicros(hour)
		if !hourly {
			start = clock.DayStart(start)
		}
		k := key{start: clock.Micros(start), meter: bm, local: bm == ""}
		qty := bq
		if k.local {
			k.meter, qty = lm, q
		}
		if details {
			k.uri, k.lmeter, k.lsub = uri, lm, lsub
		}
		r := sums[k]
		if r == nil {
			r = &UtilizationRow{Start: start, Meter: k.meter, Local: k.local, ResourceURI: k.uri, LocalMeter: k.lmeter, LocalSubscription: k.lsub, Quantity: money.Zero}
			if details {
				r.Location, r.Tags = loc, tags
			}
			sums[k] = r
		}
		r.Quantity = r.Quantity.Add(qty)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]UtilizationRow, 0, len(sums))
	for _, r := range sums {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Start.Equal(b.Start) {
			return a.Start.Before(b.Start)
		}
		if a.Meter != b.Meter {
			return a.Meter < b.Meter
		}
		return a.ResourceURI < b.ResourceURI
	})
	return out, nil
}

// ErrTooManyRecords is a read that would sum more records than one request
// may: ask for a shorter range.
var ErrTooManyRecords = errors.New("too many records for one request")
