package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestRecoveryAfterCrashMidMigration kills `stackbill migrate` with SIGKILL
// inside the transaction of the last migration: the database stays at the
// previous version with nothing of the half-applied migration, and the next
// start applies it whole.
func TestRecoveryAfterCrashMidMigration(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and kills processes")
	}
	bin := e2e.BuildBinary(t, "../..")
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		dsn := storetest.DSN(t, backend)
		migs, err := store.Migrations(store.SQLite)
		if err != nil {
			t.Fatal(err)
		}
		last := len(migs)
		cmd := exec.Command(bin, "migrate", "--db", dsn)
		cmd.Env = append(os.Environ(), fmt.Sprintf("STACKBILL_FAILPOINTS=migrate-mid:%d", last))
		if out, err := cmd.CombinedOutput(); !e2e.KilledBySIGKILL(err) {
			t.Fatalf("migrate with a crash point: %v\n%s", err, out)
		}
		db, err := store.Open(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		v, err := db.SchemaVersion(ctx)
		if err != nil || v != last-1 {
			t.Fatalf("after the crash: schema version %d (%v), want %d", v, err, last-1)
		}
		// probe reads what the last migration adds; a new migration must
		// name its own probe here, so the test keeps crashing the newest.
		probe, ok := map[string]string{
			"0009_period_directory.sql": `SELECT COUNT(*) FROM period_directories`,
			"0010_intake_log.sql":       `SELECT COUNT(*) FROM usage_log`,
			"0011_commerce_log.sql":     `SELECT COUNT(*) FROM commerce_usage_log`,
			"0012_bridge_outbox.sql":    `SELECT COUNT(*) FROM bridge_outbox`,
			"0013_containment.sql":      `SELECT COUNT(*) FROM audit_checkpoints`,
			"0014_period_files.sql":     `SELECT COUNT(*) FROM period_files`,
			"0015_billing_indexes.sql":  map[string]string{"sqlite": `SELECT COUNT(*) FROM commerce_usage INDEXED BY commerce_usage_local_only WHERE billing_meter_id = ''`, "postgres": `SELECT COUNT(*) FROM pg_class WHERE oid = 'commerce_usage_local_only'::regclass`}[backend],
			"0016_audit_pending.sql":    `SELECT COUNT(*) FROM audit_pending`,
			"0017_export_phase.sql":     `SELECT COUNT(phase) FROM export_jobs`,
			// SQLite's 0019 changes nothing (partitions are PostgreSQL's), so
			// what can be half there is its own record.
			"0019_partition_usage.sql": map[string]string{"sqlite": `SELECT COUNT(*) FROM schema_migrations WHERE version = 19 HAVING COUNT(*) = 1`,
				"postgres": `SELECT COUNT(*) FROM commerce_usage_default`}[backend],
			"0020_commerce_streams.sql": `SELECT COUNT(*) FROM commerce_streams`,
			"0021_usage_log_cloud.sql":  `SELECT COUNT(cloud_id) FROM commerce_usage_log`,
			// PostgreSQL's 0022 changes nothing (its keys are rows).
			"0022_dedup_pages.sql": map[string]string{"sqlite": `SELECT COUNT(*) FROM commerce_dedup_pages`,
				"postgres": `SELECT COUNT(*) FROM schema_migrations WHERE version = 22 HAVING COUNT(*) = 1`}[backend],
			"0023_notify.sql":             `SELECT COUNT(*) FROM notify_attempts`,
			"0024_budgets.sql":            `SELECT COUNT(*) FROM budget_crossings`,
			"0025_subscription_holds.sql": `SELECT COUNT(*) FROM subscription_holds`,
			"0026_webhook_rotation.sql":   `SELECT COUNT(previous_secret) FROM notify_endpoints`,
		}[migs[last-1].Name]
		if !ok {
			t.Fatalf("no probe for the last migration %s", migs[last-1].Name)
		}
		var n int
		if err := db.QueryRowContext(ctx, probe).Scan(&n); err == nil {
			t.Fatalf("migration %d is half there: %s answers %d", last, probe, n)
		}
		db.Close()
		out, err := exec.Command(bin, "migrate", "--db", dsn).CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("schema version %d", last)) {
			t.Fatalf("migrate after the crash: %v\n%s", err, out)
		}
		db, err = store.Open(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.QueryRowContext(ctx, probe).Scan(&n); err != nil {
			t.Fatalf("after recovery: %s: %v", probe, err)
		}
	})
}

// serveProc is `stackbill serve` on dsn, on a free loopback port, with token
// as the operator's and failpoint armed (none when empty), not started yet:
// Start waits until it serves; Launch does not, for one that may die at its
// fail point as it starts.
func serveProc(t *testing.T, bin, dsn, token, failpoint string, args ...string) *e2e.Proc {
	addr := e2e.FreeAddr(t)
	return &e2e.Proc{T: t, Bin: bin, URL: "http://" + addr, Args: append([]string{"serve", "--addr", addr, "--db", dsn}, args...),
		Env: []string{"STACKBILL_OPERATOR_TOKEN=" + token, "STACKBILL_FAILPOINTS=" + failpoint}}
}

// TestRecoveryAfterCrashMidFinalization kills the serving process with
// SIGKILL inside the finalization transaction, after the invoices were
// written: after the restart the period is still open with no invoice and no
// usage stamped, and finalizing again produces exactly the invoices that
// would have been.
func TestRecoveryAfterCrashMidFinalization(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and kills processes")
	}
	bin := e2e.BuildBinary(t, "../..")
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		w := newBillingWorld(t, backend)
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		drafts, err := w.env.app.Billing.Invoices(ctx, op, "2026-10")
		if err != nil || len(drafts) == 0 {
			t.Fatalf("drafts: %v %d", err, len(drafts))
		}
		want := map[string]string{}
		for _, inv := range drafts {
			want[inv.Number] = inv.Total.String()
		}
		var usageRows int
		if err := w.env.app.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM commerce_usage WHERE usage_hour_us < ?`, int64(1793491200000000)).Scan(&usageRows); err != nil {
			t.Fatal(err)
		}
		dsn := w.env.dsn
		w.env.app.Close()
		serve := func(failpoint string) *e2e.Proc {
			p := serveProc(t, bin, dsn, "op-recovery", failpoint, "--clock-start", "2026-11-05T00:00:00Z", "--auto-finalize=false")
			p.Start()
			return p
		}
		finalize := func(p *e2e.Proc) (*http.Response, error) {
			return http.DefaultClient.Do(e2e.NewRequest("POST", p.URL+"/v1/billing/periods/2026-10/finalize", "op-recovery", "", nil))
		}
		p := serve("finalize-mid")
		if resp, err := finalize(p); err == nil {
			resp.Body.Close()
			t.Fatalf("finalize with a crash point answered %d", resp.StatusCode)
		}
		if err := p.Wait(); !e2e.KilledBySIGKILL(err) {
			t.Fatalf("the server was not killed at the crash point: %v", err)
		}
		p = serve("")
		defer p.Kill9()
		resp, body := e2e.Call(t, http.DefaultClient, "GET", p.URL+"/v1/billing/periods/2026-10", "op-recovery", "", nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `"status":"open"`) {
			t.Fatalf("after the crash the period is not open: %d %s", resp.StatusCode, body)
		}
		resp, err = finalize(p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("finalize after restart: %v %v", resp, err)
		}
		resp.Body.Close()
		for number, total := range want {
			_, body := e2e.Call(t, http.DefaultClient, "GET", p.URL+"/v1/billing/invoices/"+number, "op-recovery", "", nil)
			var inv struct {
				Status string          `json:"status"`
				Total  json.RawMessage `json:"total"`
			}
			_ = json.Unmarshal([]byte(body), &inv)
			if inv.Status != "final" || string(inv.Total) != total {
				t.Fatalf("invoice %s after recovery: %s %s, want final %s", number, inv.Status, inv.Total, total)
			}
		}
		p.Kill9()
		db, err := store.Open(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var invoices, billed int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM invoices WHERE period = '2026-10'`).Scan(&invoices); err != nil || invoices != len(want) {
			t.Fatalf("%d invoices stored (%v), want %d", invoices, err, len(want))
		}
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM commerce_usage WHERE billed_period = '2026-10'`).Scan(&billed); err != nil || billed != usageRows {
			t.Fatalf("%d usage rows billed to 2026-10 (%v), want %d", billed, err, usageRows)
		}
		if _, err := audit.Verify(ctx, db, nil, nil); err != nil {
			t.Fatal(err)
		}
	})
}
