package cli

import (
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// fingerprint summarises a database's content: row counts of the tables that
// matter, the audit chain's head and the current invoice's total.
func fingerprint(t *testing.T, app *App) string {
	t.Helper()
	ctx := t.Context()
	// Forwarded usage still in commerce's log is materialised first: a
	// restored commerce does so as soon as it runs.
	if err := app.Ledger.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	// Pending audit records too: a restored commerce seals them at once.
	if _, err := audit.Seal(ctx, app.DB); err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, table := range []string{"partners", "customers", "subscriptions", "registrations", "tenant_mappings", "usage_records", "usage_dedup", "usage_log", "commerce_usage", "commerce_usage_log",
		"price_books", "tokens", "audit_log"} {
		var n int64
		if err := app.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, fmt.Sprintf("%s=%d", table, n))
	}
	var head string
	if err := app.DB.QueryRowContext(ctx, `SELECT hash FROM audit_head`).Scan(&head); err != nil {
		t.Fatal(err)
	}
	invs, err := app.Billing.Invoices(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, clock.Period(app.Clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	for _, inv := range invs {
		parts = append(parts, inv.Number+"="+inv.Total.String())
	}
	return strings.Join(append(parts, "head="+head), " ")
}

// TestBackupRestoreRoundTrip backs up a live demo installation, changes it,
// restores the backup and checks the content is exactly what was backed up,
// with an intact audit chain, on both engines.
func TestBackupRestoreRoundTrip(t *testing.T) {
	t.Parallel()
	for _, backend := range storetest.Backends {
		t.Run(backend, func(t *testing.T) {
			if backend == "postgres" {
				if _, err := exec.LookPath("pg_dump"); err != nil {
					if os.Getenv("CI") == "true" {
						t.Fatal("CI=true but pg_dump is missing (Debian's postgresql-client)")
					}
					t.Skip("pg_dump is not installed")
				}
			}
			ctx := t.Context()
			pw := newPortalWorld(t, backend, 1)
			dsn := pw.dsn
			want := fingerprint(t, pw.app)
			file := filepath.Join(t.TempDir(), "stackbill.backup")
			if res := runCLI(t, nil, "backup", "--db", dsn, "--out", file); res.code != 0 {
				t.Fatalf("backup: %s %s", res.stdout, res.stderr)
			}
			if res := runCLI(t, nil, "backup", "--db", dsn, "--out", file); res.code != 2 {
				t.Fatalf("a second backup over the first: exit %d", res.code)
			}
			// Change things after the backup.
			if _, err := pw.app.Billing.PutPriceBook(ctx, auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "t"},
				billing.PriceBook{Owner: "fabrikam", Target: billing.DefaultTarget, MarkupPercent: money.FromInt(3)}); err != nil {
				t.Fatal(err)
			}
			if fingerprint(t, pw.app) == want {
				t.Fatal("the change did not change the fingerprint")
			}
			target := dsn
			if backend == "sqlite" {
				pw.app.Close()
				if res := runCLI(t, nil, "restore", "--db", target, "--from", file); res.code != 2 {
					t.Fatalf("restore over a database without --force: exit %d", res.code)
				}
				if res := runCLI(t, nil, "restore", "--db", target, "--from", file, "--force"); res.code != 0 || !strings.Contains(res.stdout, "audit chain") {
					t.Fatalf("restore: %s %s", res.stdout, res.stderr)
				}
			} else {
				target = freshDatabase(t, dsn) // an empty database, same schema name
				if res := runCLI(t, nil, "restore", "--db", target, "--from", file); res.code != 0 {
					t.Fatalf("restore: %s %s", res.stdout, res.stderr)
				}
			}
			app := buildApp(t, Options{DB: target, Clock: pw.app.Clock})
			if got := fingerprint(t, app); got != want {
				t.Fatalf("restored content differs:\n got %s\nwant %s", got, want)
			}
			if _, err := audit.NewLog(app.DB).Verify(ctx, nil, nil); err != nil {
				t.Fatal(err)
			}
			if res := runCLI(t, nil, "restore", "--db", filepath.Join(t.TempDir(), "x.db"), "--from", filepath.Join(t.TempDir(), "missing")); res.code != 2 {
				t.Fatalf("restore from a missing file: exit %d", res.code)
			}
		})
	}
}

// freshDatabase creates an empty PostgreSQL database for the test and returns
// dsn pointed at it (same credentials, same search_path).
func freshDatabase(t *testing.T, dsn string) string {
	t.Helper()
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := "restore_" + strings.ReplaceAll(randomGUID()[:8], "-", "")
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a, err := sql.Open("pgx", dsn); err == nil {
			_, _ = a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			a.Close()
		}
	})
	u, _ := url.Parse(dsn)
	u.Path = "/" + name
	return u.String()
}
