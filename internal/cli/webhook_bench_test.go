package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// BenchmarkWebhookDelivery sends b.N events from the outbox to a receiver
// on loopback (claim under lease, sign, POST, record the outcome and its
// log line), against the same run's baseline: as many bare POSTs of a
// signed body of the same size to the same receiver, at the sender's
// concurrency. One op is one delivery.
func BenchmarkWebhookDelivery(b *testing.B) {
	for _, backend := range storetest.Backends {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			clk := clock.Manual(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
			app := buildApp(b, Options{DB: storetest.DSN(b, backend), Clock: clk, Webhooks: notify.Policy{AllowLoopback: true}})
			rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
			defer rcv.Close()
			url := rcv.URL
			if _, err := app.Notify.CreateEndpoint(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "b"}, notify.EndpointInput{URL: &url}); err != nil {
				b.Fatal(err)
			}
			data := []byte(`{"stage":"ingest","reason":"a record a stage could not take, as long as a real reason is","records":1}`)
			for done := 0; done < b.N; {
				n := min(500, b.N-done)
				if err := app.DB.Write(ctx, func(tx *store.Tx) error {
					for range n {
						if _, err := notify.Record(ctx, tx, notify.Event{Type: notify.QuarantineAdded, At: clk.Now(), Subject: "bench", Data: data}); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				done += n
			}
			// Baseline: bare signed POSTs, 8 at once, as the sender sends.
			body := []byte(`{"type":"quarantine.added","timestamp":"2026-07-01T12:00:00Z","data":` + string(data) + `}`)
			sig, _ := notify.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_bench", clk.Now().Unix(), body)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
			start := time.Now()
			var wg sync.WaitGroup
			next := make(chan struct{})
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
						req.Header.Set("webhook-signature", sig)
						if resp, err := client.Do(req); err == nil {
							resp.Body.Close()
						}
					}
				}()
			}
			for range b.N {
				next <- struct{}{}
			}
			close(next)
			wg.Wait()
			baseline := float64(b.N) / time.Since(start).Seconds()
			b.ResetTimer()
			start = time.Now()
			sent := 0
			for {
				n, err := app.Notify.Step(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if n == 0 {
					break
				}
				sent += n
			}
			b.StopTimer()
			if sent != b.N {
				b.Fatalf("sent %d of %d", sent, b.N)
			}
			rate := float64(sent) / time.Since(start).Seconds()
			b.ReportMetric(rate, "deliveries/s")
			b.ReportMetric(baseline, "bare-posts/s")
			b.ReportMetric(rate/baseline, "ratio")
		})
	}
}
