package ledger

import (
	"fmt"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestPartitionsFollowTheClock: on PostgreSQL, materialisation makes the
// partitions of the months around commerce's clock, and no others: records
// of usage years away, which a stack with a wrong or hostile clock can send,
// go to the default partition instead of each making a partition. Every
// record is stored either way, and a purge drops a month that was all
// billed before the cut-off. SQLite keeps one table: the same records and
// the same purge, row by row.
func TestPartitionsFollowTheClock(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		db := storetest.Open(t, backend)
		clk := clock.Manual(time.Date(2026, 10, 15, 0, 0, 0, 0, time.UTC))
		l := New(db, clk, storetest.Logger())
		var recs []Charged
		hours := []time.Time{time.Date(2026, 9, 30, 23, 0, 0, 0, time.UTC), time.Date(2026, 10, 14, 5, 0, 0, 0, time.UTC)}
		// Usage far from the clock: a month each, 25 years apart.
		for y := 1990; y <= 2090; y += 25 {
			hours = append(hours, time.Date(y, 3, 1, 0, 0, 0, 0, time.UTC))
		}
		for i, h := range hours {
			recs = append(recs, Charged{ID: fmt.Sprintf("%032x", i+1), Subscription: "s", Tenant: "t", LocalSub: "l", MeterKey: "k", BillingMeter: "b",
				Qty: "1", BillingQty: "1", Units: 1_000_000_000, HasUnits: true, UsageUs: clock.Micros(h), ReportedUs: clock.Micros(h), Tags: "null", Addl: "null"})
		}
		if err := l.Load(ctx, "reg", "cloud", clk.Now(), recs); err != nil {
			t.Fatal(err)
		}
		parts := func() map[string]int {
			rows, err := db.QueryContext(ctx, `SELECT tableoid::regclass::text, COUNT(*) FROM commerce_usage GROUP BY 1`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			out := map[string]int{}
			for rows.Next() {
				var name string
				var n int
				if err := rows.Scan(&name, &n); err != nil {
					t.Fatal(err)
				}
				out[name] = n
			}
			return out
		}
		var stored int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM commerce_usage`).Scan(&stored); err != nil || stored != len(recs) {
			t.Fatalf("%d of %d records stored (%v)", stored, len(recs), err)
		}
		pg := backend == "postgres"
		if pg {
			var made int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'commerce_usage'::regclass`).Scan(&made); err != nil {
				t.Fatal(err)
			}
			got := parts()
			if made != 4 || got["commerce_usage_y2026m09"] != 1 || got["commerce_usage_y2026m10"] != 1 || got["commerce_usage_default"] != 5 {
				t.Fatalf("%d partitions (want September, October, November and the default), rows %v", made, got)
			}
		}
		// Finalizing September bills what came before October: September's
		// record, whose partition then goes whole, and 1990's and 2015's,
		// which are deleted from the default partition row by row.
		if err := db.Write(ctx, func(tx *store.Tx) error {
			return l.MarkBilled(ctx, tx, "2026-09", time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), clk.Now().Add(time.Hour))
		}); err != nil {
			t.Fatal(err)
		}
		n, err := l.PurgeBilled(ctx, "2026-10")
		if err != nil || n != 3 {
			t.Fatalf("purged %d (%v), want September's record, 1990's and 2015's", n, err)
		}
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM commerce_usage`).Scan(&stored); err != nil || stored != len(recs)-3 {
			t.Fatalf("%d records left after the purge (%v), want %d", stored, err, len(recs)-3)
		}
		if !pg {
			return
		}
		if got := parts(); got["commerce_usage_y2026m09"] != 0 || got["commerce_usage_y2026m10"] != 1 || got["commerce_usage_default"] != 3 {
			t.Fatalf("after the purge: %v", got)
		}
		var septemberLeft bool
		if err := db.QueryRowContext(ctx, `SELECT to_regclass('commerce_usage_y2026m09') IS NOT NULL`).Scan(&septemberLeft); err != nil || septemberLeft {
			t.Fatalf("September's partition is still there (%v): the purge deleted rows instead of dropping it", err)
		}
	})
}
