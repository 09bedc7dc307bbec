package billing

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/xuri/excelize/v2"
)

// Sample layouts of the price-list spreadsheets partners download from
// Partner Center ("Pricing and offers"): the legacy "Azure in Global CSP
// price list", a rate card per meter with its tiers in one cell, and the
// new-commerce Azure plan price list, one row per meter and tier. Both hold
// rows of other regions too, which an import skips and counts, as the
// seed's step 4 filters on Region "Azure Stack".
const (
	LayoutLegacy    = "legacy"
	LayoutAzurePlan = "azure-plan"
)

// sampleMeter is a row of the samples: the reference's list prices (§6.2)
// and, for contrast, one public-cloud row.
type sampleMeter struct {
	id, name, category, sub, region, unit string
	tiers                                 [][2]float64 // threshold, price
	included                              float64
}

var sampleMeters = []sampleMeter{
	{"9c23489b-c01c-5893-b898-412bd252b0db", "1 Core", "Azure Stack Hub", "Base VM", "Azure Stack", "1 Hour", [][2]float64{{0, 0.008}}, 0},
	{"fb8c0713-ea20-40bf-901f-5560fd3f6330", "1 Core", "Azure Stack Hub", "Windows VM", "Azure Stack", "1 Hour", [][2]float64{{0, 0.046}}, 0},
	{"190c935e-9ada-48ff-9ab8-56ea1cf9adaa", "1 Core", "Azure Stack Hub", "App Service", "Azure Stack", "1 Hour", [][2]float64{{0, 0.056}}, 0},
	{"8767aeb3-6909-4db2-9927-3f51e9a9085e", "Block Blob", "Storage", "Block Blob", "Azure Stack", "1 GB/Month", [][2]float64{{0, 0.006}}, 0},
	{"96f33ea2-68e0-5f55-9501-0be6f9fa9c98", "Tables", "Storage", "Tables", "Azure Stack Hub", "1 GB/Month", [][2]float64{{0, 0.018}}, 0},
	{"dc7b6603-f55e-522a-a6ed-ea8470a5efdc", "Queues", "Storage", "Queues", "Azure Stack Hub", "1 GB/Month", [][2]float64{{0, 0.018}}, 0},
	{"3f3f0000-1111-4000-8000-00000000a001", "Hot LRS Data Stored", "Storage", "Blob Storage", "US West", "1 GB/Month", [][2]float64{{0, 0.0208}, {51200, 0.02}}, 0},
}

// SamplePriceListSheet builds a small sample .xlsx price list in layout
// (LayoutLegacy or LayoutAzurePlan), with real number and date cells.
func SamplePriceListSheet(layout string) ([]byte, error) {
	effective := time.Date(2019, 12, 3, 0, 0, 0, 0, time.UTC)
	f := excelize.NewFile()
	defer f.Close()
	var sheet string
	var header []any
	var rows [][]any
	switch layout {
	case LayoutLegacy:
		sheet = "Azure in Global CSP price list"
		header = []any{"Meter Id", "Meter Name", "Meter Category", "Meter Sub-Category", "Meter Region", "Unit", "Meter Rates", "Included Quantity", "Currency", "Effective Date"}
		for _, m := range sampleMeters {
			rates := ""
			for i, t := range m.tiers {
				if i > 0 {
					rates += ";"
				}
				rates += strconv.FormatFloat(t[0], 'f', -1, 64) + ":" + strconv.FormatFloat(t[1], 'f', -1, 64)
			}
			rows = append(rows, []any{m.id, m.name, m.category, m.sub, m.region, m.unit, rates, m.included, "USD", effective})
		}
	case LayoutAzurePlan:
		sheet = "Azure plan price list"
		header = []any{"EffectiveStartDate", "EffectiveEndDate", "ProductId", "SkuId", "AvailabilityId", "ProductTitle", "SkuTitle", "Publisher", "SkuDescription",
			"UnitOfMeasure", "TierMinimumUnits", "PricingCurrency", "UnitPrice", "MeterId", "MeterName", "MeterType", "MeterCategory", "MeterSubCategory", "MeterRegion", "Tags"}
		for i, m := range sampleMeters {
			for _, t := range m.tiers {
				rows = append(rows, []any{effective, time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), fmt.Sprintf("DZH318Z0%04d", i), "0001", fmt.Sprintf("DZH318Z0%04d0001", i),
					m.category + " " + m.sub, m.name, "Microsoft", m.category + " / " + m.sub + " / " + m.name, m.unit, t[0], "USD", t[1],
					m.id, m.name, "1 " + m.unit, m.category, m.sub, m.region, "Consumption"})
			}
		}
	default:
		return nil, fmt.Errorf("unknown price-list layout %q: want %s or %s", layout, LayoutLegacy, LayoutAzurePlan)
	}
	if err := f.SetSheetName("Sheet1", sheet); err != nil {
		return nil, err
	}
	iso := "yyyy-mm-dd" // unambiguous when the sheet is saved as CSV
	date, err := f.NewStyle(&excelize.Style{CustomNumFmt: &iso})
	if err != nil {
		return nil, err
	}
	if err := f.SetSheetRow(sheet, "A1", &header); err != nil {
		return nil, err
	}
	for i, r := range rows {
		cell, _ := excelize.CoordinatesToCellName(1, i+2)
		if err := f.SetSheetRow(sheet, cell, &r); err != nil {
			return nil, err
		}
		for c, v := range r {
			if _, ok := v.(time.Time); ok {
				name, _ := excelize.CoordinatesToCellName(c+1, i+2)
				if err := f.SetCellStyle(sheet, name, name, date); err != nil {
					return nil, err
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
