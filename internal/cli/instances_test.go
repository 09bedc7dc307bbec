package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/usage"
)

// TestTwoCommerceInstances runs two `serve --role commerce` processes on one
// PostgreSQL database behind a round-robin balancer. Both start past October's
// grace and race to finalize it: it is finalized once. Reconciliation exports
// are queued and the instance running them is killed (kill -9): the survivor
// takes them over and completes them. A stack keeps forwarding through the
// balancer after the kill, and every record is charged once.
func TestTwoCommerceInstances(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs processes")
	}
	ctx := t.Context()
	dsn := storetest.DSN(t, "postgres")
	bin := e2e.BuildBinary(t, "../..")
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
	nov5 := time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)

	// Setup: the directory, prices, and a stack registered through the
	// balancer with October usage already charged.
	lb := &e2e.RoundRobin{}
	front := httptest.NewServer(lb)
	defer front.Close()
	// Commerce receives October's usage on October 20, before October
	// closes: what arrives after the close is November's late usage.
	com := buildApp(t, Options{DB: dsn, Clock: clock.Manual(time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC))})
	if _, err := com.Directory.Import(ctx, "t", storetest.WorldJSON()); err != nil {
		t.Fatal(err)
	}
	if _, err := com.Billing.ImportPriceList(ctx, op, "t", []byte(testPriceListUSD), time.Time{}); err != nil {
		t.Fatal(err)
	}
	stack := buildApp(t, Options{DB: storetest.DSN(t, "sqlite"), Clock: clock.Manual(time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC))})
	activateStack(t, com, stack, regKey(W.ContosoDefault, "azurestack", "ha-stamp"), front.URL, stack.Clock.Now())
	sub, tenant := randomGUID(), randomGUID()
	onboardLocal(t, stack, tenant, sub)
	want := money.Zero
	ingestDay := func(day time.Time, n int) {
		t.Helper()
		var evs []*usage.Event
		for i := 0; i < n; i++ {
			h := day.Add(time.Duration(i%24) * time.Hour)
			e := ev(fmt.Sprintf("ha-%s-%d", day.Format("0102"), i), sub, simulate.MeterBaseVM, "1.5", h, h.Add(time.Hour), fmt.Sprintf("/r/vm%d", i))
			evs = append(evs, &e)
			want = want.Add(money.MustQuantity("1.5"))
		}
		if _, err := stack.Usage.IngestAt(ctx, day.Add(25*time.Hour), evs); err != nil {
			t.Fatal(err)
		}
	}
	forwardAll := func(through string) {
		t.Helper()
		for i := 0; ; i++ {
			n, err := stack.Forwarder.Step(ctx)
			if err == nil && n == 0 {
				return
			}
			if i > 200 {
				t.Fatalf("forwarding through %s: %v", through, err)
			}
			if err != nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	// October usage reaches commerce through the balancer before the
	// instances start (the setup process serves it).
	setup := httptest.NewServer(com.Handler)
	lb.SetBackends(setup.URL)
	for d := 0; d < 5; d++ {
		ingestDay(time.Date(2026, 10, 10+d, 0, 0, 0, 0, time.UTC), 200)
	}
	stack.Clock.Set(time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC))
	forwardAll("setup")
	setup.Close()
	com.Close()

	// Two instances, started together: both find October due.
	start := func(name string) *e2e.Proc {
		addr := e2e.FreeAddr(t)
		p := &e2e.Proc{T: t, Bin: bin, URL: "http://" + addr, Env: []string{"STACKBILL_OPERATOR_TOKEN=ha-op"},
			Args: []string{"serve", "--role", "commerce", "--addr", addr, "--db", dsn, "--clock-start", nov5.Format(time.RFC3339), "--invoice-grace", "24h",
				"--billing-interval", "300ms", "--export-stale", "3s", "--log-level", "error"}}
		p.Start()
		return p
	}
	a, b := start("a"), start("b")
	defer a.Kill9()
	defer b.Kill9()
	lb.SetBackends(a.URL, b.URL)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := e2e.Call(t, http.DefaultClient, "GET", front.URL+"/v1/billing/periods/2026-10", "ha-op", "", nil)
		if resp.StatusCode == 200 && strings.Contains(body, `"status":"finalized"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("October was not finalized: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Exports: queue three through the balancer, then kill instance a
	// whatever it is doing; b completes them all.
	var ids []string
	for i := 0; i < 3; i++ {
		resp, err := http.DefaultClient.Do(e2e.NewRequest("POST", front.URL+"/v1/billing/exports", "ha-op", "application/json", strings.NewReader(`{"partner":"contoso","period":"2026-10"}`)))
		if err != nil {
			t.Fatal(err)
		}
		var job struct {
			ID string `json:"id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&job)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || job.ID == "" {
			t.Fatalf("start export: %d", resp.StatusCode)
		}
		ids = append(ids, job.ID)
	}
	a.Kill9()
	for _, id := range ids {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, body := e2e.Call(t, http.DefaultClient, "GET", front.URL+"/v1/billing/exports/"+id, "ha-op", "", nil)
			if strings.Contains(body, `"status":"succeeded"`) {
				break
			}
			if time.Now().After(deadline) || strings.Contains(body, `"status":"failed"`) {
				t.Fatalf("export %s after instance a died: %s", id, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		resp, file := e2e.Call(t, http.DefaultClient, "GET", front.URL+"/v1/billing/exports/"+id+"/file", "ha-op", "", nil)
		if resp.StatusCode != 200 || strings.Count(file, "\n") < 2 {
			t.Fatalf("export %s file: %d, %d lines", id, resp.StatusCode, strings.Count(file, "\n"))
		}
	}

	// Ingestion continues through the survivor.
	for d := 0; d < 3; d++ {
		ingestDay(time.Date(2026, 11, 1+d, 0, 0, 0, 0, time.UTC), 100)
	}
	stack.Clock.Set(time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC))
	forwardAll("the survivor")
	resp, body := e2e.Call(t, http.DefaultClient, "GET", front.URL+"/v1/usage/forwarded?subscriptionId="+W.ContosoDefault, "ha-op", "", nil)
	var fw struct {
		Value []ledger.ChargedTotal `json:"value"`
	}
	_ = json.Unmarshal([]byte(body), &fw)
	got := money.Zero
	for _, v := range fw.Value {
		got = got.Add(v.Quantity)
	}
	if resp.StatusCode != 200 || !got.Equal(want) {
		t.Fatalf("forwarded through two instances and a kill: %s, want %s", got, want)
	}
	b.Kill9()

	db, err := store.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := audit.Seal(ctx, db); err != nil {
		t.Fatal(err)
	}
	var periods, invoices, finalizeRecords int
	_ = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM billing_periods WHERE period = '2026-10'`).Scan(&periods)
	_ = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM invoices WHERE period = '2026-10'`).Scan(&invoices)
	_ = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_log WHERE action = 'invoice.finalize'`).Scan(&finalizeRecords)
	if periods != 1 || invoices != 1 || finalizeRecords != 1 {
		t.Fatalf("October finalized by two racing instances: %d period rows, %d invoices, %d finalize records; want 1, 1, 1", periods, invoices, finalizeRecords)
	}
	if _, err := audit.Verify(ctx, db, nil, nil); err != nil {
		t.Fatal(err)
	}
}
