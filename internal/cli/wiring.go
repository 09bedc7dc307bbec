package cli

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/budget"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/httpapi"
	"github.com/stackbill/stackbill/internal/ingest"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/portal"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
	"github.com/stackbill/stackbill/internal/watch"
)

// Options configures a stackbill instance.
type Options struct {
	DB             string
	Role           string // all, commerce, stack
	OperatorToken  string
	DirectoryURL   string // remote resolver; empty uses the embedded directory
	DirectoryToken string
	// DirectoryTimeout bounds each remote directory lookup (default 5s).
	DirectoryTimeout time.Duration
	PageSize         int
	// BridgeBatch is the number of records per forwarded batch.
	BridgeBatch int
	// ProviderSubscription is the stack's provider subscription; empty
	// generates one on first start and keeps it.
	ProviderSubscription string
	MaxBodyBytes         int64
	// InvoiceGrace is how long after its month ends a period closes: nil
	// is the 24h default, and zero closes it as the month ends, as Partner
	// Center does.
	InvoiceGrace *time.Duration
	// MaxInflight bounds requests in flight; RateLimit and RateBurst bound
	// each token's requests per second. Zero is unlimited (serve sets them).
	MaxInflight int
	RateLimit   float64
	RateBurst   int
	// MaxDBBytes caps a SQLite database's size (0: no cap); past it, writes
	// are refused with 507 as on a full disk.
	MaxDBBytes int64
	// BillingInterval is how often the background billing loop runs
	// (exports, automatic finalization); default 1m. ExportStale is how
	// long a running export may stall before another runner takes it over.
	BillingInterval time.Duration
	ExportStale     time.Duration
	// FailPoints arms crash points for recovery tests (STACKBILL_FAILPOINTS).
	FailPoints []string
	// CommerceCA is a PEM file of the CAs the bridge trusts for commerce's
	// TLS certificate (empty: the system's roots).
	CommerceCA string
	// PublicURL is where clients reach stackbill (nextLinks, activation
	// keys, the portal's Secure cookie); TrustedProxies are the peers whose
	// X-Forwarded-* headers are believed without it.
	PublicURL      string
	TrustedProxies []netip.Prefix
	// TLS says stackbill itself serves HTTPS (its cookies are Secure).
	TLS bool
	// MaxAnonInflight, AnonBodyTimeout and AnonRate bound unauthenticated
	// work (see httpapi.Config); zero takes the defaults, and AnonRate
	// zero is unlimited.
	MaxAnonInflight int
	AnonBodyTimeout time.Duration
	AnonRate        float64
	// Webhooks says where commerce may send webhooks, and WebhookSender
	// tunes the sender (tests shorten its lease and schedule).
	Webhooks      notify.Policy
	WebhookSender notify.SenderOptions
	Clock         *clock.Clock
	Logger        *slog.Logger
}

// App is a wired stackbill instance.
type App struct {
	DB            *store.DB
	Clock         *clock.Clock
	Logger        *slog.Logger
	Auth          *auth.Service
	Directory     *directory.Service
	Registrations *registration.Service
	Tenancy       *tenancy.Service
	Meters        *meter.Catalogue
	Usage         *usage.Service
	Signer        *bridge.Signer
	Issuer        *bridge.Issuer
	Forwarder     *bridge.Forwarder
	Ingestor      *ingest.Ingestor
	Ledger        *ledger.Ledger
	Billing       *billing.Service
	Quarantine    *quarantine.Service
	Notify        *notify.Service
	Budgets       *budget.Service
	Watch         *watch.Watcher
	Handler       http.Handler
	// exportKick wakes the reconciliation export runner.
	exportKick chan struct{}
	// billingEvery is the background billing loop's period.
	billingEvery time.Duration
	// billingDifferences is what the last continuous check found.
	billingDifferences atomic.Int64
}

// Close releases the database.
func (a *App) Close() error { return a.DB.Close() }

// Build wires every component of stackbill. It is the only place where
// services are constructed and connected.
func Build(ctx context.Context, o Options) (*App, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Clock == nil {
		o.Clock = clock.Real()
	}
	switch o.Role {
	case "":
		o.Role = "all"
	case "all", "commerce", "stack":
	default:
		return nil, usagef("--role must be all, commerce or stack, not %q", o.Role)
	}
	db, err := store.Open(ctx, o.DB, o.Logger, store.MaxSize(o.MaxDBBytes))
	if err != nil {
		return nil, err
	}
	db.SetFailPoints(o.FailPoints)
	if _, err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	dir := directory.NewService(db, o.Clock)
	var resolver registration.Resolver = dir
	if o.DirectoryURL != "" {
		if o.DirectoryTimeout <= 0 {
			o.DirectoryTimeout = 5 * time.Second
		}
		rr, err := directory.NewRemoteResolver(o.DirectoryURL, o.DirectoryToken, o.DirectoryTimeout)
		if err != nil {
			db.Close()
			return nil, err
		}
		resolver = rr
	}
	provider, err := tenancy.ProviderSubscription(ctx, db, o.ProviderSubscription)
	if err != nil {
		db.Close()
		return nil, err
	}
	ten := tenancy.NewService(db, o.Clock, provider)
	meters, err := meter.NewCatalogue(ctx, db, o.Clock)
	if err != nil {
		db.Close()
		return nil, err
	}
	use := usage.NewService(db, o.Clock, meters, ten, o.Logger.With("component", "usage"))
	authSvc := auth.NewService(db, o.Clock, o.OperatorToken)
	regs := registration.NewService(db, resolver, o.Clock)
	signer := bridge.NewSigner(db)
	issuer := bridge.NewIssuer(signer, regs, authSvc, o.Clock.Now)
	billingMap := meter.NewBillingMap(db, o.Clock)
	led := ledger.New(db, o.Clock, o.Logger.With("component", "ledger"))
	ingestor := ingest.New(db, regs, billingMap, led, o.Clock, o.Logger.With("component", "ingest"))
	grace := 24 * time.Hour
	if o.InvoiceGrace != nil {
		grace = *o.InvoiceGrace
	}
	bill := billing.NewService(db, o.Clock, o.Logger.With("component", "billing"), grace, led, dir, regs)
	if o.ExportStale > 0 {
		bill.ExportStale = o.ExportStale
	}
	if o.BillingInterval <= 0 {
		o.BillingInterval = time.Minute
	}
	kick := make(chan struct{}, 1)
	forwarder := bridge.NewForwarder(db, o.Clock, ten, ten, use, o.Logger.With("component", "bridge"), o.BridgeBatch)
	if o.CommerceCA != "" {
		pool, err := loadCAs(o.CommerceCA)
		if err != nil {
			db.Close()
			return nil, err
		}
		forwarder.PinCA(pool)
	}
	// Each stage releases what it held where that stage runs.
	releasers := map[quarantine.Stage]quarantine.Releaser{}
	if o.Role != "commerce" {
		releasers[quarantine.Aggregation], releasers[quarantine.Seal] = use.Release, forwarder.Release
	}
	if o.Role != "stack" {
		releasers[quarantine.Ingest], releasers[quarantine.Materialise] = ingestor.Release, led.ReleaseLog
	}
	quar := quarantine.NewService(db, o.Clock, releasers)
	ws := o.WebhookSender
	ws.Logger = o.Logger.With("component", "webhooks")
	events := notify.NewService(db, o.Clock, o.Webhooks, ws)
	budgets := budget.NewService(db, o.Clock, dir, regs, bill)
	watcher := watch.New(db, o.Clock, bill, led, regs, dir, events)
	reg := prometheus.NewRegistry()
	reg.MustRegister(&quarantineCollector{q: quar, held: prometheus.NewDesc("stackbill_quarantined_records",
		"Records (or undecodable batches) a background stage held back for the operator, unresolved, by stage.", []string{"stage"}, nil)})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.Role != "commerce" {
		registerBridgeMetrics(reg, forwarder)
		registerIntakeMetrics(reg, use)
	}
	app := &App{}
	if o.Role != "stack" {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stackbill_billing_verify_differences",
			Help: "Differences between the views of the open period's bills (invoice, lines, CSV, reconciliation, statements) found by the last hourly check."},
			func() float64 { return float64(app.billingDifferences.Load()) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stackbill_commerce_usage_backlog_records",
			Help: "Forwarded records acknowledged to a bridge and waiting in commerce's log to be materialised for billing."},
			func() float64 { return float64(led.Backlog()) }))
		registerNotifyMetrics(reg, events)
		registerBudgetMetrics(reg, budgets)
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_directory_resolve_cache_hits_total",
				Help: "Directory resolutions (a registration request's subscriptions) answered from memory; on PostgreSQL only, while this process hears every directory change."},
				func() float64 { n, _ := dir.CacheStats(); return float64(n) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_directory_resolve_cache_misses_total",
				Help: "Directory resolutions read from the database."},
				func() float64 { _, n := dir.CacheStats(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stackbill_database_listening",
				Help: "1 while this process holds a PostgreSQL connection that hears other processes' changes (LISTEN); caches serve only then."},
				func() float64 { return float64(store.Bool(db.Listening())) }),
		)
	}
	refusals := audit.NewRefusals(db, o.Clock)
	web, err := portal.New(portal.Deps{Role: o.Role, Clock: o.Clock, Logger: o.Logger.With("component", "portal"), Auth: authSvc, Directory: dir,
		Registrations: regs, Tenancy: ten, Meters: meters, BillingMap: billingMap, Usage: use, Forwarder: forwarder, Ledger: led, Billing: bill,
		Quarantine: quar, Notify: events, Budgets: budgets, Refusals: refusals, SecureCookies: o.TLS || strings.HasPrefix(strings.ToLower(o.PublicURL), "https://")})
	if err != nil {
		db.Close()
		return nil, err
	}
	pagingKey, err := db.Setting(ctx, "paging.key", func() (string, error) {
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return hex.EncodeToString(k), err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	key, _ := hex.DecodeString(pagingKey)
	h := httpapi.New(httpapi.Config{Role: o.Role, PageSize: o.PageSize, MaxBodyBytes: o.MaxBodyBytes, DBDescription: string(db.Dialect), PagingKey: key,
		MaxInflight: o.MaxInflight, RateLimit: o.RateLimit, RateBurst: o.RateBurst, MaxAnonInflight: o.MaxAnonInflight, AnonBodyTimeout: o.AnonBodyTimeout,
		AnonRate: o.AnonRate, PublicURL: o.PublicURL, TrustedProxies: o.TrustedProxies},
		httpapi.Deps{Logger: o.Logger, Registry: reg, Clock: o.Clock, DB: db, Auth: authSvc, Directory: dir, Registrations: regs,
			Tenancy: ten, Meters: meters, Usage: use, Activation: issuer, Signer: signer,
			Ingestor: ingestor, Ledger: led, Forwarder: forwarder, BillingMap: billingMap, Billing: bill, Portal: web, Audit: audit.NewLog(db), Refusals: refusals, Quarantine: quar, Notify: events, Budgets: budgets,
			ExportKick: func() {
				select {
				case kick <- struct{}{}:
				default:
				}
			}})
	*app = App{DB: db, Clock: o.Clock, Logger: o.Logger, Auth: authSvc, Directory: dir, Registrations: regs, Tenancy: ten, Meters: meters, Usage: use,
		Signer: signer, Issuer: issuer, Forwarder: forwarder, Ingestor: ingestor, Ledger: led, Billing: bill, Quarantine: quar, Notify: events, Budgets: budgets, Watch: watcher, Handler: h, exportKick: kick, billingEvery: o.BillingInterval}
	return app, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

func parseClock(start string, rate int64) (*clock.Clock, error) {
	if start == "" {
		if rate != 1 {
			return nil, usagef("--clock-rate needs --clock-start")
		}
		return clock.Real(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, start)
	if err != nil {
		return nil, usagef("--clock-start %q is not an RFC 3339 time: %v", start, err)
	}
	c, err := clock.Simulated(t, rate)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return c, nil
}

func describeClock(c *clock.Clock) string {
	if !c.Simulated() {
		return "real"
	}
	return fmt.Sprintf("SIMULATED at %s, %dx real time", c.Now().Format(time.RFC3339), c.Rate())
}

// registerIntakeMetrics exposes the intake log: events acknowledged and not
// yet in the hourly records, events aggregated, and a clock gone back.
func registerIntakeMetrics(reg *prometheus.Registry, u *usage.Service) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stackbill_usage_intake_backlog_events", Help: "Acknowledged usage events waiting in the intake log for aggregation."},
			func() float64 { return float64(u.Backlog()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_usage_aggregated_events_total", Help: "Usage events aggregated into hourly records by this process."},
			func() float64 { return float64(u.Aggregated()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_usage_clock_behind_batches_total", Help: "Usage batches taken at the latest instant already received because this host's clock was behind it (the clock went back)."},
			func() float64 { n, _ := u.ClockBehind(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stackbill_usage_clock_behind_seconds", Help: "How far this host's clock was behind the latest instant usage was received at, at the latest batch; 0 once it caught up."},
			func() float64 { _, d := u.ClockBehind(); return d.Seconds() }),
	)
}

// registerNotifyMetrics exposes the webhook sender: deliveries that
// succeeded, attempts that failed, deliveries given up, and deliveries
// waiting.
func registerNotifyMetrics(reg *prometheus.Registry, n *notify.Service) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_webhook_deliveries_succeeded_total", Help: "Webhook deliveries this process sent that the receiver accepted (2xx)."},
			func() float64 { ok, _, _ := n.Counters(); return float64(ok) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_webhook_attempts_failed_total", Help: "Webhook delivery attempts by this process that failed (no answer, or not 2xx); most are retried."},
			func() float64 { _, failed, _ := n.Counters(); return float64(failed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_webhook_deliveries_given_up_total", Help: "Webhook deliveries this process gave up after the whole retry schedule failed."},
			func() float64 { _, _, gone := n.Counters(); return float64(gone) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stackbill_webhook_deliveries_pending", Help: "Webhook deliveries waiting to be sent or retried, all instances."},
			func() float64 { p, _ := n.Pending(context.Background()); return float64(p) }),
	)
}

// registerBudgetMetrics exposes the budget evaluator's work.
func registerBudgetMetrics(reg *prometheus.Registry, b *budget.Service) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_budget_evaluations_total", Help: "Budget periods this process evaluated against their thresholds."},
			func() float64 { n, _, _ := b.Counters(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_budget_crossings_total", Help: "Budget thresholds this process found crossed and recorded (each crossing is recorded once, by one instance)."},
			func() float64 { _, n, _ := b.Counters(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stackbill_budget_evaluation_failures_total", Help: "Budget evaluations that failed; the others went on."},
			func() float64 { _, _, n := b.Counters(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stackbill_budget_round_seconds", Help: "How long this process's last evaluation of every budget took (it reads the open periods' bills once per round)."},
			func() float64 { return b.LastRound().Seconds() }),
	)
}

// registerBridgeMetrics exposes the bridge's state. Each scrape reads the
// status once (it settles intake and counts the backlog), for all three
// series.
func registerBridgeMetrics(reg *prometheus.Registry, f *bridge.Forwarder) {
	reg.MustRegister(&bridgeCollector{f: f,
		backlog:   prometheus.NewDesc("stackbill_bridge_backlog_records", "Closed-hour usage records not yet forwarded to commerce.", nil, nil),
		lag:       prometheus.NewDesc("stackbill_bridge_lag_seconds", "Age of the oldest unforwarded closed reported hour.", nil, nil),
		forwarded: prometheus.NewDesc("stackbill_bridge_forwarded_records_total", "Records forwarded by this process.", nil, nil),
	})
}

type bridgeCollector struct {
	f                       *bridge.Forwarder
	backlog, lag, forwarded *prometheus.Desc
}

func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.lag
	ch <- c.forwarded
}

func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.f.Status(ctx)
	if err != nil {
		// A gauge of zero would say "caught up"; an invalid metric makes
		// the scrape report the failure instead.
		ch <- prometheus.NewInvalidMetric(c.backlog, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(st.Backlog))
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, st.LagSeconds)
	ch <- prometheus.MustNewConstMetric(c.forwarded, prometheus.CounterValue, float64(st.Forwarded))
}

// quarantineCollector exposes what background stages hold, per stage.
type quarantineCollector struct {
	q    *quarantine.Service
	held *prometheus.Desc
}

func (c *quarantineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.held }

func (c *quarantineCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.q.Counts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.held, err)
		return
	}
	for _, st := range quarantine.Stages {
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}

// RunBilling runs commerce's billing background work until ctx ends: queued
// reconciliation exports (woken at once when one is queued) and, when
// autoFinalize is set, finalization of periods whose grace has passed.
func (a *App) RunBilling(ctx context.Context, autoFinalize bool) {
	every := a.billingEvery
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastVerify time.Time
	for {
		if err := a.Billing.RunExports(ctx); err != nil && ctx.Err() == nil {
			a.Logger.Error("reconciliation exports", "err", err)
		}
		// Conservation is checked continuously: the open period's views
		// every hour (finalization checks a period before it commits).
		if time.Since(lastVerify) > time.Hour {
			lastVerify = time.Now()
			open := clock.Period(a.Clock.Now())
			if rep, err := a.Billing.Verify(ctx, open); err != nil && ctx.Err() == nil {
				a.Logger.Error("billing verify", "period", open, "err", err)
			} else if err == nil {
				a.billingDifferences.Store(int64(len(rep.Differences)))
				for _, d := range rep.Differences {
					a.Logger.Error("billing views disagree", "difference", d.String())
				}
			}
		}
		if autoFinalize {
			if done, err := a.Billing.FinalizeDue(ctx); err != nil && ctx.Err() == nil {
				a.Logger.Warn("automatic finalization", "err", err)
			} else if len(done) > 0 {
				a.Logger.Info("periods finalized automatically", "periods", done)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.exportKick:
		}
	}
}

// RunAuditCheckpoints seals pending audit records into the chain every
// second (audit.Seal) and signs a checkpoint of the chain's head every
// minute while it moves (audit.Checkpoint), until ctx ends.
func (a *App) RunAuditCheckpoints(ctx context.Context) {
	seal := time.NewTicker(time.Second)
	defer seal.Stop()
	sign := time.NewTicker(time.Minute)
	defer sign.Stop()
	checkpoint := true
	for {
		if checkpoint {
			if _, err := audit.Checkpoint(ctx, a.DB, a.Signer, a.Clock.Now()); err != nil && ctx.Err() == nil {
				a.Logger.Error("audit checkpoint", "err", err)
			}
		} else if _, err := audit.Seal(ctx, a.DB); err != nil && ctx.Err() == nil {
			a.Logger.Error("audit seal", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-seal.C:
			checkpoint = false
		case <-sign.C:
			checkpoint = true
		}
	}
}

// RunAuditSeal seals pending audit records into the chain every second
// (audit.Seal), until ctx ends: a stack's, which signs no checkpoints.
func (a *App) RunAuditSeal(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if _, err := audit.Seal(ctx, a.DB); err != nil && ctx.Err() == nil {
			a.Logger.Error("audit seal", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--commerce-ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, usagef("--commerce-ca %s holds no PEM certificate", path)
	}
	return pool, nil
}
