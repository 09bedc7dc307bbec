package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// serveLoopback serves app on a loopback port until the returned stop runs.
func serveLoopback(app *App) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: app.Handler}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// IntakeBenchResult is what the intake benchmark measured.
type IntakeBenchResult struct {
	Events int
	// Duration runs from the first request to the last acknowledgement:
	// every event durable and deduplicated.
	Duration time.Duration
	// Aggregated runs from the first request until every event is in the
	// hourly records (aggregation runs in the background meanwhile).
	Aggregated time.Duration
}

// RunIntakeBench posts n simulator events over loopback HTTP as NDJSON
// batches of 1,000 from clients concurrent producers, durable and
// deduplicated, with the stack's background aggregation running as it does
// in serve. Bodies are encoded before the clock starts: producers are other
// machines, and their JSON encoding is not the stack's work.
// onAcked, when not nil, runs the moment the last batch is acknowledged (the
// bench stops its acknowledgement-phase profile there).
func RunIntakeBench(ctx context.Context, app *App, token string, n, clients int, progress io.Writer, onAcked func()) (IntakeBenchResult, error) {
	base, stop, err := serveLoopback(app)
	if err != nil {
		return IntakeBenchResult{}, err
	}
	defer stop()
	c := &client{base: base, token: token, http: &http.Client{Timeout: time.Minute}}
	w, events := intakeEvents(clock.HourStart(app.Clock.Now()), n)
	if err := c.onboard(ctx, w); err != nil {
		return IntakeBenchResult{}, err
	}
	var bodies [][]byte
	for i := 0; i < len(events); i += 1000 {
		b, err := ndjson(events[i:min(i+1000, len(events))])
		if err != nil {
			return IntakeBenchResult{}, err
		}
		bodies = append(bodies, b)
	}
	aggCtx, stopAgg := context.WithCancel(ctx)
	defer stopAgg()
	go app.Usage.Run(aggCtx, app.Logger)
	bar := newProgress(progress, int64(len(events)), "intake")
	work := make(chan []byte)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	var accepted atomic.Int64
	start := time.Now()
	for i := 0; i < max(1, clients); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				res, err := c.postNDJSON(ctx, b)
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
		return IntakeBenchResult{}, err
	}
	if err := app.Usage.Settle(ctx, time.Time{}); err != nil {
		return IntakeBenchResult{}, err
	}
	aggregated := time.Since(start)
	// A figure counts only if every event was accepted once and reached the
	// hourly records.
	var inRecords int64
	if err := app.DB.QueryRowContext(ctx, `SELECT COALESCE(SUM(events), 0) FROM usage_records`).Scan(&inRecords); err != nil {
		return IntakeBenchResult{}, err
	}
	if accepted.Load() != int64(len(events)) || inRecords != int64(len(events)) {
		return IntakeBenchResult{}, fmt.Errorf("intake bench: %d events posted, %d accepted, %d in the hourly records", len(events), accepted.Load(), inRecords)
	}
	return IntakeBenchResult{Events: len(events), Duration: acked, Aggregated: aggregated}, nil
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

// UsageAPIBenchResult is what the usage API benchmark measured.
type UsageAPIBenchResult struct {
	Rows, Requests int
	P50, P99, Max  time.Duration
}

// RunUsageAPIBench loads a subscription with resources × days × 24 hourly
// records (reported hour by hour, as a live stack would) and times every page
// of the hourly usage API, walked passes times.
func RunUsageAPIBench(ctx context.Context, app *App, token string, resources, days, passes int, progress io.Writer) (UsageAPIBenchResult, error) {
	clk := app.Clock
	// Ending a day before today's start keeps the query's reported end in
	// the past whatever the time of day the bench runs.
	start := clock.DayStart(clk.Now()).Add(-time.Duration(days+1) * 24 * time.Hour)
	sub, tenant := randomGUID(), randomGUID()
	op := auth.Principal{Role: auth.RoleStackOperator, TokenID: "bench"}
	if _, _, err := app.Tenancy.PutDirectoryTenant(ctx, op, app.Tenancy.Provider(), tenantDirectory(tenant)); err != nil {
		return UsageAPIBenchResult{}, err
	}
	if _, _, err := app.Tenancy.PutSubscription(ctx, op, app.Tenancy.Provider(), sub, tenantSubscription(tenant)); err != nil {
		return UsageAPIBenchResult{}, err
	}
	bar := newProgress(progress, int64(days*24), "loading usage hours")
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
			return UsageAPIBenchResult{}, err
		}
		rows += resources
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	base, stop, err := serveLoopback(app)
	if err != nil {
		return UsageAPIBenchResult{}, err
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
				return UsageAPIBenchResult{}, err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			lat = append(lat, time.Since(t0))
			if err != nil || resp.StatusCode != 200 {
				return UsageAPIBenchResult{}, fmt.Errorf("usage API: %d %v %.200s", resp.StatusCode, err, body)
			}
			var page struct {
				NextLink string `json:"nextLink"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return UsageAPIBenchResult{}, err
			}
			next = strings.TrimPrefix(page.NextLink, base)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return UsageAPIBenchResult{Rows: rows, Requests: len(lat), P50: lat[len(lat)/2], P99: lat[min(len(lat)-1, len(lat)*99/100)], Max: lat[len(lat)-1]}, nil
}

// openBenchApp builds a stackbill on dsn, or on a fresh SQLite file in a
// temporary folder when dsn is empty, with a one-off operator token. close
// releases both.
func openBenchApp(ctx context.Context, dsn string) (app *App, token string, closeFn func(), err error) {
	cleanup := func() {}
	if dsn == "" {
		dir, err := os.MkdirTemp("", "stackbill-bench-")
		if err != nil {
			return nil, "", nil, err
		}
		dsn, cleanup = filepath.Join(dir, "bench.db"), func() { os.RemoveAll(dir) }
	}
	token = "bench-" + randomGUID()
	app, err = Build(ctx, Options{DB: dsn, OperatorToken: token})
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	return app, token, func() { app.Close(); cleanup() }, nil
}

func benchIntake(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "bench intake")
	dbFlag := fs.String("db", "", "database to benchmark (default: a fresh SQLite file in a temporary folder)")
	n := fs.Int("events", 200000, "events to post")
	clients := fs.Int("clients", 4, "concurrent producers")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed run to this file (go tool pprof)")
	ackProfile := fs.String("ack-cpuprofile", "", "write a CPU profile of the acknowledgement phase alone to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	app, token, closeApp, err := openBenchApp(ctx, *dbFlag)
	if err != nil {
		return err
	}
	defer closeApp()
	profile := *cpuProfile
	var onAcked func()
	if *ackProfile != "" {
		profile = *ackProfile
	}
	stopProfile, err := startCPUProfile(profile)
	if err != nil {
		return err
	}
	if *ackProfile != "" {
		onAcked = stopProfile
	}
	res, err := RunIntakeBench(ctx, app, token, *n, *clients, env.Stderr, onAcked)
	stopProfile()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "usage intake on %s, NDJSON batches of 1,000 over HTTP from %d producers, durable and deduplicated\n", app.DB.Dialect, *clients)
	fmt.Fprintln(tw, "EVENTS\tACKNOWLEDGED S\tEVENTS/S\tAGGREGATED S\tEVENTS/S END TO END")
	fmt.Fprintf(tw, "%d\t%.2f\t%.0f\t%.2f\t%.0f\n", res.Events, res.Duration.Seconds(), float64(res.Events)/res.Duration.Seconds(),
		res.Aggregated.Seconds(), float64(res.Events)/res.Aggregated.Seconds())
	return tw.Flush()
}

func benchUsageAPI(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "bench usage-api")
	dbFlag := fs.String("db", "", "database to benchmark (default: a fresh SQLite file in a temporary folder)")
	resources := fs.Int("resources", 100, "resources in the subscription")
	days := fs.Int("days", 30, "days of hourly usage")
	passes := fs.Int("passes", 3, "times to walk every page")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	app, token, closeApp, err := openBenchApp(ctx, *dbFlag)
	if err != nil {
		return err
	}
	defer closeApp()
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	res, err := RunUsageAPIBench(ctx, app, token, *resources, *days, *passes, env.Stderr)
	stopProfile()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "usage API on %s: one page (1,000 rows) of Hourly data, %d resources × %d days = %d records\n", app.DB.Dialect, *resources, *days, res.Rows)
	fmt.Fprintln(tw, "REQUESTS\tP50\tP99\tMAX")
	fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", res.Requests, res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), res.Max.Round(time.Microsecond))
	return tw.Flush()
}

func tenantDirectory(tenant string) tenancy.DirectoryTenant {
	return tenancy.DirectoryTenant{Name: tenant, TenantID: tenant}
}

func tenantSubscription(tenant string) tenancy.Subscription {
	return tenancy.Subscription{TenantID: tenant, Owner: "bench", OfferID: "bench", DisplayName: "bench"}
}
