package cli

import (
	"fmt"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/usage"
)

// TestRetention proves the retention settings delete only what may go: the
// stack keeps every record the bridge has not forwarded whatever its age, old
// idempotency keys go in batches, and commerce deletes billed usage of old
// finalized periods while their invoices stay exactly as they were.
func TestRetention(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		clk := clock.Manual(time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC))
		com := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
		stack := newStackApp(t, clk)
		srvURL := com.url
		activateStack(t, com.app, stack, regKey(W.ContosoDefault, "azurestack", "ret-stamp"), srvURL, clk.Now())
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		if _, err := com.app.Billing.ImportPriceList(ctx, op, "t", []byte(testPriceListUSD), time.Time{}); err != nil {
			t.Fatal(err)
		}
		sub, tenant := randomGUID(), randomGUID()
		onboardLocal(t, stack, tenant, sub)
		// One record a day for August, September and October, each reported
		// the next day.
		total := money.Zero
		for d := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC); d.Before(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)); d = d.AddDate(0, 0, 1) {
			e := ev("r-"+d.Format("0102"), sub, simulate.MeterBaseVM, "2", d.Add(10*time.Hour), d.Add(11*time.Hour), "/r/vm")
			if _, err := stack.Usage.IngestAt(ctx, d.Add(24*time.Hour), []*usage.Event{&e}); err != nil {
				t.Fatal(err)
			}
			total = total.Add(money.FromInt(2))
		}
		count := func() (n int) {
			_ = stack.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM usage_records`).Scan(&n)
			return n
		}
		// The bridge forwards August and September only, each before its
		// period closes (a day after its month ends).
		for _, at := range []time.Time{time.Date(2026, 9, 1, 20, 0, 0, 0, time.UTC), time.Date(2026, 10, 1, 0, 5, 0, 0, time.UTC)} {
			clk.Set(at)
			for {
				n, err := stack.Forwarder.Step(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
			}
			// Commerce materialises what arrived, as its background loop
			// does soon after (and makes the months' partitions by its clock).
			if err := com.app.Ledger.Settle(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// November 15, keeping 30 days: the cutoff stops at what was forwarded.
		clk.Set(time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC))
		before := count()
		cutoff, err := stack.Forwarder.RetentionCutoff(ctx, 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !cutoff.Before(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("cutoff %s passes the unforwarded October records", cutoff)
		}
		purged, err := stack.Usage.PurgeRecords(ctx, cutoff)
		if err != nil {
			t.Fatal(err)
		}
		// October is sealed for forwarding and not yet sent: the outbox
		// purge (for stacks that stopped reporting) leaves it alone.
		if n, err := stack.Forwarder.Seal(ctx); err != nil || n < 31 {
			t.Fatalf("sealed %d records: %v", n, err)
		}
		if n, err := stack.Forwarder.PurgeOutbox(ctx, cutoff); err != nil || n != 0 {
			t.Fatalf("purged %d sealed batches not yet forwarded: %v", n, err)
		}
		if purged < 55 || count() != before-int(purged) || count() < 31 {
			t.Fatalf("purged %d of %d records, %d left; want August and September gone (but the last forwarded hour) and October kept", purged, before, count())
		}
		for {
			n, err := stack.Forwarder.Step(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		totals, _ := com.app.Ledger.Totals(ctx, []string{W.ContosoDefault}, time.Time{}, clk.Now())
		got := money.Zero
		for _, tt := range totals {
			got = got.Add(tt.Quantity)
		}
		if !got.Equal(total) {
			t.Fatalf("commerce has %s after the stack's purge, want %s: retention lost usage", got, total)
		}
		// Idempotency keys past 35 days go, in batches.
		if n, err := stack.Usage.PurgeExpiredKeys(ctx); err != nil || n < 60 {
			t.Fatalf("expired keys purged: %d %v", n, err)
		}
		// Commerce: finalize August to October, then drop August's billed usage.
		for _, p := range []string{"2026-08", "2026-09", "2026-10"} {
			if _, err := com.app.Billing.Finalize(ctx, op, p); err != nil {
				t.Fatal(err)
			}
		}
		inv := func() string {
			i, err := com.app.Billing.Invoice(ctx, op, "SB-202608-contoso")
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprint(i.Status, i.Total)
		}
		augBefore := inv()
		n, err := com.app.Billing.PurgeBilledUsage(ctx, "2026-09")
		if err != nil || n != 31 {
			t.Fatalf("purged %d billed records of August (%v), want 31", n, err)
		}
		if augAfter := inv(); augAfter != augBefore {
			t.Fatalf("August's invoice changed with its usage purged: %s → %s", augBefore, augAfter)
		}
		var left int
		_ = com.app.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM commerce_usage`).Scan(&left)
		if left != 30+31 {
			t.Fatalf("%d forwarded records left, want September's and October's 61", left)
		}
		if backend == "postgres" {
			// On PostgreSQL, August went as a partition, not row by row;
			// September, billed in September, stays.
			var aug, sep bool
			if err := com.app.DB.QueryRowContext(ctx, `SELECT to_regclass('commerce_usage_y2026m08') IS NOT NULL, to_regclass('commerce_usage_y2026m09') IS NOT NULL`).Scan(&aug, &sep); err != nil {
				t.Fatal(err)
			}
			if aug || !sep {
				var parts []string
				rows, _ := com.app.DB.QueryContext(ctx, `SELECT c.relname || ' ' || n.nspname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = 'commerce_usage'::regclass`)
				for rows != nil && rows.Next() {
					var x string
					_ = rows.Scan(&x)
					parts = append(parts, x)
				}
				t.Logf("partitions: %v", parts)
				t.Fatalf("after purging August: its partition present %v, September's %v; want August's dropped and September's kept", aug, sep)
			}
		}
	})
}
