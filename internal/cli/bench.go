package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stackbill/stackbill/internal/bench"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/wire"
)

func runBench(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return benchAll(ctx, env, args)
	}
	verb, rest, err := subcommand(args, "all", "registration", "intake", "usage-api", "forward", "rating")
	if err != nil {
		return err
	}
	switch verb {
	case "all":
		return benchAll(ctx, env, rest)
	case "intake":
		return benchIntake(ctx, env, rest)
	case "usage-api":
		return benchUsageAPI(ctx, env, rest)
	case "forward":
		return benchForward(ctx, env, rest)
	case "rating":
		return benchRating(ctx, env, rest)
	}
	return benchRegistration(ctx, env, rest)
}

// benchInstance is what the benchmarks use of app.
func benchInstance(app *App) *bench.Instance {
	return &bench.Instance{DB: app.DB, Clock: app.Clock, Logger: app.Logger, Handler: app.Handler, Auth: app.Auth, Billing: app.Billing, Directory: app.Directory,
		Ledger: app.Ledger, Issuer: app.Issuer, Registrations: app.Registrations, Signer: app.Signer, Tenancy: app.Tenancy, Usage: app.Usage, Forwarder: app.Forwarder}
}

// benchProgress draws the benchmarks' progress bars on w when it is a
// terminal.
func benchProgress(w io.Writer) bench.Progress {
	return func(total int64, description string) bench.ProgressBar {
		if bar := newProgress(w, total, description); bar != nil {
			return bar
		}
		return nil
	}
}

// benchAll is `stackbill bench` (or `bench all`): every stage, or those of
// --stages, on fresh databases, as a table or JSON.
func benchAll(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "bench")
	dbFlag := fs.String("db", "", "PostgreSQL DSN to run on (each stage gets a schema of its own); default: fresh SQLite files")
	asJSON := fs.Bool("json", false, "print the figures as JSON")
	stagesFlag := fs.String("stages", strings.Join(bench.DefaultStages(), ","), "stages to run: "+strings.Join(bench.Stages(), ", ")+" (memory streams 10M events, about 20 minutes on 2 cores, so it runs only when named)")
	var sz bench.Sizes
	rates := fs.String("sustained-rates", "5000,10000,20000,40000,80000,160000", "offered rates (events/s) the sustained stage tries in order, stopping at the first that does not hold")
	fs.IntVar(&sz.SustainedSeconds, "sustained-seconds", 60, "how long each sustained offer runs")
	sustainedHour := fs.Duration("sustained-hour", 2*time.Second, "wall time of one simulated hour in the sustained stage (hours close, are sealed and forwarded while the stream runs)")
	fs.IntVar(&sz.Events, "events", 100000, "events for the floor and intake stages")
	fs.IntVar(&sz.Records, "records", 200000, "forwarded records to rate")
	fs.IntVar(&sz.ForwardTenants, "forward-tenants", 1000, "tenants of the forwarding backlog (the issue's 7 days of 1,000 tenants)")
	fs.IntVar(&sz.ForwardDays, "forward-days", 7, "days of the forwarding backlog")
	fs.IntVar(&sz.CatchUpStamps, "catchup-stamps", 100, "stamps (stacks, each on a SQLite file) of the catch-up stage")
	fs.IntVar(&sz.CatchUpTenants, "catchup-tenants", 1000, "tenants of each catch-up stamp")
	fs.IntVar(&sz.CatchUpHours, "catchup-hours", 24, "hours of backlog each catch-up stamp holds")
	fs.IntVar(&sz.APIResources, "api-resources", 100, "resources of the usage API subscription")
	fs.IntVar(&sz.APIDays, "api-days", 30, "days of hourly usage behind the usage API")
	fs.IntVar(&sz.RegistrationClients, "registration-clients", 16, "concurrent registration API clients")
	fs.IntVar(&sz.RegistrationTenants, "registration-tenants", 500, "customers the registration clients map, each client its own share (at least one each)")
	regDur := fs.Duration("registration-duration", 5*time.Second, "how long to drive the registration API")
	memoryEvents := fs.String("memory-events", "1000000,10000000", "stream lengths (events) the memory stage compares; the first is the baseline")
	fs.IntVar(&sz.MemoryRate, "memory-rate", 40000, "offered rate (events/s) of the memory stage's streams")
	fs.StringVar(&sz.MemoryProfile, "memory-heapprofile", "", "write a heap profile of each memory run at its peak live heap to PREFIX-EVENTS.pprof (compare two with go tool pprof -base)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof); with --stages, of those stages")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stopProfile, err := bench.StartCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	sz.RegistrationMs = int(regDur.Milliseconds())
	sz.SustainedHourMs = int(sustainedHour.Milliseconds())
	for _, r := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n < 1000 || n > 10_000_000 {
			return usagef("--sustained-rates takes rates from 1000 to 10000000 events/s, separated by commas; got %q", r)
		}
		sz.SustainedRates = append(sz.SustainedRates, n)
	}
	for _, e := range strings.Split(*memoryEvents, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(e))
		if err != nil || n < 1000 || n > 1_000_000_000 {
			return usagef("--memory-events takes stream lengths from 1000 to 1000000000 events, separated by commas; got %q", e)
		}
		sz.MemoryEvents = append(sz.MemoryEvents, n)
	}
	if sz.RegistrationTenants < 1 || sz.RegistrationTenants > 100_000 {
		return usagef("--registration-tenants must be from 1 to 100000")
	}
	if sz.MemoryRate < 1000 || sz.MemoryRate > 10_000_000 {
		return usagef("--memory-rate must be from 1000 to 10000000 events/s")
	}
	if sz.SustainedSeconds < 1 || sz.SustainedSeconds > 86400 || sz.SustainedHourMs < 100 || sz.SustainedHourMs > 3_600_000 {
		return usagef("--sustained-seconds must be from 1 to 86400 and --sustained-hour from 100ms to 1h")
	}
	var stages []string
	for _, s := range strings.Split(*stagesFlag, ",") {
		s = strings.TrimSpace(s)
		ok := false
		for _, known := range bench.Stages() {
			ok = ok || s == known
		}
		if !ok {
			return usagef("unknown stage %q: choose from %s", s, strings.Join(bench.Stages(), ", "))
		}
		stages = append(stages, s)
	}
	if *dbFlag != "" && !store.IsPostgresDSN(*dbFlag) {
		return usagef("--db takes a postgres:// DSN; SQLite stages always use fresh files")
	}
	rep, err := bench.Pipeline(ctx, openBenchApp, *dbFlag, stages, sz, benchProgress(env.Stderr))
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(env.Stdout, "stackbill pipeline benchmark on %s — %s, %s, %.0f s, peak RSS %.0f MiB\n\n", rep.Database, rep.Machine, rep.Go, rep.Seconds, rep.PeakRSSMiB)
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tFIGURE\tVALUE\tBASELINE (same run, same data)\tRATIO\tPEAK HEAP\tTARGET\tMET")
	for _, f := range rep.Figures {
		base, ratio, heap, met := "—", "—", "—", ""
		if f.Baseline != nil {
			base = fmt.Sprintf("%s: %s %s", f.BaselineName, bench.Human(*f.Baseline), f.Unit)
			ratio = fmt.Sprintf("%.2f×", *f.Ratio)
		}
		if f.PeakHeapMiB > 0 {
			heap = fmt.Sprintf("%.0f MiB", f.PeakHeapMiB)
		}
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s\n", f.Stage, f.Figure, bench.Human(f.Value), f.Unit, base, ratio, heap, f.Target, met)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range rep.Figures {
		if f.Note != "" {
			fmt.Fprintf(env.Stdout, "  %s: %s\n", f.Stage, f.Note)
		}
	}
	return nil
}

func benchForward(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "bench forward")
	dbFlag := fs.String("db", "", "commerce database (default: a fresh SQLite file); the stack is always a fresh SQLite file")
	tenants := fs.Int("tenants", 1000, "tenants on the stack")
	days := fs.Int("days", 7, "days of backlog")
	batch := fs.Int("batch", wire.MaxRecords, "records per forwarded batch")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the catch-up (both sides) to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	com, _, closeCom, err := openBenchApp(ctx, *dbFlag, nil)
	if err != nil {
		return err
	}
	defer closeCom()
	dir, err := os.MkdirTemp("", "stackbill-bench-stack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	stack, err := Build(ctx, Options{DB: filepath.Join(dir, "stack.db"), BridgeBatch: *batch})
	if err != nil {
		return err
	}
	defer stack.Close()
	res, err := bench.Forward(ctx, com, benchInstance(stack), *tenants, *days, benchProgress(env.Stderr), *cpuProfile)
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

func benchRating(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "bench rating")
	dbFlag := fs.String("db", "", "database to benchmark (default: a fresh SQLite file in a temporary folder)")
	n := fs.Int64("records", 1000000, "forwarded usage records to rate")
	subs := fs.Int("subscriptions", 1000, "customer subscriptions they are charged to")
	baseline := fs.Bool("baseline", true, "also run the hand-written SQL pipeline (bulk load + INSERT … SELECT … GROUP BY; REAL arithmetic on SQLite) and print the ratio")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stopProfile, err := bench.StartCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	app, _, closeApp, err := openBenchApp(ctx, *dbFlag, nil)
	if err != nil {
		return err
	}
	defer closeApp()
	fmt.Fprintf(env.Stderr, "loading %d records into %s…\n", *n, app.DB.Dialect)
	res, err := bench.Rating(ctx, app, *n, *subs, *baseline)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "engine            %s\nrecords           %d (loaded in %s)\nrating+invoices   %s\nthroughput        %.0f records/s\npeak heap         %.1f MiB\ninvoice total     %s USD\n",
		app.DB.Dialect, res.Records, res.Load.Round(time.Millisecond), res.Rate.Round(time.Millisecond), res.RecordsPerSecond(), float64(res.PeakHeapBytes)/(1<<20), res.Total)
	if res.Baseline > 0 {
		fmt.Fprintf(env.Stdout, "SQL baseline      %s (bulk load + INSERT … SELECT … JOIN … GROUP BY), total %s USD\nratio             %.2fx (baseline time / stackbill time)\n",
			res.Baseline.Round(time.Millisecond), res.BaselineTotal, res.Baseline.Seconds()/res.Rate.Seconds())
		fmt.Fprintf(env.Stdout, "  of which query  %s (the INSERT … SELECT alone, after its load): %.2fx\n",
			res.BaselineQuery.Round(time.Millisecond), res.BaselineQuery.Seconds()/res.Rate.Seconds())
	}
	return nil
}

func benchRegistration(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "bench registration")
	dbFlag := fs.String("db", "", "database to benchmark (default: a fresh SQLite file in a temporary folder)")
	clients := fs.Int("clients", 16, "concurrent clients")
	d := fs.Duration("duration", 10*time.Second, "how long to run")
	tenants := fs.Int("tenants", 500, "customers (tenant/subscription pairs) to cycle through")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run (seeding included) to this file (go tool pprof)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *tenants < 1 || *tenants > 100_000 || *clients < 1 || *clients > 1000 {
		return usagef("--tenants must be from 1 to 100000 and --clients from 1 to 1000")
	}
	stopProfile, err := bench.StartCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	app, token, closeApp, err := openBenchApp(ctx, *dbFlag, nil)
	if err != nil {
		return err
	}
	defer closeApp()
	res, err := bench.Registration(ctx, app, token, *clients, *d, 0, *tenants, benchProgress(env.Stderr))
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "registration API on %s, %d clients, %s\n", app.DB.Dialect, res.Clients, res.Duration.Round(time.Millisecond))
	fmt.Fprintln(tw, "OPERATION\tCOUNT\tPER SECOND\tP50\tP99")
	fmt.Fprintf(tw, "customerSubscriptions PUT\t%d\t%.0f\t%s\t%s\n", res.Puts, res.PutsPerSecond(), res.PutP50.Round(time.Microsecond), res.PutP99.Round(time.Microsecond))
	fmt.Fprintf(tw, "customerSubscriptions GET\t%d\t%.0f\t%s\t%s\n", res.Gets, res.GetsPerSecond(), res.GetP50.Round(time.Microsecond), res.GetP99.Round(time.Microsecond))
	fmt.Fprintf(tw, "errors\t%d\t\t\t\n", res.Errors)
	return tw.Flush()
}

// openBenchApp builds a stackbill on dsn, or on a fresh SQLite file in a
// temporary folder when dsn is empty, with a one-off operator token. close
// releases both.
func openBenchApp(ctx context.Context, dsn string, c *clock.Clock) (in *bench.Instance, token string, closeFn func(), err error) {
	cleanup := func() {}
	if dsn == "" {
		dir, err := os.MkdirTemp("", "stackbill-bench-")
		if err != nil {
			return nil, "", nil, err
		}
		dsn, cleanup = filepath.Join(dir, "bench.db"), func() { os.RemoveAll(dir) }
	}
	token = "bench-" + tenancy.NewGUID()
	app, err := Build(ctx, Options{DB: dsn, OperatorToken: token, Clock: c})
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	return benchInstance(app), token, func() { app.Close(); cleanup() }, nil
}

func benchIntake(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "bench intake")
	dbFlag := fs.String("db", "", "database to benchmark (default: a fresh SQLite file in a temporary folder)")
	n := fs.Int("events", 200000, "events to post")
	clients := fs.Int("clients", 4, "concurrent producers")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed run to this file (go tool pprof)")
	ackProfile := fs.String("ack-cpuprofile", "", "write a CPU profile of the acknowledgement phase alone to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	app, token, closeApp, err := openBenchApp(ctx, *dbFlag, nil)
	if err != nil {
		return err
	}
	defer closeApp()
	profile := *cpuProfile
	var onAcked func()
	if *ackProfile != "" {
		profile = *ackProfile
	}
	stopProfile, err := bench.StartCPUProfile(profile)
	if err != nil {
		return err
	}
	if *ackProfile != "" {
		onAcked = stopProfile
	}
	res, err := bench.Intake(ctx, app, token, *n, *clients, benchProgress(env.Stderr), onAcked)
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	app, token, closeApp, err := openBenchApp(ctx, *dbFlag, nil)
	if err != nil {
		return err
	}
	defer closeApp()
	stopProfile, err := bench.StartCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	res, err := bench.UsageAPI(ctx, app, token, *resources, *days, *passes, benchProgress(env.Stderr))
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
