package cli

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/services/preview/commerce/mgmt/2015-06-01-preview/commerce"
	"github.com/Azure/go-autorest/autorest/to"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestSimulatedMonthTotals backfills a month of simulated usage for 50
// tenants over HTTP and checks that the usage API, read through the SDK,
// returns exactly the simulator's totals per subscription and meter.
func TestSimulatedMonthTotals(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a month of usage for 50 tenants; run without -short")
	}
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		monthEnd := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
		se := newStackEnv(t, backend, monthEnd.Add(10*time.Minute))
		w := simulate.New(simulate.Config{Tenants: 50, Seed: 42})
		if err := se.rp.Onboard(ctx, w); err != nil {
			t.Fatal(err)
		}
		want := simulate.Totals{}
		sent, err := sendHours(ctx, se.rp, w, simulate.Hours(monthEnd.AddDate(0, -1, 0), monthEnd), simOptions{Batch: 1000, Workers: 2}, want)
		if err != nil {
			t.Fatal(err)
		}
		// Everything was reported in the day starting at monthEnd; close it.
		se.clk.Set(monthEnd.Add(24 * time.Hour))
		checked := 0
		for _, sub := range w.SortedSubscriptions() {
			items, _, err := listAll(t, usageClient(se.url, sub, se.operator), monthEnd, monthEnd.Add(24*time.Hour), to.BoolPtr(false), commerce.Daily)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]money.Quantity{}
			for _, it := range items {
				k, _ := meter.Normalize(to.String(it.MeterID))
				// The SDK's float64 is for display; sum the exact JSON instead.
				got[k] = got[k].Add(money.MustQuantity(jsonNumber(it.Quantity)))
				if !clock.IsDayStart(it.UsageStartTime.Time) {
					t.Fatalf("daily bucket starts at %s", it.UsageStartTime)
				}
			}
			for m, q := range want[sub] {
				k, _ := meter.Normalize(m)
				if !exactSum(t, se, sub, k, monthEnd).Equal(q) {
					t.Errorf("subscription %s meter %s: API total %s, simulator total %s", sub, m, exactSum(t, se, sub, k, monthEnd), q)
				}
				checked++
				delete(got, k)
			}
			if len(got) > 0 {
				t.Errorf("subscription %s has usage the simulator did not produce: %v", sub, got)
			}
		}
		t.Logf("%s: %d events, %d subscription×meter totals equal", backend, sent, checked)
	})
}

func jsonNumber(f *float64) string { return money.MustQuantity(fmtFloat(*f)).String() }

// exactSum reads one subscription's daily aggregates as raw JSON and sums the
// quantities of one meter exactly (the SDK decodes quantity into float64).
func exactSum(t *testing.T, se *stackEnv, sub, meterKey string, reportedDay time.Time) money.Quantity {
	t.Helper()
	total := money.Zero
	next := "/subscriptions/" + sub + "/providers/Microsoft.Commerce/UsageAggregates?api-version=2015-06-01-preview&aggregationGranularity=Daily&showDetails=false&reportedStartTime=" +
		reportedDay.Format(time.RFC3339) + "&reportedEndTime=" + reportedDay.Add(24*time.Hour).Format(time.RFC3339)
	for next != "" {
		var page struct {
			Value []struct {
				Properties struct {
					MeterID  string         `json:"meterId"`
					Quantity money.Quantity `json:"quantity"`
				} `json:"properties"`
			} `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if _, err := se.c.do(context.Background(), "GET", next, nil, &page); err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Value {
			if k, _ := meter.Normalize(v.Properties.MeterID); k == meterKey {
				total = total.Add(v.Properties.Quantity)
			}
		}
		next = ""
		if page.NextLink != "" {
			next = page.NextLink[len(se.url):]
		}
	}
	return total
}
