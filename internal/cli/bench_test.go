package cli

import (
	"context"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/bench"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// BenchmarkCustomerSubscriptionPutGet measures customerSubscription PUT+GET
// pairs over loopback HTTP from 16 concurrent clients; every PUT replaces a
// mapping (a real write). One op is one PUT plus one GET.
func BenchmarkCustomerSubscriptionPutGet(b *testing.B) {
	for _, backend := range storetest.Backends {
		b.Run(backend, func(b *testing.B) {
			app, token := benchApp(b, backend)
			b.ResetTimer()
			res, err := bench.Registration(context.Background(), app, token, 16, time.Hour, b.N, 256, nil)
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors > 0 {
				b.Fatalf("%d requests failed", res.Errors)
			}
			b.ReportMetric(res.PutsPerSecond(), "PUT/s")
			b.ReportMetric(float64(res.PutP50.Microseconds()), "PUT-p50-µs")
			b.ReportMetric(float64(res.PutP99.Microseconds()), "PUT-p99-µs")
			b.ReportMetric(float64(res.GetP99.Microseconds()), "GET-p99-µs")
		})
	}
}

// BenchmarkRating loads and rates b.N forwarded records (one op = one record)
// into a month's draft invoices. ns/op includes loading; the records/s
// metric is rating and invoice generation alone.
func BenchmarkRating(b *testing.B) {
	for _, backend := range storetest.Backends {
		b.Run(backend, func(b *testing.B) {
			app, _ := benchApp(b, backend)
			res, err := bench.Rating(context.Background(), app, int64(b.N), 100, false)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.RecordsPerSecond(), "records/s")
			b.ReportMetric(float64(res.PeakHeapBytes)/(1<<20), "peak-heap-MiB")
		})
	}
}
