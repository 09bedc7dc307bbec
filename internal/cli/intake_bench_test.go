package cli

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/usage"
)

// BenchmarkIntake posts simulator events over HTTP as NDJSON batches of 1,000,
// durable and deduplicated. One op is one event.
func BenchmarkIntake(b *testing.B) {
	for _, backend := range storetest.Backends {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			end := clock.HourStart(time.Now())
			token := "bench-" + randomGUID()
			app, err := Build(ctx, Options{DB: storetest.DSN(b, backend), OperatorToken: token})
			if err != nil {
				b.Fatal(err)
			}
			defer app.Close()
			srv := httptest.NewServer(app.Handler)
			defer srv.Close()
			c := &client{base: srv.URL, token: token, http: srv.Client()}
			w := simulate.New(simulate.Config{Tenants: 50, Seed: 7})
			if err := c.onboard(ctx, w); err != nil {
				b.Fatal(err)
			}
			var events []usage.Event
			for h := end.Add(-24 * 30 * time.Hour); len(events) < b.N; h = h.Add(time.Hour) {
				events = append(events, w.Events(h)...)
			}
			events = events[:b.N]
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < len(events); i += 1000 {
				if _, err := c.postEvents(ctx, events[i:min(i+1000, len(events))]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkUsageAPI times pages of hourly usage for a subscription with 100
// resources over 30 days. One op walks every page once.
func BenchmarkUsageAPI(b *testing.B) {
	for _, backend := range storetest.Backends {
		b.Run(backend, func(b *testing.B) {
			token := "bench-" + randomGUID()
			app, err := Build(context.Background(), Options{DB: storetest.DSN(b, backend), OperatorToken: token})
			if err != nil {
				b.Fatal(err)
			}
			defer app.Close()
			b.ResetTimer()
			res, err := RunUsageAPIBench(context.Background(), app, token, 100, 30, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(res.P50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
		})
	}
}
