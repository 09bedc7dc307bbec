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

// TestDrillDownReads: the portal's drill-down reads a day's hourly records
// and the daily totals split by the invoice that billed them, on both
// engines. A record that arrives after its month was finalized shows as
// not billed (it is on the next draft as late usage) beside the day's
// billed records.
func TestDrillDownReads(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		db := storetest.Open(t, backend)
		l := New(db, clock.Real(), storetest.Logger())
		day := time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC)
		rec := func(i int, hour int, uri, qty string) Charged {
			return Charged{ID: fmt.Sprintf("%032x", i), Subscription: "sub-a", Mapped: true, LocalSub: "local-a", Tenant: "t", MeterKey: "k1", BillingMeter: "bm-1",
				Qty: qty, BillingQty: qty, MapVersion: 1, UsageUs: clock.Micros(day.Add(time.Duration(hour) * time.Hour)),
				ReportedUs: clock.Micros(day.Add(time.Duration(hour) * time.Hour)), URI: uri, Location: "local", Tags: "null", Addl: "null"}
		}
		onTime := []Charged{rec(1, 0, "/vm/b", "2"), rec(2, 0, "/vm/a", "1.5"), rec(3, 5, "/vm/a", "4"),
			// another meter and another subscription, which the reads leave out
			{ID: fmt.Sprintf("%032x", 4), Subscription: "sub-a", LocalSub: "l", Tenant: "t", MeterKey: "k2", BillingMeter: "bm-2", Qty: "9", BillingQty: "9", UsageUs: clock.Micros(day), ReportedUs: clock.Micros(day), Tags: "null", Addl: "null"},
			{ID: fmt.Sprintf("%032x", 5), Subscription: "sub-b", LocalSub: "l", Tenant: "t", MeterKey: "k1", BillingMeter: "bm-1", Qty: "9", BillingQty: "9", UsageUs: clock.Micros(day), ReportedUs: clock.Micros(day), Tags: "null", Addl: "null"},
			// a meter no billing meter covers: never rated, still charted
			{ID: fmt.Sprintf("%032x", 7), Subscription: "sub-a", LocalSub: "l", Tenant: "t", MeterKey: "k3", Qty: "5", BillingQty: "5", UsageUs: clock.Micros(day), ReportedUs: clock.Micros(day), Tags: "null", Addl: "null"},
		}
		if err := l.Load(ctx, "reg", "cloud-1", day.Add(23*time.Hour), onTime); err != nil {
			t.Fatal(err)
		}
		nov := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		if err := db.Write(ctx, func(tx *store.Tx) error { return l.MarkBilled(ctx, tx, "2026-10", nov, nov.Add(time.Hour)) }); err != nil {
			t.Fatal(err)
		}
		if err := l.Load(ctx, "reg", "cloud-1", nov.Add(48*time.Hour), []Charged{rec(6, 23, "/vm/a", "0.25")}); err != nil {
			t.Fatal(err)
		}

		hours, more, err := l.HourRecords(ctx, "sub-a", "bm-1", false, day, day.Add(24*time.Hour), 10)
		if err != nil || more {
			t.Fatalf("hour records: %v, more %v", err, more)
		}
		var got []string
		for _, h := range hours {
			got = append(got, fmt.Sprintf("%s %s %s %s %s", h.Hour.Format("15"), h.ResourceURI, h.BillingQuantity, h.CloudID, h.BilledPeriod))
		}
		want := []string{"00 /vm/a 1.5 cloud-1 2026-10", "00 /vm/b 2 cloud-1 2026-10", "05 /vm/a 4 cloud-1 2026-10", "23 /vm/a 0.25 cloud-1 "}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("hour records:\n%q\nwant\n%q", got, want)
		}
		// The limit says there were more.
		if first, more, err := l.HourRecords(ctx, "sub-a", "bm-1", false, day, day.Add(24*time.Hour), 3); err != nil || !more || len(first) != 3 {
			t.Errorf("limited to 3: %d records, more %v, %v", len(first), more, err)
		}
		// A local-only meter is asked for by its local key.
		if local, _, err := l.HourRecords(ctx, "sub-a", "k1", true, day, day.Add(24*time.Hour), 10); err != nil || len(local) != 0 {
			t.Errorf("k1 is billed, so it has no local-only records: %d, %v", len(local), err)
		}

		// Per subscription, meter and day through the rating index: the same
		// totals and the same split by invoice as reading every record.
		daily, err := l.DailyTotals(ctx, []string{"sub-a"}, day, nov, nov.Add(72*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var gotDaily []string
		for _, x := range daily {
			gotDaily = append(gotDaily, fmt.Sprintf("%s %s/%s %s %s %v", x.SubscriptionID, x.BillingMeterID, x.LocalMeterID, x.Day.Format("2006-01-02"), x.Quantity, x.Invoiced))
		}
		if want := []string{"sub-a /k3 2026-10-31 5 [{2026-10 5}]", "sub-a bm-1/ 2026-10-31 7.75 [{2026-10 7.5} { 0.25}]", "sub-a bm-2/ 2026-10-31 9 [{2026-10 9}]"}; fmt.Sprint(gotDaily) != fmt.Sprint(want) {
			t.Errorf("daily totals:\n%q\nwant\n%q", gotDaily, want)
		}
		// Per meter and day through the rating index: billed and unbilled
		// parts together, other subscriptions left out.
		days, err := l.MeterDays(ctx, []string{"sub-a"}, time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), nov, nov.Add(72*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var meterDays []string
		for _, d := range days {
			meterDays = append(meterDays, fmt.Sprintf("%s %s %s", d.Meter, d.Day.Format("2006-01-02"), d.Quantity))
		}
		if want := []string{"bm-1 2026-10-31 7.75", "bm-2 2026-10-31 9"}; fmt.Sprint(meterDays) != fmt.Sprint(want) {
			t.Errorf("meter days: %q, want %q", meterDays, want)
		}
		if all, err := l.MeterDays(ctx, nil, day, nov, nov); err != nil || len(all) != 2 || !all[0].Quantity.Equal(money.MustQuantity("16.75")) {
			t.Errorf("every subscription's meter days: %+v %v", all, err)
		}
		totals, err := l.Totals(ctx, []string{"sub-a"}, day, nov)
		if err != nil {
			t.Fatal(err)
		}
		var bm1 *ChargedTotal
		for i := range totals {
			if totals[i].BillingMeterID == "bm-1" {
				bm1 = &totals[i]
			}
		}
		if bm1 == nil || !bm1.Quantity.Equal(money.MustQuantity("7.75")) || len(bm1.Invoiced) != 2 ||
			bm1.Invoiced[0].Period != "2026-10" || !bm1.Invoiced[0].Quantity.Equal(money.MustQuantity("7.5")) ||
			bm1.Invoiced[1].Period != "" || !bm1.Invoiced[1].Quantity.Equal(money.MustQuantity("0.25")) {
			t.Errorf("the day's total and its split by invoice: %+v", bm1)
		}
	})
}
