package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// serveLoopback serves app on a loopback port until the returned stop runs.
func serveLoopback(app *Instance) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: app.Handler}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// IntakeResult is what the intake benchmark measured.
type IntakeResult struct {
	Events int
	// Duration runs from the first request to the last acknowledgement:
	// every event durable and deduplicated.
	Duration time.Duration
	// Aggregated runs from the first request until every event is in the
	// hourly records (aggregation runs in the background meanwhile).
	Aggregated time.Duration
	// CPU is what intake and aggregation cost this process and PostgreSQL.
	CPU cpuTimes
}

// Intake posts n simulator events over loopback HTTP as NDJSON
// batches of 1,000 from clients concurrent producers, durable and
// deduplicated, with the stack's background aggregation running as it does
// in serve. Bodies are encoded before the clock starts: producers are other
// machines, and their JSON encoding is not the stack's work.
// onAcked, when not nil, runs the moment the last batch is acknowledged (the
// bench stops its acknowledgement-phase profile there).
func Intake(ctx context.Context, app *Instance, token string, n, clients int, progress Progress, onAcked func()) (IntakeResult, error) {
	base, stop, err := serveLoopback(app)
	if err != nil {
		return IntakeResult{}, err
	}
	defer stop()
	c := &simulate.Reporter{Base: base, Token: token, HTTP: &http.Client{Timeout: time.Minute}}
	w, events := intakeEvents(clock.HourStart(app.Clock.Now()), n)
	if err := c.Onboard(ctx, w); err != nil {
		return IntakeResult{}, err
	}
	var bodies [][]byte
	for i := 0; i < len(events); i += 1000 {
		b, err := simulate.NDJSON(events[i:min(i+1000, len(events))])
		if err != nil {
			return IntakeResult{}, err
		}
		bodies = append(bodies, b)
	}
	aggCtx, stopAgg := context.WithCancel(ctx)
	defer stopAgg()
	go app.Usage.Run(aggCtx, app.Logger)
	bar := progress.start(int64(len(events)), "intake")
	work := make(chan []byte)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	var accepted atomic.Int64
	start, cpu0 := time.Now(), cpuNow()
	for i := 0; i < max(1, clients); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				res, err := c.PostNDJSON(ctx, b)
				if err != nil {
					errs <- err
					return
				}
				accepted.Add(int64(res.Accepted))
				if bar != nil {
					_ = bar.Add(res.Accepted + res.Duplicates)
				}
			}
		}()
	}
	for _, b := range bodies {
		work <- b
	}
	close(work)
	wg.Wait()
	acked := time.Since(start)
	if onAcked != nil {
		onAcked()
	}
	close(errs)
	if err := <-errs; err != nil {
		return IntakeResult{}, err
	}
	if err := app.Usage.Settle(ctx, time.Time{}); err != nil {
		return IntakeResult{}, err
	}
	aggregated, cpu := time.Since(start), cpuNow().since(cpu0)
	// A figure counts only if every event was accepted once and reached the
	// hourly records.
	_, inRecords, err := app.Usage.Totals(ctx)
	if err != nil {
		return IntakeResult{}, err
	}
	if accepted.Load() != int64(len(events)) || inRecords != int64(len(events)) {
		return IntakeResult{}, fmt.Errorf("intake bench: %d events posted, %d accepted, %d in the hourly records", len(events), accepted.Load(), inRecords)
	}
	return IntakeResult{Events: len(events), Duration: acked, Aggregated: aggregated, CPU: cpu}, nil
}

// intakeEvents is the intake benchmark's input: the first n events of 50
// simulated tenants over the 30 days before end (the same for every stage
// and baseline that uses it).
func intakeEvents(end time.Time, n int) (simulate.World, []usage.Event) {
	w := simulate.New(simulate.Config{Tenants: 50, Seed: 7})
	var events []usage.Event
	for h := end.Add(-24 * 30 * time.Hour); len(events) < n && h.Before(end); h = h.Add(time.Hour) {
		events = append(events, w.Events(h)...)
	}
	return w, events[:min(n, len(events))]
}

// UsageAPIResult is what the usage API benchmark measured.
type UsageAPIResult struct {
	Rows, Requests int
	P50, P99, Max  time.Duration
}

// UsageAPI loads a subscription with resources × days × 24 hourly
// records (reported hour by hour, as a live stack would) and times every page
// of the hourly usage API, walked passes times.
func UsageAPI(ctx context.Context, app *Instance, token string, resources, days, passes int, progress Progress) (UsageAPIResult, error) {
	clk := app.Clock
	// Ending a day before today's start keeps the query's reported end in
	// the past whatever the time of day the bench runs.
	start := clock.DayStart(clk.Now()).Add(-time.Duration(days+1) * 24 * time.Hour)
	sub, tenant := tenancy.NewGUID(), tenancy.NewGUID()
	op := auth.Principal{Role: auth.RoleStackOperator, TokenID: "bench"}
	if _, _, err := app.Tenancy.PutDirectoryTenant(ctx, op, app.Tenancy.Provider(), tenantDirectory(tenant)); err != nil {
		return UsageAPIResult{}, err
	}
	if _, _, err := app.Tenancy.PutSubscription(ctx, op, app.Tenancy.Provider(), sub, tenantSubscription(tenant)); err != nil {
		return UsageAPIResult{}, err
	}
	bar := progress.start(int64(days*24), "loading usage hours")
	rows := 0
	for h := 0; h < days*24; h++ {
		hs := start.Add(time.Duration(h) * time.Hour)
		events := make([]*usage.Event, 0, resources)
		for r := 0; r < resources; r++ {
			q := money.FromInt(int64(1 + r%8))
			e, ee := hs, hs.Add(time.Hour)
			events = append(events, &usage.Event{ID: fmt.Sprintf("%s-%d-%d", sub, r, h), SubscriptionID: sub, MeterID: simulate.MeterBaseVM, Quantity: &q,
				StartTime: &e, EndTime: &ee, ResourceURI: fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm%03d", sub, r), Location: "local"})
		}
		if _, err := app.Usage.IngestAt(ctx, hs.Add(time.Hour), events); err != nil {
			return UsageAPIResult{}, err
		}
		rows += resources
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	base, stop, err := serveLoopback(app)
	if err != nil {
		return UsageAPIResult{}, err
	}
	defer stop()
	hc := &http.Client{Timeout: time.Minute}
	first := "/subscriptions/" + sub + "/providers/Microsoft.Commerce/UsageAggregates?api-version=2015-06-01-preview&aggregationGranularity=Hourly&reportedStartTime=" +
		start.Format(time.RFC3339) + "&reportedEndTime=" + start.Add(time.Duration(days)*24*time.Hour+time.Hour).Format(time.RFC3339)
	var lat []time.Duration
	for pass := 0; pass < passes; pass++ {
		for next := first; next != ""; {
			// Time to the last byte of the page, as a client sees it; the
			// page is decoded after the clock stops.
			req, _ := http.NewRequestWithContext(ctx, "GET", base+next, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			t0 := time.Now()
			resp, err := hc.Do(req)
			if err != nil {
				return UsageAPIResult{}, err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			lat = append(lat, time.Since(t0))
			if err != nil || resp.StatusCode != 200 {
				return UsageAPIResult{}, fmt.Errorf("usage API: %d %v %.200s", resp.StatusCode, err, body)
			}
			var page struct {
				NextLink string `json:"nextLink"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return UsageAPIResult{}, err
			}
			next = strings.TrimPrefix(page.NextLink, base)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return UsageAPIResult{Rows: rows, Requests: len(lat), P50: lat[len(lat)/2], P99: lat[min(len(lat)-1, len(lat)*99/100)], Max: lat[len(lat)-1]}, nil
}

func tenantDirectory(tenant string) tenancy.DirectoryTenant {
	return tenancy.DirectoryTenant{Name: tenant, TenantID: tenant}
}

func tenantSubscription(tenant string) tenancy.Subscription {
	return tenancy.Subscription{TenantID: tenant, Owner: "bench", OfferID: "bench", DisplayName: "bench"}
}
