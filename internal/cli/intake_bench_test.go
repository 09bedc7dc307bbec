package cli

import (
	"context"
	"testing"

	"github.com/stackbill/stackbill/internal/bench"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// BenchmarkIntake posts simulator events over HTTP as NDJSON batches of
// 1,000 from 4 producers, durable and deduplicated. One op is one event.
func BenchmarkIntake(b *testing.B) {
	for _, backend := range storetest.Backends {
		b.Run(backend, func(b *testing.B) {
			app, token := benchApp(b, backend)
			b.ResetTimer()
			res, err := bench.Intake(context.Background(), app, token, b.N, 4, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(res.Events)/res.Duration.Seconds(), "events/s")
		})
	}
}

// BenchmarkUsageAPI times pages of hourly usage for a subscription with 100
// resources over 30 days. One op walks every page once.
func BenchmarkUsageAPI(b *testing.B) {
	for _, backend := range storetest.Backends {
		b.Run(backend, func(b *testing.B) {
			app, token := benchApp(b, backend)
			b.ResetTimer()
			res, err := bench.UsageAPI(context.Background(), app, token, 100, 30, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(res.P50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
		})
	}
}

// benchApp builds a stackbill on a fresh database of backend for a benchmark.
func benchApp(b *testing.B, backend string) (*bench.Instance, string) {
	b.Helper()
	app, token, closeApp, err := openBenchApp(context.Background(), storetest.DSN(b, backend), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(closeApp)
	return app, token
}
