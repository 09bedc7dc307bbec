package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
)

// TestPriceListSpreadsheetCLI imports the shipped sample spreadsheets (both
// Partner Center layouts) through the CLI and the API, and refuses a
// malformed one whole, naming its cell.
func TestPriceListSpreadsheetCLI(t *testing.T) {
	t.Parallel()
	clk := clock.Manual(time.Date(2026, 10, 15, 12, 0, 0, 0, time.UTC))
	e := newTestEnv(t, "sqlite", func(o *Options) { o.Clock = clk })
	op := map[string]string{"STACKBILL_URL": e.url, "STACKBILL_TOKEN": e.operator}
	count := func() int {
		lists, err := e.app.Billing.PriceLists(t.Context(), auth.Principal{Role: auth.RoleOperator, TokenID: "t"})
		if err != nil {
			t.Fatal(err)
		}
		return len(lists)
	}
	for i, c := range []struct{ file, effective string }{
		{"price-list-legacy.xlsx", "2027-01-01"},
		{"price-list-azure-plan.xlsx", "2027-02-01"},
	} {
		path := filepath.Join("..", "..", "docs", "samples", c.file)
		r := runCLI(t, op, "billing", "price-list", "import", "--effective", c.effective, path)
		if r.code != 0 || !strings.Contains(r.stdout, "6 kept") || !strings.Contains(r.stdout, `skipped`) || !strings.Contains(r.stdout, `region "US West" is not Azure Stack`) {
			t.Fatalf("import %s: %+v", c.file, r)
		}
		if n := count(); n != i+1 {
			t.Fatalf("after %s: %d price lists", c.file, n)
		}
	}
	// The CLI writes the samples it ships.
	out := filepath.Join(t.TempDir(), "plan.xlsx")
	if r := runCLI(t, op, "billing", "price-list", "sample", "--layout", "azure-plan", "--out", out); r.code != 0 {
		t.Fatalf("sample: %+v", r)
	}
	// A malformed spreadsheet: nothing is imported, and the message says
	// which cell to fix.
	f, err := excelize.OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.SetCellValue("Azure plan price list", "M4", "twelve")
	bad := filepath.Join(t.TempDir(), "bad.xlsx")
	if err := f.SaveAs(bad); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := runCLI(t, op, "billing", "price-list", "import", "--effective", "2027-03-01", bad)
	if r.code == 0 || !strings.Contains(r.stderr, "InvalidPriceList") || !strings.Contains(r.stderr, `cell M4 (UnitPrice)`) || count() != 2 {
		t.Fatalf("malformed spreadsheet: %+v, %d price lists", r, count())
	}
	if _, err := os.Stat(bad); err != nil {
		t.Fatal(err)
	}
}
