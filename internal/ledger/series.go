package ledger

import (
	"context"
	"fmt"
	"sync"

	"github.com/stackbill/stackbill/internal/store"
)

// SeriesKey names a rating series: the registration, charged subscription
// and billing meter that rating sums usage by. Records carry their series as
// a small integer so that rating groups and indexes integers, not three
// GUID strings per record.
type SeriesKey struct {
	Registration, Subscription, BillingMeter string
}

// resolveSeries returns the ids of keys, creating the series that do not
// exist yet inside tx. Concurrent instances creating the same series meet on
// the unique key; the upsert returns the one id either way.
func resolveSeries(ctx context.Context, tx *store.Tx, keys []SeriesKey) (map[SeriesKey]int64, error) {
	out := make(map[SeriesKey]int64, len(keys))
	for _, k := range keys {
		if _, ok := out[k]; ok {
			continue
		}
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO rating_series (registration_uid, charged_subscription_id, billing_meter_id) VALUES (?, ?, ?)
			ON CONFLICT (registration_uid, charged_subscription_id, billing_meter_id) DO UPDATE SET billing_meter_id = excluded.billing_meter_id
			RETURNING id`, k.Registration, k.Subscription, k.BillingMeter).Scan(&id)
		if err != nil {
			return nil, fmt.Errorf("rating series: %w", err)
		}
		out[k] = id
	}
	return out, nil
}

// seriesCache remembers series ids that committed transactions created or
// found. Ids are never reused or deleted, so a cached id stays right.
type seriesCache struct {
	mu  sync.Mutex
	ids map[SeriesKey]int64
}

// lookup returns the cached ids and the keys still to resolve.
func (c *seriesCache) lookup(keys []SeriesKey) (map[SeriesKey]int64, []SeriesKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	found := make(map[SeriesKey]int64, len(keys))
	var missing []SeriesKey
	for _, k := range keys {
		if id, ok := c.ids[k]; ok {
			found[k] = id
		} else {
			missing = append(missing, k)
		}
	}
	return found, missing
}

// remember caches ids once the transaction that resolved them committed: a
// rolled-back transaction's new series never existed.
func (c *seriesCache) remember(ids map[SeriesKey]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[SeriesKey]int64{}
	}
	for k, id := range ids {
		c.ids[k] = id
	}
}
