package architecture_test

import (
	"go/ast"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// createTable finds each table a migration creates.
var createTable = regexp.MustCompile(`(?i)create\s+table\s+(?:if\s+not\s+exists\s+)?([a-z_][a-z0-9_]*)`)

// tables lists every table the migrations of both engines create.
func tables(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, engine := range []string{"sqlite", "postgres"} {
		dir := filepath.Join("..", "store", "migrations", engine)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range createTable.FindAllStringSubmatch(string(b), -1) {
				out[strings.ToLower(m[1])] = true
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("found %d tables in the migrations", len(out))
	}
	return out
}

// sqlNames finds the names a statement reads or writes: what follows FROM,
// JOIN, INTO, UPDATE, TABLE (and TRUNCATE, COPY).
var sqlNames = regexp.MustCompile(`(?i)\b(?:from|join|into|update|table|truncate|copy)\s+(?:only\s+|if\s+(?:not\s+)?exists\s+)?([a-z_][a-z0-9_]*)`)

// owners names, for each package that owns tables, the tables it owns: the
// only package whose SQL may name them. Every other package calls the
// owner's methods. A test-support package inside the owner's directory
// (store/storetest, the conformance suite) counts as the owner. Mechanisms
// that work on a table their caller names (idempotency's key store, drainer's
// log) own nothing: a table's name passed to one counts as naming it, so
// handing another package's table to a mechanism is caught too; an
// idempotency store's X_blocks table belongs to the owner of X. Changing this
// map is changing an interface between stages, so it is deliberate.
var owners = map[string][]string{
	"internal/audit":        {"audit_checkpoints", "audit_head", "audit_log", "audit_pending"},
	"internal/auth":         {"portal_sessions", "tokens"},
	"internal/budget":       {"budget_crossings", "budget_holds", "budgets"},
	"internal/billing":      {"billing_agreements", "billing_periods", "credit_notes", "export_chunks", "export_jobs", "invoice_lines", "invoices", "period_directories", "period_files", "price_books", "price_lists", "prices"},
	"internal/bridge":       {"bridge_forward_hours", "bridge_outbox"},
	"internal/directory":    {"customers", "directory_changes", "partners", "subscriptions"},
	"internal/ledger":       {"commerce_dedup", "commerce_dedup_blocks", "commerce_dedup_pages", "commerce_streams", "commerce_usage", "commerce_usage_default", "commerce_usage_log", "ingest_hours", "rating_series"},
	"internal/meter":        {"meter_map", "meters"},
	"internal/quarantine":   {"quarantine"},
	"internal/notify":       {"notify_attempts", "notify_deliveries", "notify_endpoint_types", "notify_endpoints", "notify_events"},
	"internal/registration": {"cloud_keys", "registration_events", "registrations", "tenant_mappings"},
	"internal/store":        {"settings"},
	"internal/tenancy":      {"directory_tenants", "subscription_holds", "user_subscription_changes", "user_subscriptions"},
	"internal/usage":        {"usage_dedup", "usage_dedup_blocks", "usage_dedup_pages", "usage_log", "usage_records"},
}

// ownerOf inverts owners.
func ownerOf() map[string]string {
	out := map[string]string{}
	for pkg, tables := range owners {
		for _, t := range tables {
			out[t] = pkg
		}
	}
	return out
}

func TestTablesHaveOneOwner(t *testing.T) {
	known := tables(t)
	owners := ownerOf()
	for name := range known {
		if owners[name] == "" {
			t.Errorf("table %s has no owner in this test's map: name the package that owns it", name)
		}
	}
	for name := range owners {
		if !known[name] {
			t.Errorf("the owner map names %s, which no migration creates", name)
		}
	}
	seen := 0
	for _, p := range packages(t) {
		for _, f := range p.files {
			// The literals handed to a table mechanism.
			handed := map[*ast.BasicLit]bool{}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok && (x.Name == "idempotency" || x.Name == "drainer") {
						for _, a := range call.Args {
							if lit, ok := a.(*ast.BasicLit); ok {
								handed[lit] = true
							}
						}
					}
				}
				return true
			})
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					return true
				}
				names := sqlNames.FindAllStringSubmatch(s, -1)
				if handed[lit] {
					names = append(names, []string{s, s})
				}
				for _, m := range names {
					name := strings.ToLower(m[1])
					owner := owners[name]
					if !known[name] || owner == "" {
						continue
					}
					seen++
					if p.dir != owner && !strings.HasPrefix(p.dir, owner+"/") {
						t.Errorf("%s names %s, which %s owns: call the owner's methods instead", p.fset.Position(lit.Pos()), name, owner)
					}
				}
				return true
			})
		}
	}
	if seen < 100 {
		t.Fatalf("found %d statements naming tables; the scan is not reading the SQL", seen)
	}
}
