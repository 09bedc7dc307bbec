package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// registerStack registers stack on commerce under k with a PayAsYouUse
// token from the stack, approves it for multi-tenancy, and returns the
// activation key naming usageEndpoint, with commerce's keys to verify it.
func registerStack(ctx context.Context, com, stack *App, k registration.Key, usageEndpoint string) (string, bridge.JWKS, error) {
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "setup"}
	tok, err := bridge.RegistrationToken(ctx, stack.DB, "PayAsYouUse", "", nil)
	if err != nil {
		return "", bridge.JWKS{}, err
	}
	loc := "global"
	if _, _, err := com.Registrations.Put(ctx, op, k, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{}); err != nil {
		return "", bridge.JWKS{}, err
	}
	if _, err := com.Registrations.Approve(ctx, op, k, true); err != nil {
		return "", bridge.JWKS{}, err
	}
	key, err := bridge.NewIssuer(com.Signer, com.Registrations, com.Auth, com.Clock.Now).ActivationKey(ctx, op, k, usageEndpoint)
	if err != nil {
		return "", bridge.JWKS{}, err
	}
	keys, err := com.Signer.JWKS(ctx)
	return key, keys, err
}

// ForwardBenchResult is what the forwarding benchmark measured.
type ForwardBenchResult struct {
	Records int
	// Duration is until commerce acknowledged the last batch: every record
	// mapped, deduplicated and durable in its log.
	Duration time.Duration
	// Ingest is commerce's server time for the bridge's batches.
	Ingest time.Duration
	// Materialized is until every record was also in commerce_usage, where
	// billing reads it (measured from the same start).
	Materialized time.Duration
	// Sealed is how long the stack took to seal the backlog into its
	// outbox, before the catch-up: a stack does it as each hour closes,
	// commerce reachable or not.
	Sealed time.Duration
}

// RunForwardBench builds a registered, activated stack with a backlog of
// tenants × days × 24 hours × 2 meters of records (half the tenants mapped
// to customer subscriptions) and times the bridge catching up with commerce
// over loopback HTTP, mapping and deduplication included.
// A non-empty cpuProfile profiles the catch-up alone into that file.
func RunForwardBench(ctx context.Context, com *App, stack *App, tenants, days, batch int, progress io.Writer, cpuProfile string) (ForwardBenchResult, error) {
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "bench"}
	partner := "bench-" + randomGUID()[:8]
	defSub := randomGUID()
	type tenantRec struct{ dir, localSub, cspSub string }
	var ts []tenantRec
	doc := map[string]any{"partners": []map[string]string{{"id": partner, "name": "Bench CSP", "type": "DirectCSP"}}}
	customers := []map[string]string{}
	subs := []map[string]string{{"id": defSub, "offer": "CSPSS", "partner": partner}}
	for i := 0; i < tenants; i++ {
		t := tenantRec{dir: randomGUID(), localSub: randomGUID(), cspSub: randomGUID()}
		ts = append(ts, t)
		customers = append(customers, map[string]string{"tenantId": t.dir, "name": fmt.Sprint("c", i), "partner": partner})
		subs = append(subs, map[string]string{"id": t.cspSub, "offer": "CSP", "partner": partner, "customerTenantId": t.dir})
	}
	doc["customers"], doc["subscriptions"] = customers, subs
	data, _ := json.Marshal(doc)
	if _, err := com.Directory.Import(ctx, "bench", data); err != nil {
		return ForwardBenchResult{}, err
	}
	// Commerce's side is timed on its own: the server time of every bridge
	// POST (decompression, decoding, mapping, the deduplicated write).
	var ingest atomic.Int64
	timed := &App{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		com.Handler.ServeHTTP(w, r)
		if r.URL.Path == "/v1/bridge/usage" {
			ingest.Add(int64(time.Since(t0)))
		}
	})}
	comURL, stop, err := serveLoopback(timed)
	if err != nil {
		return ForwardBenchResult{}, err
	}
	defer stop()
	k := registration.Key{SubscriptionID: defSub, ResourceGroup: "azurestack", Name: "bench-stamp"}
	key, keys, err := registerStack(ctx, com, stack, k, comURL)
	if err != nil {
		return ForwardBenchResult{}, err
	}
	for i, t := range ts {
		if i%2 == 0 {
			if _, err := com.Registrations.PutCustomerSubscription(ctx, op, k, t.cspSub, t.dir, registration.Precondition{}); err != nil {
				return ForwardBenchResult{}, err
			}
		}
	}
	if _, err := bridge.Activate(ctx, stack.DB, key, keys, stack.Clock.Now()); err != nil {
		return ForwardBenchResult{}, err
	}
	sop := auth.Principal{Role: auth.RoleStackOperator, TokenID: "bench"}
	for _, t := range ts {
		if _, _, err := stack.Tenancy.PutDirectoryTenant(ctx, sop, stack.Tenancy.Provider(), tenancy.DirectoryTenant{Name: t.dir, TenantID: t.dir}); err != nil {
			return ForwardBenchResult{}, err
		}
		if _, _, err := stack.Tenancy.PutSubscription(ctx, sop, stack.Tenancy.Provider(), t.localSub, tenancy.Subscription{TenantID: t.dir, Owner: "o", OfferID: "o"}); err != nil {
			return ForwardBenchResult{}, err
		}
	}
	// The backlog: each hour's records reported in that hour, as a stack
	// cut off from commerce for days would hold them.
	end := clock.HourStart(stack.Clock.Now().Add(-time.Hour))
	start := end.Add(-time.Duration(days) * 24 * time.Hour)
	bar := newProgress(progress, int64(days*24), "building the backlog")
	records := 0
	for h := start; h.Before(end); h = h.Add(time.Hour) {
		evs := make([]*usage.Event, 0, 2*len(ts))
		for _, t := range ts {
			for _, m := range []struct{ id, q string }{{simulate.MeterBaseVM, "4"}, {simulate.MeterBlockBlob, "12.25"}} {
				q := money.MustQuantity(m.q)
				s, e := h, h.Add(time.Hour)
				evs = append(evs, &usage.Event{ID: t.localSub + m.id + fmt.Sprint(h.Unix()), SubscriptionID: t.localSub, MeterID: m.id, Quantity: &q, StartTime: &s, EndTime: &e,
					ResourceURI: "/subscriptions/" + t.localSub + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1", Location: "local"})
			}
		}
		res, err := stack.Usage.IngestAt(ctx, h.Add(time.Hour-time.Minute), evs)
		if err != nil {
			return ForwardBenchResult{}, err
		}
		records += res.Accepted
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	f := bridge.NewForwarder(stack.DB, stack.Clock, stack.Tenancy, stack.Usage, stack.Logger, batch)
	// The hours closed while commerce was out of reach, and the stack sealed
	// each into its outbox as it closed; here all at once, timed apart.
	ts0 := time.Now()
	if n, err := f.Seal(ctx); err != nil || n != records {
		return ForwardBenchResult{}, fmt.Errorf("sealed %d of %d records: %v", n, records, err)
	}
	sealed := time.Since(ts0)
	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		return ForwardBenchResult{}, err
	}
	defer stopProfile()
	t0 := time.Now()
	sent, err := f.CatchUp(ctx)
	if err != nil {
		return ForwardBenchResult{}, err
	}
	if sent != records {
		return ForwardBenchResult{}, fmt.Errorf("forwarded %d of %d records", sent, records)
	}
	acked := time.Since(t0)
	if err := com.Ingestor.Settle(ctx); err != nil {
		return ForwardBenchResult{}, err
	}
	materialized := time.Since(t0)
	stopProfile()
	// The figure counts only records that reached billing exactly once.
	var stored int
	if err := com.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM commerce_usage WHERE cloud_id = (SELECT cloud_id FROM registrations WHERE name = ? AND subscription_id = ?)`,
		k.Name, k.SubscriptionID).Scan(&stored); err != nil {
		return ForwardBenchResult{}, err
	}
	if stored != records {
		return ForwardBenchResult{}, fmt.Errorf("commerce holds %d of %d forwarded records", stored, records)
	}
	return ForwardBenchResult{Records: sent, Duration: acked, Ingest: time.Duration(ingest.Load()), Materialized: materialized, Sealed: sealed}, nil
}

func benchForward(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "bench forward")
	dbFlag := fs.String("db", "", "commerce database (default: a fresh SQLite file); the stack is always a fresh SQLite file")
	tenants := fs.Int("tenants", 1000, "tenants on the stack")
	days := fs.Int("days", 7, "days of backlog")
	batch := fs.Int("batch", bridge.MaxRecords, "records per forwarded batch")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the catch-up (both sides) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	com, _, closeCom, err := openBenchApp(ctx, *dbFlag)
	if err != nil {
		return err
	}
	defer closeCom()
	dir, err := os.MkdirTemp("", "stackbill-bench-stack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	stack, err := Build(ctx, Options{DB: filepath.Join(dir, "stack.db")})
	if err != nil {
		return err
	}
	defer stack.Close()
	res, err := RunForwardBench(ctx, com, stack, *tenants, *days, *batch, env.Stderr, *cpuProfile)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "bridge catch-up: %d tenants × %d days backlog, stack on sqlite → commerce on %s over loopback HTTP, batches of %d, mapping and dedup\n",
		*tenants, *days, com.DB.Dialect, *batch)
	fmt.Fprintln(tw, "RECORDS\tSEALED (STACK)\tRECORDS/S\tACKNOWLEDGED\tRECORDS/S\tIN COMMERCE_USAGE\tRECORDS/S")
	fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%.0f\t%s\t%.0f\n", res.Records, res.Sealed.Round(time.Millisecond), float64(res.Records)/res.Sealed.Seconds(),
		res.Duration.Round(time.Millisecond), float64(res.Records)/res.Duration.Seconds(),
		res.Materialized.Round(time.Millisecond), float64(res.Records)/res.Materialized.Seconds())
	return tw.Flush()
}
