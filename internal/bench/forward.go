package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/tenancy"
)

// RegisterStack registers the stack whose database is stackDB on commerce
// under k with a PayAsYouUse token from the stack, approves it for
// multi-tenancy, and returns the activation key naming usageEndpoint, with
// commerce's keys to verify it.
func RegisterStack(ctx context.Context, com *Instance, stackDB *store.DB, k registration.Key, usageEndpoint string) (string, bridge.JWKS, error) {
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "setup"}
	tok, err := bridge.RegistrationToken(ctx, stackDB, "PayAsYouUse", "", nil)
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
	key, err := com.Issuer.ActivationKey(ctx, op, k, usageEndpoint)
	if err != nil {
		return "", bridge.JWKS{}, err
	}
	keys, err := com.Signer.JWKS(ctx)
	return key, keys, err
}

// benchTenant is one of a bench stack's tenants: its directory tenant, its
// user subscription on the stack, and its CSP subscription on commerce.
type benchTenant struct{ dir, localSub, cspSub string }

// stackWorld is a stack registered with commerce and activated, whose
// tenants are customers of one direct CSP.
type stackWorld struct {
	key     registration.Key
	tenants []benchTenant
}

// connect builds a stack world of tenants customers (half of them mapped to
// their CSP subscriptions, half charged to the registration's default),
// registered on com, activated on stack with commerce's usage endpoint at
// comURL, and onboarded on the stack.
func connect(ctx context.Context, com, stack *Instance, tenants int, comURL string) (stackWorld, error) {
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "bench"}
	partner := "bench-" + tenancy.NewGUID()[:8]
	defSub := tenancy.NewGUID()
	var ts []benchTenant
	doc := map[string]any{"partners": []map[string]string{{"id": partner, "name": "Bench CSP", "type": "DirectCSP"}}}
	customers := []map[string]string{}
	subs := []map[string]string{{"id": defSub, "offer": "CSPSS", "partner": partner}}
	for i := 0; i < tenants; i++ {
		t := benchTenant{dir: tenancy.NewGUID(), localSub: tenancy.NewGUID(), cspSub: tenancy.NewGUID()}
		ts = append(ts, t)
		customers = append(customers, map[string]string{"tenantId": t.dir, "name": fmt.Sprint("c", i), "partner": partner})
		subs = append(subs, map[string]string{"id": t.cspSub, "offer": "CSP", "partner": partner, "customerTenantId": t.dir})
	}
	doc["customers"], doc["subscriptions"] = customers, subs
	data, _ := json.Marshal(doc)
	if _, err := com.Directory.Import(ctx, "bench", data); err != nil {
		return stackWorld{}, err
	}
	k := registration.Key{SubscriptionID: defSub, ResourceGroup: "azurestack", Name: "bench-stamp"}
	key, keys, err := RegisterStack(ctx, com, stack.DB, k, comURL)
	if err != nil {
		return stackWorld{}, err
	}
	for i, t := range ts {
		if i%2 == 0 {
			if _, err := com.Registrations.PutCustomerSubscription(ctx, op, k, t.cspSub, t.dir, registration.Precondition{}); err != nil {
				return stackWorld{}, err
			}
		}
	}
	if _, err := bridge.Activate(ctx, stack.DB, key, keys, stack.Clock.Now()); err != nil {
		return stackWorld{}, err
	}
	sop := auth.Principal{Role: auth.RoleStackOperator, TokenID: "bench"}
	for _, t := range ts {
		if _, _, err := stack.Tenancy.PutDirectoryTenant(ctx, sop, stack.Tenancy.Provider(), tenancy.DirectoryTenant{Name: t.dir, TenantID: t.dir}); err != nil {
			return stackWorld{}, err
		}
		if _, _, err := stack.Tenancy.PutSubscription(ctx, sop, stack.Tenancy.Provider(), t.localSub, tenancy.Subscription{TenantID: t.dir, Owner: "o", OfferID: "o"}); err != nil {
			return stackWorld{}, err
		}
	}
	return stackWorld{key: k, tenants: ts}, nil
}

// ForwardResult is what the forwarding benchmark measured.
type ForwardResult struct {
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
	// CPU is what the catch-up, through materialisation, cost this
	// process (stack and commerce) and PostgreSQL.
	CPU cpuTimes
}

// Forward builds a registered, activated stack with a backlog of
// tenants × days × 24 hours × 2 meters of records (half the tenants mapped
// to customer subscriptions) and times the bridge catching up with commerce
// over loopback HTTP, mapping and deduplication included.
// A non-empty cpuProfile profiles the catch-up alone into that file.
func Forward(ctx context.Context, com *Instance, stack *Instance, tenants, days int, progress Progress, cpuProfile string) (ForwardResult, error) {
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "bench"}
	// Commerce's side is timed on its own: the server time of every bridge
	// POST (decompression, decoding, mapping, the deduplicated write).
	var ingest atomic.Int64
	timed := &Instance{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		com.Handler.ServeHTTP(w, r)
		if r.URL.Path == "/v1/bridge/usage" {
			ingest.Add(int64(time.Since(t0)))
		}
	})}
	comURL, stop, err := serveLoopback(timed)
	if err != nil {
		return ForwardResult{}, err
	}
	defer stop()
	sw, err := connect(ctx, com, stack, tenants, comURL)
	if err != nil {
		return ForwardResult{}, err
	}
	k, ts := sw.key, sw.tenants
	// The backlog: each hour's records reported in that hour, as a stack
	// cut off from commerce for days would hold them.
	records, err := buildBacklog(ctx, stack, ts, days*24, progress.start(int64(days*24), "building the backlog"))
	if err != nil {
		return ForwardResult{}, err
	}
	f := stack.Forwarder
	// The hours closed while commerce was out of reach, and the stack sealed
	// each into its outbox as it closed; here all at once, timed apart.
	ts0 := time.Now()
	if n, err := f.Seal(ctx); err != nil || n != records {
		return ForwardResult{}, fmt.Errorf("sealed %d of %d records: %v", n, records, err)
	}
	sealed := time.Since(ts0)
	stopProfile, err := StartCPUProfile(cpuProfile)
	if err != nil {
		return ForwardResult{}, err
	}
	defer stopProfile()
	t0, cpu0 := time.Now(), cpuNow()
	sent, err := f.CatchUp(ctx)
	if err != nil {
		return ForwardResult{}, err
	}
	if sent != records {
		return ForwardResult{}, fmt.Errorf("forwarded %d of %d records", sent, records)
	}
	acked := time.Since(t0)
	if err := com.Ledger.Settle(ctx); err != nil {
		return ForwardResult{}, err
	}
	materialized, cpu := time.Since(t0), cpuNow().since(cpu0)
	stopProfile()
	// The figure counts only records that reached billing exactly once.
	reg, err := com.Registrations.Get(ctx, op, k)
	if err != nil {
		return ForwardResult{}, err
	}
	stored, err := com.Ledger.Stored(ctx, reg.CloudID)
	if err != nil {
		return ForwardResult{}, err
	}
	if stored != int64(records) {
		return ForwardResult{}, fmt.Errorf("commerce holds %d of %d forwarded records", stored, records)
	}
	return ForwardResult{Records: sent, Duration: acked, Ingest: time.Duration(ingest.Load()), Materialized: materialized, Sealed: sealed, CPU: cpu}, nil
}
