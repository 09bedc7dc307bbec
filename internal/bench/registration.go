package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/tenancy"
)

// World is a seeded directory and an approved PayAsYouUse registration,
// used by the registration benchmark and by tests.
type World struct {
	Key       registration.Key
	Customers []Customer
}

// Customer has two CSP subscriptions, so that alternating PUTs replace
// the tenant's mapping every time: each PUT is a real write (close the old
// mapping, open the new one, record the event), never an idempotent no-op.
type Customer struct{ Tenant, Subscription, Second string }

// SeedWorld creates a direct CSP with a CSPSS default subscription, n
// customers with CSP subscriptions, and an approved registration.
func SeedWorld(ctx context.Context, app *Instance, n int) (World, error) {
	partner := "bench-" + tenancy.NewGUID()[:8]
	defSub := tenancy.NewGUID()
	doc := map[string]any{}
	partners := []map[string]string{{"id": partner, "name": "Bench CSP", "type": "DirectCSP"}}
	var customers, subs []map[string]string
	subs = append(subs, map[string]string{"id": defSub, "offer": "CSPSS", "partner": partner})
	w := World{Key: registration.Key{SubscriptionID: defSub, ResourceGroup: "azurestack", Name: "bench-" + tenancy.NewGUID()[:8]}}
	for i := 0; i < n; i++ {
		c := Customer{Tenant: tenancy.NewGUID(), Subscription: tenancy.NewGUID(), Second: tenancy.NewGUID()}
		w.Customers = append(w.Customers, c)
		customers = append(customers, map[string]string{"tenantId": c.Tenant, "name": fmt.Sprintf("Customer %d", i), "partner": partner})
		subs = append(subs, map[string]string{"id": c.Subscription, "offer": "CSP", "partner": partner, "customerTenantId": c.Tenant},
			map[string]string{"id": c.Second, "offer": "CSP", "partner": partner, "customerTenantId": c.Tenant})
	}
	doc["partners"], doc["customers"], doc["subscriptions"] = partners, customers, subs
	data, _ := json.Marshal(doc)
	if _, err := app.Directory.Import(ctx, "bench", data); err != nil {
		return w, err
	}
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "bench"}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return w, err
	}
	tok := registration.Token{CloudID: tenancy.NewGUID(), ObjectID: tenancy.NewGUID(), BillingModel: registration.PayAsYouUse}.Sign(key)
	loc := "global"
	if _, _, err := app.Registrations.Put(ctx, op, w.Key, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{}); err != nil {
		return w, err
	}
	if _, err := app.Registrations.Approve(ctx, op, w.Key, true); err != nil {
		return w, err
	}
	return w, nil
}

// RegistrationResult holds what the benchmark measured.
type RegistrationResult struct {
	Clients  int
	Duration time.Duration
	Puts     int64
	Gets     int64
	Errors   int64
	PutP50   time.Duration
	PutP99   time.Duration
	GetP50   time.Duration
	GetP99   time.Duration
	// CPU is what the run cost this process and PostgreSQL.
	CPU cpuTimes
}

// PutsPerSecond is the PUT throughput.
func (r RegistrationResult) PutsPerSecond() float64 {
	return float64(r.Puts) / r.Duration.Seconds()
}

// GetsPerSecond is the GET throughput.
func (r RegistrationResult) GetsPerSecond() float64 {
	return float64(r.Gets) / r.Duration.Seconds()
}

// Registration drives customerSubscription PUT+GET pairs over loopback
// HTTP from clients concurrent clients against a seeded world, for d, or for
// ops pairs in all when ops > 0 (go test -bench).
func Registration(ctx context.Context, app *Instance, operatorToken string, clients int, d time.Duration, ops, tenants int, progress Progress) (RegistrationResult, error) {
	if tenants < clients {
		tenants = clients
	}
	// As serve does: on PostgreSQL the directory's answers are kept in
	// memory while a connection hears every change.
	lctx, stopListening := context.WithCancel(ctx)
	defer stopListening()
	go app.DB.ListenChanges(lctx)
	world, err := SeedWorld(ctx, app, tenants)
	if err != nil {
		return RegistrationResult{}, fmt.Errorf("seed: %w", err)
	}
	// Every tenant mapped once before the clock starts, as in a deployment
	// that has its customers, so that every timed PUT replaces a mapping;
	// then the database settles as after any load (PostgreSQL's statistics
	// would otherwise describe an empty table for the first minute, and
	// its plans tie between the two live-mapping indexes).
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "bench"}
	for _, c := range world.Customers {
		if _, err := app.Registrations.PutCustomerSubscription(ctx, op, world.Key, c.Second, c.Tenant, registration.Precondition{}); err != nil {
			return RegistrationResult{}, fmt.Errorf("seed mappings: %w", err)
		}
	}
	if err := app.DB.Settle(ctx); err != nil {
		return RegistrationResult{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return RegistrationResult{}, err
	}
	srv := &http.Server{Handler: app.Handler}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String() + "/subscriptions/" + world.Key.SubscriptionID + "/resourceGroups/" + world.Key.ResourceGroup +
		"/providers/Microsoft.AzureStack/registrations/" + world.Key.Name + "/customerSubscriptions/"
	tr := &http.Transport{MaxIdleConnsPerHost: clients * 2}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()

	var puts, gets, errs atomic.Int64
	putLat := make([][]time.Duration, clients)
	getLat := make([][]time.Duration, clients)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	bar := progress.start(int64(d/time.Second), "customerSubscriptions PUT+GET")
	stopBar := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if bar != nil {
					_ = bar.Add(1)
				}
			case <-stopBar:
				return
			}
		}
	}()
	start, cpu0 := time.Now(), cpuNow()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Each client owns the tenants w, w+clients, w+2*clients, … so no
			// two clients race on one tenant, and flips between its two
			// subscriptions on every visit.
			mine := (len(world.Customers) - w + clients - 1) / clients
			quota := (ops + clients - 1 - w) / clients
			for i := 0; ctx.Err() == nil; i++ {
				if ops > 0 && i >= quota || ops <= 0 && !time.Now().Before(deadline) {
					break
				}
				c := world.Customers[w+clients*(i%mine)]
				sub := c.Subscription
				if (i/mine)%2 == 1 {
					sub = c.Second
				}
				body, _ := json.Marshal(map[string]any{"properties": map[string]string{"tenantId": c.Tenant}})
				t0 := time.Now()
				ok := benchDo(hc, "PUT", base+sub+"?api-version=2017-06-01", operatorToken, body)
				putLat[w] = append(putLat[w], time.Since(t0))
				if ok {
					puts.Add(1)
				} else {
					errs.Add(1)
				}
				t0 = time.Now()
				ok = benchDo(hc, "GET", base+sub+"?api-version=2017-06-01", operatorToken, nil)
				getLat[w] = append(getLat[w], time.Since(t0))
				if ok {
					gets.Add(1)
				} else {
					errs.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopBar)
	if bar != nil {
		_ = bar.Finish()
	}
	res := RegistrationResult{Clients: clients, Duration: elapsed, Puts: puts.Load(), Gets: gets.Load(), Errors: errs.Load(), CPU: cpuNow().since(cpu0)}
	res.PutP50, res.PutP99 = percentiles(putLat)
	res.GetP50, res.GetP99 = percentiles(getLat)
	return res, nil
}

func benchDo(hc *http.Client, method, url, token string, body []byte) bool {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func percentiles(per [][]time.Duration) (p50, p99 time.Duration) {
	var all []time.Duration
	for _, l := range per {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return 0, 0
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all[len(all)*50/100], all[min(len(all)-1, len(all)*99/100)]
}
