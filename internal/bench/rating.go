package bench

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// RatingResult is one rating benchmark run.
type RatingResult struct {
	Records       int64
	Load          time.Duration // loading the records (not timed as rating)
	Rate          time.Duration // rating + invoice generation
	PeakHeapBytes uint64
	Total         string
	// Baseline: the same records COPYed into PostgreSQL and rated with
	// INSERT … SELECT … JOIN … GROUP BY (PostgreSQL only).
	Baseline      time.Duration
	BaselineQuery time.Duration // of Baseline, the INSERT … SELECT alone (after its load)
	BaselineTotal string
	// CPU is what rating cost this process and PostgreSQL.
	CPU cpuTimes
}

// RecordsPerSecond is rating throughput.
func (r RatingResult) RecordsPerSecond() float64 { return float64(r.Records) / r.Rate.Seconds() }

// benchMeters are billed meters of the sample price list with their unit
// divisor, cycled through by the generated records.
var benchMeters = [...]struct {
	id  string
	div int
}{{"9c23489b-c01c-5893-b898-412bd252b0db", 1}, {"fb8c0713-ea20-40bf-901f-5560fd3f6330", 1}, {"190c935e-9ada-48ff-9ab8-56ea1cf9adaa", 1}, {"8767aeb3-6909-4db2-9927-3f51e9a9085e", 730}}

// Rating loads n forwarded records for October 2026 spread over subs
// customer subscriptions of one direct CSP, then times rating and invoice
// generation of the period's drafts, sampling the heap to report its peak.
func Rating(ctx context.Context, app *Instance, n int64, subs int, withBaseline bool) (RatingResult, error) {
	res := RatingResult{Records: n}
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "bench"}
	doc := `{"partners":[{"id":"bench-csp","name":"Bench CSP","type":"DirectCSP"}],"customers":[`
	var subsJSON strings.Builder
	for i := 0; i < subs; i++ {
		if i > 0 {
			doc += ","
			subsJSON.WriteString(",")
		}
		doc += fmt.Sprintf(`{"tenantId":"%08x-0000-4000-8000-000000000001","name":"Customer %d","partner":"bench-csp"}`, i, i)
		fmt.Fprintf(&subsJSON, `{"id":"%08x-0000-4000-8000-000000000002","offer":"CSP","partner":"bench-csp","customerTenantId":"%08x-0000-4000-8000-000000000001"}`, i, i)
	}
	doc += `],"subscriptions":[` + subsJSON.String() + `]}`
	if _, err := app.Directory.Import(ctx, "bench", []byte(doc)); err != nil {
		return res, err
	}
	if _, err := app.Billing.ImportPriceList(ctx, op, "sample", billing.SamplePriceList(), time.Time{}); err != nil {
		return res, err
	}
	subID := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-000000000002", i) }
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	record := func(i int64) ledger.Charged {
		m := benchMeters[i%int64(len(benchMeters))]
		sub := subID(int(i/4) % subs)
		hour := clock.Micros(start.Add(time.Duration(i%744) * time.Hour))
		qty := fmt.Sprintf("%d.%03d", 1+i%7, i%1000)
		units, _ := money.MustQuantity(qty).Units()
		return ledger.Charged{ID: fmt.Sprintf("%032x", i), Subscription: sub, Mapped: true, LocalSub: sub, Tenant: "t", MeterKey: "k",
			BillingMeter: m.id, Qty: qty, BillingQty: qty, Units: units, HasUnits: true, MapVersion: 1, UsageUs: hour, ReportedUs: hour,
			URI: "/r", Location: "local", Tags: "null", Addl: "null"}
	}
	// The baselines load what rating reads of each record: subscription,
	// billing meter, usage hour and billing quantity.
	row := func(i int64) []any {
		c := record(i)
		return []any{c.Subscription, c.BillingMeter, c.UsageUs, c.BillingQty}
	}
	t0 := time.Now()
	const chunk = 20000
	recs := make([]ledger.Charged, 0, chunk)
	for i := int64(0); i < n; i += chunk {
		recs = recs[:0]
		for j := i; j < min(i+chunk, n); j++ {
			recs = append(recs, record(j))
		}
		if err := app.Ledger.Load(ctx, "bench-reg", "bench-cloud", start, recs); err != nil {
			return res, err
		}
	}
	if err := app.DB.Settle(ctx); err != nil {
		return res, err
	}
	res.Load = time.Since(t0)
	stop := heapPeak()
	t0, cpu0 := time.Now(), cpuNow()
	sum, err := app.Billing.Period(ctx, op, "2026-10")
	res.Rate, res.CPU = time.Since(t0), cpuNow().since(cpu0)
	res.PeakHeapBytes = stop()
	if err != nil {
		return res, err
	}
	if sum.Records != n || len(sum.Invoices) != 1 {
		return res, fmt.Errorf("rated %d records into %d invoices, want %d into 1", sum.Records, len(sum.Invoices), n)
	}
	res.Total = sum.Invoices[0].Total.String()
	if withBaseline && app.DB.Dialect == store.Postgres {
		if res.Baseline, res.BaselineQuery, res.BaselineTotal, err = sqlBaseline(ctx, app.DB, n, row); err != nil {
			return res, err
		}
		if res.BaselineTotal != res.Total {
			return res, fmt.Errorf("the SQL baseline totals %s, stackbill %s: the two ratings disagree", res.BaselineTotal, res.Total)
		}
	}
	if withBaseline && app.DB.Dialect == store.SQLite {
		// SQLite has no exact decimal type: the hand-written pipeline sums
		// floating point, so it is a speed baseline whose total may differ
		// in the last cents; it is reported, not required to agree.
		if res.Baseline, res.BaselineQuery, res.BaselineTotal, err = sqliteBaseline(ctx, app.DB, n, row); err != nil {
			return res, err
		}
	}
	return res, nil
}

// loadRecords bulk-loads generated rows: COPY on PostgreSQL, batched
// multi-row INSERTs in one transaction on SQLite.
func loadRecords(ctx context.Context, db *store.DB, table string, cols []string, n int64, row func(int64) []any) error {
	if db.Dialect == store.Postgres {
		return copyRows(ctx, db, table, cols, n, row)
	}
	return db.Write(ctx, func(tx *store.Tx) error {
		const batch = 40
		for i := int64(0); i < n; i += batch {
			var sb strings.Builder
			sb.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
			var args []any
			for j := i; j < min(i+batch, n); j++ {
				if j > i {
					sb.WriteString(", ")
				}
				sb.WriteString("(" + store.Placeholders(len(cols)) + ")")
				args = append(args, row(j)...)
			}
			if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
}

func copyRows(ctx context.Context, db *store.DB, table string, cols []string, n int64, row func(int64) []any) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c := dc.(*stdlib.Conn).Conn()
		var i int64
		_, err := c.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			return row(i - 1), nil
		}))
		return err
	})
}

// sqlBaseline is the pipeline a team would otherwise write: COPY the same
// records into a table, then rate them with one INSERT … SELECT … JOIN …
// GROUP BY against the same prices, each line rounded to cents.
func sqlBaseline(ctx context.Context, db *store.DB, n int64, row func(int64) []any) (all, query time.Duration, total string, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, 0, "", err
	}
	defer conn.Close()
	for _, q := range []string{
		`DROP TABLE IF EXISTS baseline_usage, baseline_prices, baseline_lines`,
		`CREATE TABLE baseline_usage (subscription_id text, meter_id text, usage_hour_us bigint, quantity numeric)`,
		`CREATE TABLE baseline_prices (meter_id text PRIMARY KEY, unit_price numeric, divisor numeric)`,
		`CREATE TABLE baseline_lines (subscription_id text, meter_id text, quantity numeric, amount numeric)`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return 0, 0, "", err
		}
	}
	prices := map[string]string{"9c23489b-c01c-5893-b898-412bd252b0db": "0.008", "fb8c0713-ea20-40bf-901f-5560fd3f6330": "0.046",
		"190c935e-9ada-48ff-9ab8-56ea1cf9adaa": "0.056", "8767aeb3-6909-4db2-9927-3f51e9a9085e": "0.006"}
	for _, m := range benchMeters {
		if _, err := conn.ExecContext(ctx, `INSERT INTO baseline_prices VALUES ($1, $2, $3)`, m.id, prices[m.id], m.div); err != nil {
			return 0, 0, "", err
		}
	}
	t0 := time.Now()
	err = conn.Raw(func(dc any) error {
		c := dc.(*stdlib.Conn).Conn()
		var i int64
		_, err := c.CopyFrom(ctx, pgx.Identifier{"baseline_usage"}, []string{"subscription_id", "meter_id", "usage_hour_us", "quantity"},
			pgx.CopyFromFunc(func() ([]any, error) {
				if i == n {
					return nil, nil
				}
				r := row(i)
				i++
				return r, nil
			}))
		return err
	})
	if err != nil {
		return 0, 0, "", err
	}
	t1 := time.Now()
	if _, err := conn.ExecContext(ctx, `INSERT INTO baseline_lines
		SELECT u.subscription_id, u.meter_id, SUM(u.quantity), ROUND(SUM(u.quantity) * p.unit_price / p.divisor, 2)
		FROM baseline_usage u JOIN baseline_prices p ON p.meter_id = u.meter_id
		WHERE u.usage_hour_us >= $1 AND u.usage_hour_us < $2
		GROUP BY u.subscription_id, u.meter_id, p.unit_price, p.divisor`, clock.Micros(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)), clock.Micros(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))); err != nil {
		return 0, 0, "", err
	}
	all, query = time.Since(t0), time.Since(t1)
	var sum sql.NullString
	if err := conn.QueryRowContext(ctx, `SELECT trim_scale(SUM(amount))::text FROM baseline_lines`).Scan(&sum); err != nil {
		return 0, 0, "", err
	}
	_, _ = conn.ExecContext(ctx, `DROP TABLE IF EXISTS baseline_usage, baseline_prices, baseline_lines`)
	return all, query, sum.String, nil
}

// sqliteBaseline is sqlBaseline on SQLite: bulk INSERT of the same records,
// then one INSERT … SELECT … JOIN … GROUP BY with REAL arithmetic.
func sqliteBaseline(ctx context.Context, db *store.DB, n int64, row func(int64) []any) (all, query time.Duration, total string, err error) {
	prices := map[string]string{"9c23489b-c01c-5893-b898-412bd252b0db": "0.008", "fb8c0713-ea20-40bf-901f-5560fd3f6330": "0.046",
		"190c935e-9ada-48ff-9ab8-56ea1cf9adaa": "0.056", "8767aeb3-6909-4db2-9927-3f51e9a9085e": "0.006"}
	if err := db.Write(ctx, func(tx *store.Tx) error {
		for _, q := range []string{`DROP TABLE IF EXISTS baseline_usage`, `DROP TABLE IF EXISTS baseline_prices`, `DROP TABLE IF EXISTS baseline_lines`,
			`CREATE TABLE baseline_usage (subscription_id TEXT, meter_id TEXT, usage_hour_us BIGINT, quantity TEXT)`,
			`CREATE TABLE baseline_prices (meter_id TEXT PRIMARY KEY, unit_price REAL, divisor REAL)`,
			`CREATE TABLE baseline_lines (subscription_id TEXT, meter_id TEXT, quantity REAL, amount REAL)`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		for _, m := range benchMeters {
			if _, err := tx.ExecContext(ctx, `INSERT INTO baseline_prices VALUES (?, ?, ?)`, m.id, prices[m.id], m.div); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return 0, 0, "", err
	}
	t0 := time.Now()
	if err := loadRecords(ctx, db, "baseline_usage", []string{"subscription_id", "meter_id", "usage_hour_us", "quantity"}, n, row); err != nil {
		return 0, 0, "", err
	}
	t1 := time.Now()
	if err := db.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO baseline_lines
			SELECT u.subscription_id, u.meter_id, SUM(CAST(u.quantity AS REAL)), ROUND(SUM(CAST(u.quantity AS REAL)) * p.unit_price / p.divisor, 2)
			FROM baseline_usage u JOIN baseline_prices p ON p.meter_id = u.meter_id
			WHERE u.usage_hour_us >= ? AND u.usage_hour_us < ?
			GROUP BY u.subscription_id, u.meter_id, p.unit_price, p.divisor`, clock.Micros(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)), clock.Micros(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)))
		return err
	}); err != nil {
		return 0, 0, "", err
	}
	all, query = time.Since(t0), time.Since(t1)
	var sum float64
	if err := db.QueryRowContext(ctx, `SELECT SUM(amount) FROM baseline_lines`).Scan(&sum); err != nil {
		return 0, 0, "", err
	}
	return all, query, fmt.Sprintf("%.2f", sum), nil
}
