package billing

import (
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/stackbill/stackbill/internal/money"
)

// TestPriceListSpreadsheets imports the two spreadsheet layouts partners
// download: every Azure Stack meter with its tiers, the other regions
// skipped and counted, dates and prices read from real date and number
// cells.
func TestPriceListSpreadsheets(t *testing.T) {
	for _, layout := range []string{LayoutLegacy, LayoutAzurePlan} {
		t.Run(layout, func(t *testing.T) {
			data, err := SamplePriceListSheet(layout)
			if err != nil {
				t.Fatal(err)
			}
			if !IsSpreadsheet(data) {
				t.Fatal("the sample is not recognised as a spreadsheet")
			}
			p, err := parsePriceList(data, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if p.currency != "USD" || !p.effective.Equal(time.Date(2019, 12, 3, 0, 0, 0, 0, time.UTC)) || len(p.prices) != 6 {
				t.Fatalf("%s %s, %d prices", p.currency, p.effective, len(p.prices))
			}
			if p.report.RowsSkip == 0 || p.report.SkipReason[`region "US West" is not Azure Stack`] == 0 {
				t.Errorf("the other region's rows were not skipped and counted: %+v", p.report)
			}
			want := map[string]string{"9c23489b-c01c-5893-b898-412bd252b0db": "0.008", "96f33ea2-68e0-5f55-9501-0be6f9fa9c98": "0.018"}
			for _, pr := range p.prices {
				if w, ok := want[pr.MeterID]; ok && (len(pr.Tiers) != 1 || !pr.Tiers[0].Price.Equal(money.MustQuantity(w))) {
					t.Errorf("meter %s: tiers %+v, want one at %s", pr.MeterID, pr.Tiers, w)
				}
			}
		})
	}
}

// TestPriceListSpreadsheetErrors: a malformed spreadsheet is refused whole,
// and the message names the sheet, the cell and its column.
func TestPriceListSpreadsheetErrors(t *testing.T) {
	data, err := SamplePriceListSheet(LayoutAzurePlan)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(cells map[string]any) []byte {
		f, err := excelize.OpenReader(strings.NewReader(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for cell, v := range cells {
			if err := f.SetCellValue("Azure plan price list", cell, v); err != nil {
				t.Fatal(err)
			}
		}
		b, err := f.WriteToBuffer()
		if err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for _, c := range []struct {
		name  string
		cells map[string]any
		want  string
	}{
		{"price", map[string]any{"M3": "free"}, `sheet "Azure plan price list", cell M3 (UnitPrice)`},
		{"meter ID", map[string]any{"N4": "not-a-meter"}, `cell N4 (MeterId): MeterId "not-a-meter" is not a GUID`},
		{"currency", map[string]any{"L2": "EUR"}, `cell L3 (PricingCurrency): currency USD differs`},
		{"date", map[string]any{"A5": "soon"}, `cell A5 (EffectiveStartDate): EffectiveDate`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parsePriceList(edit(c.cells), time.Time{})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "not imported") {
				t.Errorf("got %v, want it to say %q", err, c.want)
			}
		})
	}
	for _, bad := range [][]byte{[]byte("PK\x03\x04 not a zip"), append([]byte("PK\x03\x04"), make([]byte, 100)...)} {
		if _, err := parsePriceList(bad, time.Time{}); err == nil || !strings.Contains(err.Error(), "not a readable .xlsx") {
			t.Errorf("a broken spreadsheet: %v", err)
		}
	}
	// A sheet without a price list header is passed over; none at all is
	// refused.
	f := excelize.NewFile()
	_ = f.SetCellValue("Sheet1", "A1", "Notes")
	b, _ := f.WriteToBuffer()
	if _, err := parsePriceList(b.Bytes(), time.Time{}); err == nil || !strings.Contains(err.Error(), "No sheet") {
		t.Errorf("a spreadsheet without a price list: %v", err)
	}
}

// TestPriceListLayoutsAsCSV: the same two layouts saved as CSV (as a
// partner may export them from the spreadsheet) import to the same prices
// as the spreadsheets.
func TestPriceListLayoutsAsCSV(t *testing.T) {
	for _, layout := range []string{LayoutLegacy, LayoutAzurePlan} {
		t.Run(layout, func(t *testing.T) {
			sheet, err := SamplePriceListSheet(layout)
			if err != nil {
				t.Fatal(err)
			}
			f, err := excelize.OpenReader(strings.NewReader(string(sheet)))
			if err != nil {
				t.Fatal(err)
			}
			rows, err := f.GetRows(f.GetSheetList()[0]) // formatted, as a spreadsheet saves CSV
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			w := csv.NewWriter(&b)
			_ = w.WriteAll(rows)
			fromSheet, err := parsePriceList(sheet, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			fromCSV, err := parsePriceList([]byte(b.String()), time.Time{})
			if err != nil {
				t.Fatalf("%v\n%s", err, b.String())
			}
			if len(fromCSV.prices) != len(fromSheet.prices) || !fromCSV.effective.Equal(fromSheet.effective) || fromCSV.report.RowsSkip != fromSheet.report.RowsSkip {
				t.Fatalf("CSV: %d prices from %s, %d skipped; spreadsheet: %d from %s, %d skipped", len(fromCSV.prices), fromCSV.effective, fromCSV.report.RowsSkip,
					len(fromSheet.prices), fromSheet.effective, fromSheet.report.RowsSkip)
			}
			for i := range fromCSV.prices {
				a, b := fromCSV.prices[i], fromSheet.prices[i]
				if a.MeterID != b.MeterID || len(a.Tiers) != len(b.Tiers) || !a.Tiers[0].Price.Equal(b.Tiers[0].Price) {
					t.Errorf("meter %s: CSV %+v, spreadsheet %+v", a.MeterID, a.Tiers, b.Tiers)
				}
			}
		})
	}
}
