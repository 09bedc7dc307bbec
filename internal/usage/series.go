package usage

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// Dimension is what a usage series is broken down by.
type Dimension string

const (
	BySubscription Dimension = "subscription"
	ByMeter        Dimension = "meter"
	ByResource     Dimension = "resource"
)

// SeriesQuery selects usage by usage time (not reported time: charts show when
// resources ran), for the portal's usage explorer. Scope is the caller's:
// Subscriptions nil means every subscription on the stack.
type SeriesQuery struct {
	Subscriptions []string
	MeterKey      string
	From, To      time.Time
	Granularity   Granularity
	By            Dimension
}

// Point is the usage of one key in one bucket.
type Point struct {
	Bucket   time.Time
	Key      string
	Quantity money.Quantity
}

// Series sums usage per bucket and key with exact decimals; points come in
// bucket order.
func (s *Service) Series(ctx context.Context, q SeriesQuery) ([]Point, error) {
	if err := s.Settle(ctx, time.Time{}); err != nil {
		return nil, err
	}
	col := map[Dimension]string{BySubscription: "subscription_id", ByMeter: "meter_key", ByResource: "resource_uri"}[q.By]
	if col == "" {
		col = "meter_key"
	}
	where := []string{"usage_hour_us >= ?", "usage_hour_us < ?"}
	args := []any{clock.Micros(q.From), clock.Micros(q.To)}
	if q.Subscriptions != nil {
		if len(q.Subscriptions) == 0 {
			return nil, nil
		}
		where = append(where, "subscription_id IN ("+store.Placeholders(len(q.Subscriptions))+")")
		for _, s := range q.Subscriptions {
			args = append(args, s)
		}
	}
	if q.MeterKey != "" {
		where = append(where, "meter_key = ?")
		args = append(args, q.MeterKey)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT usage_hour_us, `+col+`, quantity FROM usage_records WHERE `+strings.Join(where, " AND "), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type k struct {
		bucket int64
		key    string
	}
	sums := map[k]*money.Sum{}
	var qty []byte
	for rows.Next() {
		var hour int64
		var key string
		if err := rows.Scan(&hour, &key, &qty); err != nil {
			return nil, err
		}
		b := clock.FromMicros(hour)
		if q.Granularity == Daily {
			b = clock.DayStart(b)
		}
		kk := k{clock.Micros(b), key}
		sum := sums[kk]
		if sum == nil {
			sum = &money.Sum{}
			sums[kk] = sum
		}
		if err := sum.AddText(qty); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Point, 0, len(sums))
	for kk, sum := range sums {
		out = append(out, Point{Bucket: clock.FromMicros(kk.bucket), Key: kk.key, Quantity: sum.Quantity()})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Bucket.Equal(out[j].Bucket) {
			return out[i].Bucket.Before(out[j].Bucket)
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}
