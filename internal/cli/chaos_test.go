package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestChaos runs commerce and two stacks (each with its bridge) as real
// processes on a simulated clock that crosses a month end, and for the whole
// run: producers post usage to both stacks, re-sending until acknowledged; a
// loop kills (kill -9) and restarts a random process at least 50 times; the
// proxy in front of commerce answers errors, drops connections (before and
// after commerce commits) and hangs; one stack's storage fills up and later
// frees; invoices are read and October is finalized automatically. At the
// end every acknowledged event is billed exactly once: forwarded usage and
// the invoices' quantities equal what was acknowledged, to the last digit.
func TestChaos(t *testing.T) {
	// Not parallel: its storage-full window is timed on a simulated clock,
	// and a machine shared with other tests may not fill it.
	if testing.Short() {
		t.Skip("runs processes for about two minutes")
	}
	bin := e2e.BuildBinary(t, "../..")
	ctx := t.Context()
	dir := t.TempDir()
	const rate = 1800 // simulated seconds per real second: an hour every 2 s
	vStart := time.Date(2026, 10, 31, 20, 0, 0, 0, time.UTC)
	wall0 := time.Now()
	vnow := func() time.Time { return vStart.Add(time.Since(wall0) * rate) }
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "chaos"}
	const baseVM = "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5"

	// Commerce: the directory, a price list, and two registered stamps.
	comDB := filepath.Join(dir, "commerce.db")
	comAddr := e2e.FreeAddr(t)
	proxy := e2e.NewFaultProxy("http://"+comAddr, 3)
	front := httptest.NewServer(proxy)
	defer front.Close()
	com := buildApp(t, Options{DB: comDB, Clock: clock.Manual(vnow())})
	if _, err := com.Directory.Import(ctx, "chaos", storetest.WorldJSON()); err != nil {
		t.Fatal(err)
	}
	if _, err := com.Billing.ImportPriceList(ctx, op, "chaos", []byte(testPriceListUSD), time.Time{}); err != nil {
		t.Fatal(err)
	}
	type stamp struct {
		name, db, addr, defaultSub, partner string
		subs                                []string
		writer                              string
		p                                   *e2e.Proc
		acked                               money.Quantity
		events, refusedFull                 atomic.Int64
		lastRefusal                         atomic.Value // string: the last answer that was not 200, for diagnosis
	}
	stamps := []*stamp{
		{name: "a", defaultSub: W.ContosoDefault, partner: "contoso"},
		{name: "b", defaultSub: W.NorthwindDefault, partner: "northwind"},
	}
	for _, s := range stamps {
		s.db, s.addr, s.acked = filepath.Join(dir, s.name+".db"), e2e.FreeAddr(t), money.Zero
		st := buildApp(t, Options{DB: s.db, Clock: clock.Manual(vnow())})
		for i := 0; i < 4; i++ {
			sub, tenant := randomGUID(), randomGUID()
			onboardLocal(t, st, tenant, sub)
			s.subs = append(s.subs, sub)
		}
		activateStack(t, com, st, registration.Key{SubscriptionID: s.defaultSub, ResourceGroup: "azurestack", Name: "chaos-" + s.name}, front.URL, vnow())
		var err error
		if s.writer, _, err = st.Auth.Create(ctx, auth.RoleUsageWriter, "", "", "chaos", 0); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	com.Close()

	// The processes. Each (re)start continues the one simulated timeline.
	comProc := &e2e.Proc{T: t, Bin: bin, URL: "http://" + comAddr, Env: []string{"STACKBILL_OPERATOR_TOKEN=chaos-op"}}
	comProc.Args = []string{"serve", "--role", "commerce", "--addr", comAddr, "--db", comDB, "--invoice-grace", "2h", "--log-level", "error"}
	for _, s := range stamps {
		s.p = &e2e.Proc{T: t, Bin: bin, URL: "http://" + s.addr, Env: []string{"STACKBILL_OPERATOR_TOKEN=chaos-op"}}
		s.p.Args = []string{"serve", "--role", "stack", "--addr", s.addr, "--db", s.db, "--bridge-max-backoff", "500ms", "--log-level", "error"}
	}
	start := func(p *e2e.Proc, extra ...string) {
		base := p.Args
		p.Args = append(append(append([]string{}, base...), "--clock-start", vnow().Format(time.RFC3339Nano), "--clock-rate", fmt.Sprint(rate)), extra...)
		p.Start()
		p.Args = base
	}
	start(comProc)
	for _, s := range stamps {
		start(s.p)
	}
	var procMu sync.Mutex // restarts and the final checks take turns
	defer func() {
		procMu.Lock()
		defer procMu.Unlock()
		comProc.Kill9()
		for _, s := range stamps {
			s.p.Kill9()
		}
	}()

	// Producers: one per stamp, re-sending each batch until acknowledged.
	stop := make(chan struct{})
	var producers sync.WaitGroup
	hc := &http.Client{Timeout: 5 * time.Second}
	for si, s := range stamps {
		producers.Add(1)
		go func() {
			defer producers.Done()
			r := rand.New(rand.NewPCG(uint64(si), 99))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var body bytes.Buffer
				batch := money.Zero
				hour := clock.HourStart(vnow()).Add(-2 * time.Hour)
				for i := 0; i < 25; i++ {
					q := money.MustQuantity(fmt.Sprintf("%d.%02d", r.IntN(4), r.IntN(100)))
					batch = batch.Add(q)
					fmt.Fprintf(&body, `{"id":"%s-%d-%d","subscriptionId":"%s","meterId":"%s","quantity":"%s","startTime":"%s","endTime":"%s"}`+"\n",
						s.name, n, i, s.subs[r.IntN(len(s.subs))], baseVM, q, hour.Format(time.RFC3339), hour.Add(time.Hour).Format(time.RFC3339))
				}
				for {
					req, _ := http.NewRequest("POST", s.p.URL+"/v1/usage/events", bytes.NewReader(body.Bytes()))
					req.Header.Set("Authorization", "Bearer "+s.writer)
					req.Header.Set("Content-Type", "application/x-ndjson")
					resp, err := hc.Do(req)
					if err == nil {
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							var res struct {
								Rejected []any `json:"rejected"`
							}
							if json.Unmarshal(b, &res) != nil || len(res.Rejected) > 0 {
								t.Errorf("stamp %s rejected valid events: %s", s.name, b)
							}
							s.acked = s.acked.Add(batch)
							s.events.Add(25)
							break
						}
						if resp.StatusCode == http.StatusInsufficientStorage && strings.Contains(string(b), "InsufficientStorage") {
							s.refusedFull.Add(1)
						}
						s.lastRefusal.Store(fmt.Sprintf("%s: %d %.300s", vnow().Format(time.RFC3339), resp.StatusCode, b))
					} else {
						s.lastRefusal.Store(fmt.Sprintf("%s: %v", vnow().Format(time.RFC3339), err))
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	// Invoices are read throughout, as partners and the portal would.
	invoiceReads := atomic.Int64{}
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(400 * time.Millisecond):
			}
			for _, period := range []string{"2026-10", "2026-11"} {
				if resp, err := hc.Do(e2e.NewRequest("GET", comProc.URL+"/v1/billing/invoices?period="+period, "chaos-op", "", nil)); err == nil {
					resp.Body.Close()
					invoiceReads.Add(1)
				}
			}
		}
	}()

	// Chaos: kill -9 and restart a random process, at least 50 times, with
	// the proxy failing requests; stamp b's storage fills for a while.
	proxy.Faults.Store(true)
	r := rand.New(rand.NewPCG(7, 8))
	kills := map[string]int{}
	var bAtRecovery int64
	const totalKills = 54
	for k := 0; k < totalKills; k++ {
		time.Sleep(time.Duration(300+r.IntN(900)) * time.Millisecond)
		procMu.Lock()
		switch v := r.IntN(3); {
		case k == 20: // b's disk fills: restart it capped just above its size
			fi, err := os.Stat(stamps[1].db)
			if err != nil {
				t.Fatal(err)
			}
			stamps[1].p.Kill9()
			start(stamps[1].p, "--db-max-bytes", fmt.Sprint(fi.Size()+32<<10))
			kills["b"]++
		case k >= 20 && k < 32 && v == 2:
			// While b is full, other processes are killed instead.
			comProc.Kill9()
			start(comProc)
			kills["commerce"]++
		case k == 32: // space returns
			stamps[1].p.Kill9()
			start(stamps[1].p)
			kills["b"]++
			bAtRecovery = stamps[1].events.Load()
		case v == 0:
			comProc.Kill9()
			start(comProc)
			kills["commerce"]++
		default:
			s := stamps[v-1]
			s.p.Kill9()
			start(s.p)
			kills[s.name]++
		}
		procMu.Unlock()
	}
	proxy.Faults.Store(false)
	close(stop)
	producers.Wait()

	// Drain: both bridges forward every hour in which an event could have
	// been acknowledged. A stack's clock trails the test's by the time its
	// last restart took (it starts from vnow() when launched), so its
	// reported hours are no later than the test's: everything acknowledged
	// lies before lastHour+1h on every clock. The stack itself says when
	// all hours before an instant are in commerce (forwardedThrough); its
	// watermark says only where the last record was, and may rightly stop
	// short of lastHour when no event landed in it on the stack's clock.
	lastHour := clock.HourStart(vnow())
	done := lastHour.Add(time.Hour)
	skew := map[string]time.Duration{}
	for _, s := range stamps {
		var h struct {
			Time time.Time `json:"time"`
		}
		if resp, err := hc.Get(s.p.URL + "/healthz"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			skew[s.name] = vnow().Sub(h.Time).Round(time.Second)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, s := range stamps {
		for {
			var st bridge.Status
			resp, err := hc.Do(e2e.NewRequest("GET", s.p.URL+"/v1/stack/bridge", "chaos-op", "", nil))
			if err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				if st.ForwardedThrough != nil && !st.ForwardedThrough.Before(done) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("stamp %s did not catch up: %+v %v; last hour %s; clock behind the test's by %v; %d events acknowledged; intake's last refusal: %v",
					s.name, st, err, lastHour.Format(time.RFC3339), skew[s.name], s.events.Load(), s.lastRefusal.Load())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}

	// Every acknowledged event is forwarded, charged and invoiced once.
	for _, s := range stamps {
		resp, err := hc.Do(e2e.NewRequest("GET", comProc.URL+"/v1/usage/forwarded?subscriptionId="+s.defaultSub, "chaos-op", "", nil))
		if err != nil {
			t.Fatal(err)
		}
		var fw struct {
			Value []ledger.ChargedTotal `json:"value"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&fw)
		resp.Body.Close()
		forwarded := money.Zero
		for _, v := range fw.Value {
			forwarded = forwarded.Add(v.Quantity)
		}
		invoiced := money.Zero
		finals := 0
		for _, period := range []string{"2026-10", "2026-11"} {
			resp, err := hc.Do(e2e.NewRequest("GET", comProc.URL+"/v1/billing/invoices/SB-"+strings.ReplaceAll(period, "-", "")+"-"+s.partner, "chaos-op", "", nil))
			if err != nil {
				t.Fatal(err)
			}
			var inv struct {
				Status   string `json:"status"`
				Sections []struct {
					Lines []struct {
						MeterID        string         `json:"meterId"`
						BilledQuantity money.Quantity `json:"billedQuantity"`
					} `json:"lines"`
				} `json:"sections"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&inv)
			resp.Body.Close()
			if inv.Status == "final" {
				finals++
			}
			for _, sec := range inv.Sections {
				for _, l := range sec.Lines {
					invoiced = invoiced.Add(l.BilledQuantity)
				}
			}
		}
		if !forwarded.Equal(s.acked) || !invoiced.Equal(s.acked) {
			t.Errorf("stamp %s: acknowledged %s in %d events; forwarded %s; invoiced %s", s.name, s.acked, s.events.Load(), forwarded, invoiced)
		}
		if finals != 1 {
			t.Errorf("stamp %s: %d final invoices for October, want exactly 1", s.name, finals)
		}
	}
	procMu.Lock()
	comProc.Kill9()
	for _, s := range stamps {
		s.p.Kill9()
	}
	procMu.Unlock()
	for _, path := range []string{comDB, stamps[0].db, stamps[1].db} {
		db, err := store.Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		var check string
		if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
			t.Errorf("%s integrity: %q %v", filepath.Base(path), check, err)
		}
		if path == comDB {
			if _, err := audit.Verify(ctx, db, nil, nil); err != nil {
				t.Error(err)
			}
			var finals int
			_ = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM invoices WHERE period = '2026-10'`).Scan(&finals)
			if finals != 2 {
				t.Errorf("%d final October invoices stored, want 2", finals)
			}
		}
		db.Close()
	}
	if stamps[1].refusedFull.Load() == 0 {
		t.Error("stamp b's full storage never refused an event with 507 InsufficientStorage")
	}
	if stamps[1].events.Load() <= bAtRecovery {
		t.Errorf("stamp b acknowledged nothing after space returned (%d events before, %d after)", bAtRecovery, stamps[1].events.Load())
	}
	total := 0
	for _, n := range kills {
		total += n
	}
	if total < 50 {
		t.Errorf("only %d kills", total)
	}
	for _, mode := range []string{"error", "drop", "drop-after", "hang"} {
		if proxy.Counts()[mode] == 0 {
			t.Errorf("the proxy never injected %q", mode)
		}
	}
	t.Logf("chaos: stamp clocks behind the test's by %v", skew)
	t.Logf("chaos: %d kill -9 (%v); proxy faults %v; %d events acknowledged (%d + %d), %d refused while b was full; %d invoice reads; totals exact: a %s, b %s",
		total, kills, proxy.Counts(), stamps[0].events.Load()+stamps[1].events.Load(), stamps[0].events.Load(), stamps[1].events.Load(), stamps[1].refusedFull.Load(), invoiceReads.Load(), stamps[0].acked, stamps[1].acked)
}
