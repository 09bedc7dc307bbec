package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/demo"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/wire"
)

func runServe(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "serve")
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN")
	role := fs.String("role", "all", "services to run: all, commerce or stack")
	dirURL := fs.String("directory-url", "", "resolve the partner directory through this HTTP endpoint instead of the database")
	dirTimeout := fs.Duration("directory-timeout", 5*time.Second, "bound on each remote directory lookup")
	providerSub := fs.String("provider-subscription", "", "the stack's provider subscription ID (default: generated once and kept)")
	bridgeBatch := fs.Int("bridge-batch", wire.MaxRecords, "records per batch the bridge forwards to commerce (measured: 20,000 catches up ~1.5x faster than 5,000)")
	bridgeBackoff := fs.Duration("bridge-max-backoff", time.Minute, "longest wait between failed forwarding attempts")
	pageSize := fs.Int("page-size", 100, "default page size of ARM list operations")
	maxBody := fs.Int64("max-body-bytes", 1<<20, "largest accepted request body")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	grace := fs.Duration("invoice-grace", 24*time.Hour, "how long after its month ends a period closes, for usage still on its way; 0 closes it as the month ends, as Partner Center does (usage reported later goes on the next invoice)")
	billingEvery := fs.Duration("billing-interval", time.Minute, "how often background billing work runs: reconciliation exports, automatic finalization, budget evaluation and the billing watch (drafts, unpriced usage, silent stamps)")
	exportStale := fs.Duration("export-stale", 2*time.Minute, "how long a running export may stall (its instance died) before another instance takes it over")
	autoFinalize := fs.Bool("auto-finalize", true, "finalize periods automatically once their grace has passed")
	clockStart := fs.String("clock-start", "", "run on a simulated clock starting at this RFC 3339 instant")
	clockRate := fs.Int64("clock-rate", 1, "simulated seconds per real second (with --clock-start)")
	maxInflight := fs.Int("max-inflight", 512, "requests handled at once; more get 429 with Retry-After (0: unlimited)")
	rateLimit := fs.Float64("rate-limit", 1000, "requests per second per token; more get 429 with Retry-After (0: unlimited)")
	rateBurst := fs.Int("rate-burst", 2000, "requests a token may send at once above --rate-limit")
	readTimeout := fs.Duration("read-timeout", 60*time.Second, "longest time to read a request, body included (slow clients are cut off)")
	maxDB := fs.Int64("db-max-bytes", 0, "SQLite only: refuse writes (507) once the database reaches this size, before the disk fills (0: no cap)")
	usageKeep := fs.Duration("usage-retention", 0, "stack: delete hourly usage records reported longer ago than this, once forwarded (e.g. 9504h for 13 months; 0 keeps them)")
	billedKeep := fs.Int("billed-usage-retention", 0, "commerce: delete forwarded usage of finalized periods older than this many months (invoices stay; 0 keeps it)")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this PEM certificate (chain) file")
	tlsKey := fs.String("tls-key", "", "the PEM private key of --tls-cert")
	publicURL := fs.String("public-url", "", "where clients reach stackbill, e.g. https://billing.example.com: the host of nextLinks and of the usage endpoint in activation keys; https makes the portal's cookies Secure")
	trusted := fs.String("trusted-proxies", "", "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-Proto/Host/For headers are believed (ignored from anyone else)")
	anonInflight := fs.Int("max-anon-inflight", 64, "unauthenticated requests handled at once (health checks, public keys, the portal's sign-in), apart from --max-inflight")
	anonRate := fs.Float64("anon-rate", 20, "unauthenticated requests and failed sign-ins per second per client address; more get 429 (0: unlimited)")
	commerceCA := fs.String("commerce-ca", "", "PEM file of the CAs the bridge trusts for commerce's certificate, instead of the system's roots (pins commerce's CA)")
	hooksLoopback := fs.Bool("webhooks-allow-loopback", false, "let webhook endpoints be loopback addresses, over http too (tests and demos on one host; never in production)")
	hooksHosts := fs.String("webhooks-allowed-hosts", "", "comma-separated hosts webhook endpoints may name (\".example.com\" admits its subdomains); empty admits any public host")
	demoFlag := fs.Bool("demo", false, "seed a demo world (partners, customers, a registered and activated stamp, 30 days of usage) on its own database (default ./data/demo.db), and simulate usage in real time")
	demoDays := fs.Int("demo-days", 0, "days of usage the demo backfills (0: from the first of last month, so last month's invoices are whole and this month compares with it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if *demoFlag {
		if *role != "all" {
			return usagef("--demo runs commerce and stack together: leave --role at all")
		}
		dbSet := false
		fs.Visit(func(f *flag.Flag) { dbSet = dbSet || f.Name == "db" })
		if !dbSet && env.Getenv("STACKBILL_DB") == "" {
			*dbFlag = demoDB(env)
		}
	}
	if *grace < 0 || *grace > 7*24*time.Hour {
		return usagef("--invoice-grace %s: want 0 (close as the month ends) up to 168h", *grace)
	}
	proxies, err := parseProxies(*trusted)
	if err != nil {
		return err
	}
	if *publicURL != "" {
		u, err := url.Parse(*publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return usagef("--public-url %q: want a scheme and host, such as https://billing.example.com", *publicURL)
		}
	}
	logger, err := newLogger(env.Stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	clk, err := parseClock(*clockStart, *clockRate)
	if err != nil {
		return err
	}
	app, err := Build(ctx, Options{
		DB: *dbFlag, Role: *role, OperatorToken: env.Getenv("STACKBILL_OPERATOR_TOKEN"),
		DirectoryURL: *dirURL, DirectoryToken: env.Getenv("STACKBILL_DIRECTORY_TOKEN"), DirectoryTimeout: *dirTimeout,
		ProviderSubscription: *providerSub, BridgeBatch: *bridgeBatch, PageSize: *pageSize, MaxBodyBytes: *maxBody, Clock: clk, Logger: logger,
		InvoiceGrace: grace, CommerceCA: *commerceCA, FailPoints: failPoints(env), MaxDBBytes: *maxDB, BillingInterval: *billingEvery, ExportStale: *exportStale, MaxInflight: *maxInflight, RateLimit: *rateLimit, RateBurst: *rateBurst,
		PublicURL: strings.TrimRight(*publicURL, "/"), TrustedProxies: proxies, TLS: *tlsCert != "", MaxAnonInflight: *anonInflight, AnonRate: *anonRate,
		AnonBodyTimeout: min(5*time.Second, *readTimeout),
		// The demo's receiver runs on loopback in this process.
		Webhooks: notify.Policy{AllowLoopback: *hooksLoopback || *demoFlag, AllowedHosts: splitList(*hooksHosts)},
	})
	if err != nil {
		return err
	}
	defer app.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           app.Handler,
		ReadHeaderTimeout: min(10*time.Second, *readTimeout),
		ReadTimeout:       *readTimeout,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return usagef("--tls-cert/--tls-key: %v", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	logger.Info("stackbill listening", "url", scheme+"://"+ln.Addr().String(), "role", *role, "db", app.DB.String(), "clock", describeClock(clk),
		"operator_token_from_env", env.Getenv("STACKBILL_OPERATOR_TOKEN") != "")
	fmt.Fprintf(env.Stderr, "stackbill %s listening on %s://%s (role %s, clock %s)\n", Version, scheme, ln.Addr(), *role, describeClock(clk))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	// Background workers stop before the database closes: the deferred
	// calls run in reverse, so workers are told to stop, then waited for.
	var bg sync.WaitGroup
	wctx, stopWorkers := context.WithCancel(ctx)
	defer bg.Wait()
	defer stopWorkers()
	worker := func(run func(context.Context)) {
		bg.Add(1)
		go func() {
			defer bg.Done()
			run(wctx)
		}()
	}
	ctx = wctx
	worker(func(ctx context.Context) { purgeLoop(ctx, app, *role, *usageKeep, *billedKeep) })
	worker(app.DB.ListenChanges)
	if *role == "all" || *role == "stack" {
		worker(func(ctx context.Context) { app.Usage.Run(ctx, logger.With("component", "usage")) })
		app.Forwarder.MaxBackoff = *bridgeBackoff
		worker(app.Forwarder.Run)
	}
	if *role == "all" || *role == "commerce" {
		worker(app.Ledger.Run)
		worker(app.RunAuditCheckpoints)
		worker(app.Notify.Run)
		worker(func(ctx context.Context) { app.Budgets.Run(ctx, *billingEvery, logger.With("component", "budgets")) })
		worker(func(ctx context.Context) { app.Watch.Run(ctx, *billingEvery, logger.With("component", "watch")) })
	} else {
		// A stack alone audits its tenancy changes too; it seals them, and
		// commerce, which holds the signing key, signs checkpoints.
		worker(app.RunAuditSeal)
	}
	if (*role == "all" || *role == "commerce") && !*demoFlag {
		worker(func(ctx context.Context) { app.RunBilling(ctx, *autoFinalize) })
	}
	if *demoFlag {
		url := scheme + "://" + ln.Addr().String()
		started := time.Now()
		if *demoDays <= 0 {
			today := clock.DayStart(app.Clock.Now())
			*demoDays = int(today.Sub(clock.MonthStart(clock.MonthStart(today).Add(-time.Hour)))/(24*time.Hour)) + 1
		}
		w, err := seedDemo(ctx, app, *dbFlag, url, *demoDays, env.Stderr)
		if err != nil {
			return err
		}
		if w.Backlog > 0 {
			fmt.Fprintf(env.Stderr, "demo: backfilled %d usage events in %s; the bridge is forwarding them to commerce now\n", w.Backlog, time.Since(started).Round(time.Millisecond))
		}
		// Budgets, and a webhook receiver on loopback that prints each
		// signed delivery, as a partner's server would take it.
		receiver := demo.NewReceiver(env.Stdout)
		rl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		rsrv := &http.Server{Handler: receiver, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = rsrv.Serve(rl) }()
		defer rsrv.Close()
		receiverURL := "http://" + rl.Addr().String() + "/webhooks"
		secret, err := demo.SeedAlerts(ctx, demoInstance(app), receiverURL)
		if err != nil {
			return err
		}
		if err := receiver.SetSecret(secret); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "demo: a webhook receiver at %s takes every event (budgets crossed, invoices finalized, approvals) and prints each signed delivery below\n", receiverURL)
		// Contoso's stamp, the direct CSP's path: a second stack in this
		// process, on a database of its own, forwarding to this commerce.
		contoso, dw, err := seedDirectDemo(ctx, app, *dbFlag, demoDirectDB(env, *dbFlag), url, *demoDays, env.Stderr)
		if err != nil {
			return err
		}
		// Its database closes once its own workers have stopped.
		var onContoso sync.WaitGroup
		contosoWorker := func(run func(context.Context)) {
			onContoso.Add(1)
			worker(func(ctx context.Context) { defer onContoso.Done(); run(ctx) })
		}
		contosoWorker(func(ctx context.Context) {
			contoso.Usage.Run(ctx, logger.With("component", "usage", "stamp", demo.ContosoRegName))
		})
		contoso.Forwarder.MaxBackoff = *bridgeBackoff
		contosoWorker(contoso.Forwarder.Run)
		contosoWorker(contoso.RunAuditSeal)
		contosoWorker(func(ctx context.Context) { demo.RunSimulator(ctx, demoInstance(contoso), dw.Sim) })
		worker(func(ctx context.Context) { <-ctx.Done(); onContoso.Wait(); contoso.Close() })
		worker(func(ctx context.Context) { demo.RunSimulator(ctx, demoInstance(app), w.Sim) })
		// Finalize the backfilled months only once both bridges have
		// delivered their usage, as live stamps would have long ago.
		contosoForwarded := make(chan struct{})
		contosoWorker(func(ctx context.Context) {
			demo.WaitForwarded(ctx, demoInstance(contoso), 5*time.Minute)
			close(contosoForwarded)
		})
		worker(func(ctx context.Context) {
			demo.WaitForwarded(ctx, demoInstance(app), 5*time.Minute)
			select {
			case <-contosoForwarded:
			case <-ctx.Done():
				return
			}
			app.RunBilling(ctx, *autoFinalize)
		})
		fmt.Fprint(env.Stdout, w.Describe(url))
		fmt.Fprint(env.Stdout, dw.Describe())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func runMigrate(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "migrate")
	dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	app, err := Build(ctx, Options{DB: *dbFlag, FailPoints: failPoints(env)})
	if err != nil {
		return err
	}
	defer app.Close()
	v, err := app.DB.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s schema version %d\n", app.DB.Dialect, v)
	return nil
}

// purgeLoop applies the retention settings hourly: intake's idempotency
// keys past 35 days and commerce's record keys past 3, and (when set) old hourly records on the stack and old billed usage
// on commerce. Every purge deletes in small batches along an index, so it
// never holds long locks.
func purgeLoop(ctx context.Context, app *App, role string, usageKeep time.Duration, billedMonths int) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := app.Auth.PurgeSessions(ctx); err != nil && ctx.Err() == nil {
			app.Logger.Error("purge expired portal sessions", "err", err)
		}
		if n, err := app.Usage.PurgeExpiredKeys(ctx); err != nil && ctx.Err() == nil {
			app.Logger.Error("purge usage idempotency keys", "err", err)
		} else if n > 0 {
			app.Logger.Info("purged usage idempotency keys", "count", n)
		}
		if role != "stack" {
			if n, err := app.Ledger.PurgeExpiredKeys(ctx); err != nil && ctx.Err() == nil {
				app.Logger.Error("purge forwarded record keys", "err", err)
			} else if n > 0 {
				app.Logger.Info("purged forwarded record keys", "count", n)
			}
		}
		if role != "stack" {
			if n, err := app.Notify.Purge(ctx, app.Clock.Now().Add(-notify.Retention)); err != nil && ctx.Err() == nil {
				app.Logger.Error("purge old events", "err", err)
			} else if n > 0 {
				app.Logger.Info("purged events past their retention", "count", n)
			}
		}
		if usageKeep > 0 && role != "commerce" {
			cutoff, err := app.Forwarder.RetentionCutoff(ctx, usageKeep)
			if err == nil {
				var n int64
				if n, err = app.Usage.PurgeRecords(ctx, cutoff); n > 0 {
					app.Logger.Info("purged hourly usage records", "count", n, "reported_before", cutoff)
				}
				if err == nil {
					if n, err = app.Forwarder.PurgeOutbox(ctx, cutoff); n > 0 {
						app.Logger.Info("purged sealed batches of a stack that does not report usage", "count", n, "reported_before", cutoff)
					}
				}
			}
			if err != nil && ctx.Err() == nil {
				app.Logger.Error("purge hourly usage records", "err", err)
			}
		}
		if billedMonths > 0 && role != "stack" {
			before := clock.Period(clock.MonthStart(app.Clock.Now()).AddDate(0, -billedMonths, 0))
			if n, err := app.Billing.PurgeBilledUsage(ctx, before); err != nil && ctx.Err() == nil {
				app.Logger.Error("purge billed usage", "err", err)
			} else if n > 0 {
				app.Logger.Info("purged billed usage", "count", n, "periods_before", before)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// parseProxies reads --trusted-proxies: addresses or CIDRs, comma-separated.
func parseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, usagef("--trusted-proxies: %q is neither an address nor a CIDR", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// failPoints reads the crash points armed for recovery tests.
func failPoints(env Env) []string {
	if v := env.Getenv("STACKBILL_FAILPOINTS"); v != "" {
		return strings.Split(v, ",")
	}
	return nil
}

// splitList is a comma-separated flag's non-empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
