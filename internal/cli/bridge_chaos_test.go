package cli

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bench"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// TestBridgeChaosMillion forwards more than a million records from two
// stacks to commerce, all three real processes, while a loop kills (kill -9)
// and restarts a random one of them, at least 24 times and until half the
// records are through, and the proxy in front of commerce answers
// errors, hangs, and drops connections before and after commerce has done
// the work. At the end commerce holds every record exactly
// once: the count, and per charged subscription and billing meter the
// quantities after mapping and unit conversion, equal what the stacks held.
func TestBridgeChaosMillion(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("forwards a million records between real processes for minutes")
	}
	// The stacks' backlogs are built once, two SQLite files side by side,
	// and each engine's run starts from copies of them.
	ctx := t.Context()
	const tenants, days = 700, 15
	end := clock.HourStart(time.Now().Add(-time.Hour))
	start := end.Add(-days * 24 * time.Hour)
	type template struct {
		path    string
		records int
		want    map[string]money.Quantity // local meter → quantity
	}
	templates := []*template{{}, {}}
	var wg sync.WaitGroup
	errs := make([]error, len(templates))
	for i, tp := range templates {
		tp.path, tp.want = storetest.DSN(t, "sqlite"), map[string]money.Quantity{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			app, err := Build(ctx, Options{DB: tp.path})
			if err != nil {
				errs[i] = err
				return
			}
			defer app.Close()
			if tp.records, errs[i] = buildBacklog(ctx, app, tenants, start, end, tp.want); errs[i] == nil {
				// Everything in the main file, so that a copy of it is whole.
				errs[i] = app.DB.Settle(ctx)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	storetest.Each(t, func(t *testing.T, backend string) {
		bin := e2e.BuildBinary(t, "../..")
		comDSN := storetest.DSN(t, backend)
		comAddr := e2e.FreeAddr(t)
		proxy := e2e.NewFaultProxy("http://"+comAddr, 5)
		front := httptest.NewServer(proxy)
		defer front.Close()

		com := buildApp(t, Options{DB: comDSN})
		if _, err := com.Directory.Import(ctx, "test", storetest.WorldJSON()); err != nil {
			t.Fatal(err)
		}
		// Two stacks, each with 700 tenants and 15 days of hourly records of
		// two meters: 504,000 records apiece.
		type stamp struct {
			name, dsn, addr, charged string
			p                        *e2e.Proc
			records                  int
			want                     map[string]money.Quantity
		}
		stamps := []*stamp{{name: "a", charged: W.ContosoDefault}, {name: "b", charged: W.NorthwindDefault}}
		for i, s := range stamps {
			s.dsn, s.addr, s.records, s.want = storetest.DSN(t, "sqlite"), e2e.FreeAddr(t), templates[i].records, templates[i].want
			data, err := os.ReadFile(templates[i].path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.dsn, data, 0o600); err != nil {
				t.Fatal(err)
			}
			app := buildApp(t, Options{DB: s.dsn})
			key, keys, err := bench.RegisterStack(ctx, benchInstance(com), app.DB, regKey(s.charged, "azurestack", "chaos-"+s.name), front.URL)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bridge.Activate(ctx, app.DB, key, keys, time.Now()); err != nil {
				t.Fatal(err)
			}
			app.Close()
		}
		total := stamps[0].records + stamps[1].records
		if total < 1_000_000 {
			t.Fatalf("only %d records to forward", total)
		}
		// What commerce must end with, per charged subscription and billing
		// meter, after the shipped meter map's conversion.
		want := map[string]money.Quantity{}
		billingMap := meter.NewBillingMap(com.DB, com.Clock)
		for _, s := range stamps {
			for meterID, q := range s.want {
				bm, _, billed, err := billingMap.At(ctx, normalizeMeter(meterID), start)
				if err != nil {
					t.Fatal(err)
				}
				k, billedQ := s.charged+"|"+normalizeMeter(meterID), q
				if billed {
					k, billedQ = s.charged+"|"+bm.ID, q.Mul(bm.Factor)
				}
				want[k] = want[k].Add(billedQ)
			}
		}
		com.Close()

		env := []string{"STACKBILL_OPERATOR_TOKEN=chaos-op"}
		comP := &e2e.Proc{T: t, Bin: bin, Args: []string{"serve", "--role", "commerce", "--addr", comAddr, "--db", comDSN, "--log-level", "error"}, Env: env, URL: "http://" + comAddr}
		comP.Start()
		defer comP.Kill9()
		for _, s := range stamps {
			s.p = &e2e.Proc{T: t, Bin: bin, Args: []string{"serve", "--role", "stack", "--addr", s.addr, "--db", s.dsn, "--log-level", "error",
				"--bridge-batch", "5000", "--bridge-max-backoff", "300ms"}, Env: env, URL: "http://" + s.addr}
			s.p.Start()
			defer s.p.Kill9()
		}
		status := func(s *stamp) (bridge.Status, error) {
			var st bridge.Status
			c := &client{base: s.p.URL, token: "chaos-op", http: &http.Client{Timeout: 5 * time.Second}}
			_, err := c.do(ctx, "GET", "/v1/stack/bridge", nil, &st)
			return st, err
		}

		// Chaos while the stacks forward: kills every 0.4–1.6 s until at
		// least 24 have been made and half the records are through (the
		// backlogs are read between kills).
		proxy.Faults.Store(true)
		r := rand.New(rand.NewPCG(9, 10))
		killed := map[string]int{}
		backlog := func() (int64, bool) {
			sum := int64(0)
			for _, s := range stamps {
				st, err := status(s)
				if err != nil {
					return 0, false
				}
				sum += st.Backlog
			}
			return sum, true
		}
		var pending int64
		for kills := 0; ; kills++ {
			if n, ok := backlog(); ok {
				pending = n
				if kills >= 24 && n <= int64(total/2) {
					break
				}
			}
			if kills == 400 {
				t.Fatalf("after %d kills %d records were still to forward", kills, pending)
			}
			time.Sleep(time.Duration(400+r.IntN(1200)) * time.Millisecond)
			p, name := comP, "commerce"
			if v := r.IntN(3); v > 0 {
				p, name = stamps[v-1].p, stamps[v-1].name
			}
			p.Kill9()
			killed[name]++
			p.Start()
		}
		proxy.Faults.Store(false)
		deadline := time.Now().Add(8 * time.Minute)
		for _, s := range stamps {
			for {
				st, err := status(s)
				if err == nil && st.ForwardedThrough != nil && !st.ForwardedThrough.Before(end) && st.Backlog == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("stack %s did not catch up: %+v %v", s.name, st, err)
				}
				time.Sleep(300 * time.Millisecond)
			}
		}
		comP.Kill9()

		// Commerce restarted: what it acknowledged before the last kill and
		// had not materialised is settled from its log.
		after := buildApp(t, Options{DB: comDSN})
		if err := after.Ledger.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := after.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM commerce_usage`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != total {
			t.Errorf("commerce holds %d records; the stacks forwarded %d", n, total)
		}
		got := map[string]money.Quantity{}
		totals, err := after.Ledger.Totals(ctx, []string{W.ContosoDefault, W.NorthwindDefault}, start, end)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range totals {
			k := tt.SubscriptionID + "|" + tt.BillingMeterID
			if tt.BillingMeterID == "" {
				k = tt.SubscriptionID + "|" + tt.LocalMeterID
			}
			got[k] = got[k].Add(tt.Quantity)
		}
		for k, q := range want {
			if !got[k].Equal(q) {
				t.Errorf("%s: commerce has %s, want %s", k, got[k], q)
			}
		}
		if len(got) != len(want) {
			t.Errorf("commerce charged %d subscription-meter pairs, want %d: %v", len(got), len(want), got)
		}
		for _, mode := range []string{"error", "drop", "drop-after", "hang"} {
			if proxy.Counts()[mode] == 0 {
				t.Errorf("the proxy never injected %q", mode)
			}
		}
		t.Logf("%s commerce: %d records from two stacks through %v kill -9 and proxy faults %v (%d records still to forward when the chaos ended); totals exact",
			backend, total, killed, proxy.Counts(), pending)
	})
}

// buildBacklog gives a stack tenants with one subscription each and an
// hourly record of two meters per subscription for every hour in [start,
// end), each reported in its own hour. want collects the quantities per
// meter ID.
func buildBacklog(ctx context.Context, app *App, tenants int, start, end time.Time, want map[string]money.Quantity) (int, error) {
	sop := auth.Principal{Role: auth.RoleStackOperator, TokenID: "t"}
	subs := make([]string, tenants)
	for i := range subs {
		tenant, sub := randomGUID(), randomGUID()
		if _, _, err := app.Tenancy.PutDirectoryTenant(ctx, sop, app.Tenancy.Provider(), tenancy.DirectoryTenant{Name: tenant, TenantID: tenant}); err != nil {
			return 0, err
		}
		if _, _, err := app.Tenancy.PutSubscription(ctx, sop, app.Tenancy.Provider(), sub, tenancy.Subscription{TenantID: tenant, Owner: "o", OfferID: "o"}); err != nil {
			return 0, err
		}
		subs[i] = sub
	}
	records := 0
	for h := start; h.Before(end); h = h.Add(time.Hour) {
		evs := make([]*usage.Event, 0, 2*len(subs))
		for i, sub := range subs {
			for _, m := range []struct{ id, q string }{{simulate.MeterBaseVM, fmt.Sprint(1 + i%8)}, {simulate.MeterBlockBlob, "0.0625"}} {
				e := ev(fmt.Sprintf("%s-%s-%d", sub, m.id, h.Unix()), sub, m.id, m.q, h, h.Add(time.Hour), "/r/"+sub)
				evs = append(evs, &e)
				want[m.id] = want[m.id].Add(*e.Quantity)
			}
		}
		res, err := app.Usage.IngestAt(ctx, h.Add(50*time.Minute), evs)
		if err != nil {
			return records, err
		}
		if res.Accepted != len(evs) {
			return records, fmt.Errorf("backlog hour %s: %+v", h, res)
		}
		records += res.Accepted
	}
	return records, nil
}

func normalizeMeter(id string) string {
	key, _ := meter.Normalize(id)
	return key
}
