package ledger

import (
	"fmt"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestDaySumsAreExact: the database sums integer units, and the groups it
// cannot sum exactly (quantities with more than nine decimals, records stored
// without units, sums beyond 64 bits) still come out exact, on both engines.
func TestDaySumsAreExact(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		db := storetest.Open(t, backend)
		l := New(db, clock.Real(), storetest.Logger())
		oct := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
		n := 0
		insert := func(sub, meter string, hour time.Time, qty string, withUnits bool) {
			t.Helper()
			n++
			var units any
			if u, ok := money.MustQuantity(qty).Units(); ok && withUnits {
				units = u
			}
			err := db.Write(ctx, func(tx *store.Tx) error {
				var series int64
				if meter != "" {
					ids, err := resolveSeries(ctx, tx, []SeriesKey{{Registration: "reg", Subscription: sub, BillingMeter: meter}})
					if err != nil {
						return err
					}
					series = ids[SeriesKey{Registration: "reg", Subscription: sub, BillingMeter: meter}]
				}
				_, err := tx.ExecContext(ctx, `INSERT INTO commerce_usage (id, registration_uid, cloud_id, charged_subscription_id, mapped, reason, local_subscription_id,
					tenant_id, local_meter_key, billing_meter_id, quantity, billing_quantity, billing_units, meter_map_version, usage_hour_us, usage_day_us,
					reported_hour_us, received_at_us, resource_uri, location, tags, additional_info, series_id) VALUES (?, 'reg', 'cloud', ?, 1, '', ?, 't', 'k', ?, ?, ?, ?, 1, ?, ?, ?, ?, '/r', 'local', 'null', 'null', ?)`,
					fmt.Sprintf("r%d", n), sub, sub, meter, qty, qty, units, clock.Micros(hour), clock.Micros(clock.DayStart(hour)), clock.Micros(hour), clock.Micros(hour), series)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		day1, day2 := oct.Add(3*time.Hour), oct.Add(27*time.Hour)
		insert("sub-a", "m1", day1, "1.5", true)
		insert("sub-a", "m1", day1.Add(time.Hour), "2.25", true)
		insert("sub-a", "m1", day2, "7", true)
		// more decimals than units hold, beside units in the same group
		insert("sub-b", "m1", day1, "0.0000000001", true)
		insert("sub-b", "m1", day1, "3", true)
		// stored before the units column existed
		insert("sub-c", "m2", day1, "4.125", false)
		insert("sub-c", "m2", day1, "0.875", false)
		// outside the period and without a billing meter: not rated
		insert("sub-a", "m1", oct.AddDate(0, 1, 0), "100", true)
		insert("sub-a", "", day1, "100", true)

		rs := Selection{Period: "2026-10", Start: oct, End: oct.AddDate(0, 1, 0)}
		got, records, err := l.DaySums(ctx, db, rs)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"sub-a m1 2026-10-01 3.75", "sub-a m1 2026-10-02 7",
			"sub-b m1 2026-10-01 3.0000000001",
			"sub-c m2 2026-10-01 5",
		}
		check := func(got []DaySum, records int64, want []string, wantRecords int64) {
			t.Helper()
			if records != wantRecords || len(got) != len(want) {
				t.Fatalf("%d records in %v, want %d in %v", records, got, wantRecords, want)
			}
			for i, a := range got {
				if s := fmt.Sprintf("%s %s %s %s", a.Subscription, a.Meter, a.Day.Format("2006-01-02"), a.Quantity); s != want[i] {
					t.Errorf("group %d: %s, want %s", i, s, want[i])
				}
			}
		}
		check(got, records, want, 7)

		// Sums past int64: SQLite refuses them ("integer overflow") and the
		// rating sums the records' text instead; PostgreSQL sums bigint as
		// numeric. Either way the total is exact.
		big := "4000000000.123456789" // 4e18 units: two of them overflow int64
		insert("sub-d", "m1", day2, big, true)
		insert("sub-d", "m1", day2.Add(time.Hour), big, true)
		insert("sub-d", "m1", day2.Add(2*time.Hour), big, true)
		got, records, err = l.DaySums(ctx, db, rs)
		if err != nil {
			t.Fatal(err)
		}
		check(got, records, append(want, "sub-d m1 2026-10-02 12000000000.370370367"), 10)
	})
}

// TestRatingMigrationKeepsOlderUsage: records stored before migration 8 get
// their usage day and rating series from it, keep NULL units, and are rated
// exactly from their text.
func TestRatingMigrationKeepsOlderUsage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		db, err := store.Open(ctx, storetest.DSN(t, backend), storetest.Logger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		l := New(db, clock.Real(), storetest.Logger())
		if _, err := db.MigrateTo(ctx, 7); err != nil {
			t.Fatal(err)
		}
		oct := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
		for i, r := range []struct {
			sub, meter, qty string
			hour            time.Time
		}{
			{"sub-a", "m1", "1.25", oct.Add(5 * time.Hour)},
			{"sub-a", "m1", "0.000000000001", oct.Add(6 * time.Hour)},
			{"sub-a", "m1", "2", oct.Add(30 * time.Hour)},
			{"sub-b", "m2", "4", oct.Add(5 * time.Hour)},
			{"sub-b", "", "9", oct.Add(5 * time.Hour)}, // a local-only meter
		} {
			err := db.Write(ctx, func(tx *store.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO commerce_usage (id, registration_uid, cloud_id, charged_subscription_id, mapped, reason, local_subscription_id,
					tenant_id, local_meter_key, billing_meter_id, quantity, billing_quantity, meter_map_version, usage_hour_us, reported_hour_us, received_at_us,
					resource_uri, location, tags, additional_info) VALUES (?, 'reg', 'cloud', ?, 1, '', ?, 't', 'k', ?, ?, ?, 1, ?, ?, ?, '/r', 'local', 'null', 'null')`,
					fmt.Sprintf("r%d", i), r.sub, r.sub, r.meter, r.qty, r.qty, clock.Micros(r.hour), clock.Micros(r.hour), clock.Micros(r.hour))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		var series int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM rating_series`).Scan(&series); err != nil || series != 2 {
			t.Fatalf("%d rating series (%v), want 2", series, err)
		}
		got, records, err := l.DaySums(ctx, db, Selection{Period: "2026-10", Start: oct, End: oct.AddDate(0, 1, 0)})
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, a := range got {
			lines = append(lines, fmt.Sprintf("%s %s %s %s", a.Subscription, a.Meter, a.Day.Format("2006-01-02"), a.Quantity))
		}
		want := "[sub-a m1 2026-10-01 1.250000000001 sub-a m1 2026-10-02 2 sub-b m2 2026-10-01 4]"
		if records != 4 || fmt.Sprint(lines) != want {
			t.Fatalf("%d records: %v, want 4: %s", records, lines, want)
		}
	})
}
