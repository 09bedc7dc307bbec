package cli

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bench"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// TestBridgeSurvivesKill9 runs a stack and commerce as real processes and
// kills one or the other with SIGKILL 20 times while the stack forwards a
// 3-day backlog. Commerce must end with every record exactly once.
func TestBridgeSurvivesKill9(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and kills real processes; run without -short")
	}
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		bin := e2e.BuildBinary(t, "../..")
		comDSN, stackDSN := storetest.DSN(t, backend), storetest.DSN(t, "sqlite")
		comAddr, stackAddr := e2e.FreeAddr(t), e2e.FreeAddr(t)

		// Commerce: the directory and an approved registration for the stack.
		com := buildApp(t, Options{DB: comDSN})
		stackApp := buildApp(t, Options{DB: stackDSN})
		if _, err := com.Directory.Import(ctx, "test", storetest.WorldJSON()); err != nil {
			t.Fatal(err)
		}
		key, keys, err := bench.RegisterStack(ctx, benchInstance(com), stackApp.DB, regKey(W.ContosoDefault, "azurestack", "stamp"), "http://"+comAddr)
		if err != nil {
			t.Fatal(err)
		}
		com.Close()

		// Stack: 600 tenants' subscriptions and a 3-day backlog (86,400
		// records, several seconds of forwarding), then activation.
		sop := auth.Principal{Role: auth.RoleStackOperator, TokenID: "t"}
		want := map[string]money.Quantity{}
		end := clock.HourStart(time.Now().Add(-time.Hour))
		records := 0
		var subs []string
		for i := 0; i < 600; i++ {
			tenant, sub := randomGUID(), randomGUID()
			stackApp.Tenancy.PutDirectoryTenant(ctx, sop, stackApp.Tenancy.Provider(), tenancy.DirectoryTenant{Name: tenant, TenantID: tenant})
			if _, _, err := stackApp.Tenancy.PutSubscription(ctx, sop, stackApp.Tenancy.Provider(), sub, tenancy.Subscription{TenantID: tenant, Owner: "o", OfferID: "o"}); err != nil {
				t.Fatal(err)
			}
			subs = append(subs, sub)
		}
		for h := end.Add(-72 * time.Hour); h.Before(end); h = h.Add(time.Hour) {
			var evs []*usage.Event
			for i, sub := range subs {
				for _, m := range []struct{ id, q string }{{simulate.MeterBaseVM, fmt.Sprint(1 + i%4)}, {simulate.MeterBlockBlob, "3.125"}} {
					e := ev(fmt.Sprintf("%s-%s-%d", sub, m.id, h.Unix()), sub, m.id, m.q, h, h.Add(time.Hour), "/r/"+sub)
					evs = append(evs, &e)
					want[m.id] = want[m.id].Add(*e.Quantity)
				}
			}
			res, err := stackApp.Usage.IngestAt(ctx, h.Add(50*time.Minute), evs)
			if err != nil || res.Accepted != len(evs) {
				t.Fatalf("backlog: %+v %v", res, err)
			}
			records += res.Accepted
		}
		if _, err := bridge.Activate(ctx, stackApp.DB, key, keys, time.Now()); err != nil {
			t.Fatal(err)
		}
		stackApp.Close()

		env := []string{"STACKBILL_OPERATOR_TOKEN=crash-op"}
		comP := &e2e.Proc{T: t, Bin: bin, Args: []string{"serve", "--role", "commerce", "--addr", comAddr, "--db", comDSN, "--log-level", "error"}, Env: env, URL: "http://" + comAddr}
		stackP := &e2e.Proc{T: t, Bin: bin, Args: []string{"serve", "--role", "stack", "--addr", stackAddr, "--db", stackDSN, "--log-level", "error",
			"--bridge-batch", "1500", "--bridge-max-backoff", "300ms"}, Env: env, URL: "http://" + stackAddr}
		comP.Start()
		stackP.Start()
		defer comP.Kill9()
		defer stackP.Kill9()
		r := rand.New(rand.NewPCG(3, 4))
		killed := map[string]int{}
		for i := 0; i < 20; i++ {
			time.Sleep(time.Duration(100+r.IntN(400)) * time.Millisecond)
			p, name := comP, "commerce"
			if r.IntN(2) == 0 {
				p, name = stackP, "stack"
			}
			p.Kill9()
			killed[name]++
			p.Start()
		}
		c := &client{base: stackP.URL, token: "crash-op", http: &http.Client{Timeout: 5 * time.Second}}
		deadline := time.Now().Add(3 * time.Minute)
		for {
			var st bridge.Status
			_, err := c.do(ctx, "GET", "/v1/stack/bridge", nil, &st)
			if err == nil && st.Backlog == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the bridge did not catch up: %+v %v", st, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		comP.Kill9()
		// What commerce acknowledged but had not materialised when killed
		// is in its log; commerce settles it before anything reads usage.
		after := buildApp(t, Options{DB: comDSN})
		if err := after.Ledger.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		db := after.DB
		rows, err := db.QueryContext(ctx, `SELECT local_meter_key, quantity, charged_subscription_id FROM commerce_usage`)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]money.Quantity{}
		n := 0
		for rows.Next() {
			var m, charged string
			var q money.Quantity
			if err := rows.Scan(&m, &q, &charged); err != nil {
				t.Fatal(err)
			}
			if charged != W.ContosoDefault {
				t.Fatalf("charged to %s", charged)
			}
			got[m] = got[m].Add(q)
			n++
		}
		rows.Close()
		for id, q := range want {
			mk := strings.ToLower(strings.ReplaceAll(id, "-", ""))
			if !got[mk].Equal(q) {
				t.Errorf("meter %s: commerce has %s, the stack produced %s", id, got[mk], q)
			}
		}
		if n != records {
			t.Errorf("commerce holds %d records, the stack forwarded %d", n, records)
		}
		t.Logf("%s commerce: %d records forwarded through %v kill -9; totals exact", backend, records, killed)
	})
}
