package cli

import (
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/usage"
)

// TestIntakeSurvivesKill9 kills the stack process with SIGKILL at random
// moments during intake, 20 times, while a client re-sends every batch until
// it is acknowledged (and then re-sends everything once more). Stored usage
// must equal what was produced exactly: nothing lost, nothing counted twice.
func TestIntakeSurvivesKill9(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and kills real processes; run without -short")
	}
	storetest.Each(t, func(t *testing.T, backend string) {
		dsn := storetest.DSN(t, backend)
		addr := e2e.FreeAddr(t)
		p := &e2e.Proc{T: t, Bin: e2e.BuildBinary(t, "../.."), Args: []string{"serve", "--addr", addr, "--db", dsn, "--log-level", "error"},
			Env: []string{"STACKBILL_OPERATOR_TOKEN=crash-op"}, URL: "http://" + addr}
		p.Start()
		defer func() { p.Kill9() }()
		c := &simulate.Reporter{Base: p.URL, Token: "crash-op", HTTP: &http.Client{Timeout: 10 * time.Second}}
		ctx := t.Context()
		w := simulate.New(simulate.Config{Tenants: 20, Seed: 9, VMsPerTenant: 3})
		if err := c.Onboard(ctx, w); err != nil {
			t.Fatal(err)
		}
		end := clock.HourStart(time.Now())
		want := simulate.Totals{}
		var batches [][]usage.Event
		var pending []usage.Event
		for _, h := range simulate.Hours(end.Add(-72*time.Hour), end) {
			ev := w.Events(h)
			want.Add(ev)
			pending = append(pending, ev...)
			for len(pending) >= 500 {
				batches = append(batches, pending[:500:500])
				pending = pending[500:]
			}
		}
		batches = append(batches, pending)

		var killing atomic.Bool
		kills := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			r := rand.New(rand.NewPCG(1, 2))
			for kills < 20 {
				time.Sleep(time.Duration(50+r.IntN(250)) * time.Millisecond)
				killing.Store(true)
				p.Kill9()
				kills++
				p.Start()
				killing.Store(false)
			}
		}()
		send := func(b []usage.Event) {
			for attempt := 0; ; attempt++ {
				if _, err := c.Post(ctx, b); err == nil {
					return
				}
				if attempt > 2000 {
					t.Fatal("a batch was never acknowledged")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		for i := 0; ; i++ { // keep sending (re-sending from the start) until all kills happened
			send(batches[i%len(batches)])
			select {
			case <-done:
				if i >= len(batches) {
					goto verify
				}
			default:
			}
		}
	verify:
		for _, b := range batches { // a final full re-send: all duplicates
			send(b)
		}
		p.Kill9()
		db, err := store.Open(ctx, dsn, storetest.Logger())
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		// Acknowledged events may still be in the intake log: aggregate
		// what the killed process left, as the next one would.
		if err := usage.NewService(db, clock.Real(), nil, nil, slog.New(slog.DiscardHandler)).Settle(ctx, time.Time{}); err != nil {
			t.Fatal(err)
		}
		got := map[string]map[string]money.Quantity{}
		rows, err := db.QueryContext(ctx, `SELECT subscription_id, meter_key, quantity FROM usage_records`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var sub, m string
			var q money.Quantity
			if err := rows.Scan(&sub, &m, &q); err != nil {
				t.Fatal(err)
			}
			if got[sub] == nil {
				got[sub] = map[string]money.Quantity{}
			}
			got[sub][m] = got[sub][m].Add(q)
		}
		rows.Close()
		events := 0
		for sub, ms := range want {
			for m, q := range ms {
				k, _ := meter.Normalize(m)
				if !got[sub][k].Equal(q) {
					t.Errorf("%s %s: stored %s, produced %s", sub, m, got[sub][k], q)
				}
			}
		}
		for _, b := range batches {
			events += len(b)
		}
		var keys int
		// SQLite keeps a batch's keys in one row of 16-byte keys.
		q := `SELECT COUNT(*) FROM usage_dedup`
		if db.Dialect == store.SQLite {
			q = `SELECT COALESCE(SUM(LENGTH(keys) / 16), 0) FROM usage_dedup_blocks`
		}
		if err := db.QueryRowContext(ctx, q).Scan(&keys); err != nil {
			t.Fatal(err)
		}
		if keys != events {
			t.Errorf("%d idempotency keys for %d events", keys, events)
		}
		t.Logf("%s: %d kill -9 during intake of %d events in %d batches; totals exact", backend, kills, events, len(batches))
	})
}
