package billing

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"
)

// priceTable is a price list file's rows, whichever format it came in: CSV,
// or a spreadsheet as Partner Center offers it for download. where names a
// cell for a message, so an error points at what to fix.
type priceTable struct {
	header []string
	rows   []priceRow
	where  func(line, col int) string
	// sheet is set for a spreadsheet: its dates may be Excel serial
	// numbers.
	sheet bool
	err   error // a problem reading past the header (CSV syntax), at its line
	line  int
}

type priceRow struct {
	rec  []string
	line int
}

// xlsxMagic starts every .xlsx file (a ZIP archive).
var xlsxMagic = []byte("PK\x03\x04")

// IsSpreadsheet says whether data is an .xlsx file rather than CSV.
func IsSpreadsheet(data []byte) bool { return bytes.HasPrefix(data, xlsxMagic) }

// Bounds on what a spreadsheet may unpack to: a price list is a few
// megabytes; a ZIP bomb must be refused before it is inflated.
const (
	maxSheetBytes = 64 << 20
	maxSheetXML   = 32 << 20
	maxSheetRows  = 500_000
)

func readPriceTable(data []byte) (priceTable, error) {
	if IsSpreadsheet(data) {
		return readSheet(data)
	}
	return readCSV(data)
}

func readCSV(data []byte) (priceTable, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	t := priceTable{}
	header, err := r.Read()
	if err != nil {
		return t, invalidPriceList("The price list has no header row: %v.", err)
	}
	t.header = header
	t.where = func(line, col int) string {
		if col < 0 || col >= len(header) {
			return fmt.Sprintf("line %d", line)
		}
		return fmt.Sprintf("line %d, column %s", line, strings.TrimPrefix(strings.TrimSpace(header[col]), "\ufeff"))
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return t, nil
		}
		if err != nil {
			// FieldPos is only defined after a successful Read; a parse
			// error carries its own line.
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				t.line = pe.StartLine
			}
			t.err = err
			return t, nil
		}
		line, _ := r.FieldPos(0)
		t.rows = append(t.rows, priceRow{rec: rec, line: line})
	}
}

// readSheet reads the first worksheet whose first non-empty row names a
// meter ID column: the downloads put the price list on one sheet, and some
// put notes before it. Cells are read raw (not as formatted for display),
// so that a price is the number stored, not "0.01" for 0.008.
func readSheet(data []byte) (priceTable, error) {
	t := priceTable{sheet: true}
	f, err := excelize.OpenReader(bytes.NewReader(data), excelize.Options{UnzipSizeLimit: maxSheetBytes, UnzipXMLSizeLimit: maxSheetXML})
	if err != nil {
		return t, invalidPriceList("The file is not a readable .xlsx spreadsheet: %v.", err)
	}
	defer f.Close()
	var names []string
	for _, sheet := range f.GetSheetList() {
		names = append(names, sheet)
		rows, err := f.Rows(sheet)
		if err != nil {
			return t, invalidPriceList("Sheet %q cannot be read: %v.", sheet, err)
		}
		headerAt, n := 0, 0
		var table priceTable
		for rows.Next() {
			n++
			if n > maxSheetRows {
				rows.Close()
				return t, invalidPriceList("Sheet %q has more than %d rows; a price list has far fewer.", sheet, maxSheetRows)
			}
			rec, err := rows.Columns(excelize.Options{RawCellValue: true})
			if err != nil {
				rows.Close()
				return t, invalidPriceList("Sheet %q, row %d cannot be read: %v.", sheet, n, err)
			}
			for i, v := range rec {
				if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
					rows.Close()
					cell, _ := excelize.CoordinatesToCellName(i+1, n)
					return t, invalidPriceList("Sheet %q, cell %s holds text that is not valid UTF-8, or a NUL character.", sheet, cell)
				}
			}
			if headerAt == 0 {
				if blank(rec) {
					continue
				}
				if !namesMeterID(rec) {
					break // not a price list sheet
				}
				headerAt, table.header = n, rec
				continue
			}
			table.rows = append(table.rows, priceRow{rec: rec, line: n})
		}
		if err := rows.Close(); err != nil {
			return t, invalidPriceList("Sheet %q cannot be read: %v.", sheet, err)
		}
		if headerAt == 0 {
			continue
		}
		header, sheetName := table.header, sheet
		table.sheet = true
		table.where = func(line, col int) string {
			if col < 0 {
				return fmt.Sprintf("sheet %q, row %d", sheetName, line)
			}
			cell, _ := excelize.CoordinatesToCellName(col+1, line)
			name := ""
			if col < len(header) {
				name = " (" + strings.TrimSpace(header[col]) + ")"
			}
			return fmt.Sprintf("sheet %q, cell %s%s", sheetName, cell, name)
		}
		return table, nil
	}
	return t, invalidPriceList("No sheet of the spreadsheet (%s) starts with a header naming a meter ID column (MeterId, Meter ID or Id).", strings.Join(names, ", "))
}

func blank(rec []string) bool {
	for _, v := range rec {
		if strings.TrimSpace(v) != "" {
			return false
		}
	}
	return true
}

// namesMeterID says whether a row is a price list header.
func namesMeterID(rec []string) bool {
	for _, h := range rec {
		for _, a := range columnAliases()["meterid"] {
			if normHeader(h) == a {
				return true
			}
		}
	}
	return false
}

// sheetDate reads a spreadsheet date cell: an Excel serial number (days
// since 1899-12-30), or text.
func sheetDate(v string) (string, bool) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 1 || f > 2958465 { // 9999-12-31
		return v, false
	}
	t, err := excelize.ExcelDateToTime(f, false)
	if err != nil {
		return v, false
	}
	return t.Format("2006-01-02"), true
}

// sheetNumber writes a spreadsheet number cell as a plain decimal. A
// spreadsheet stores numbers as binary doubles, and writers may store them
// in exponent form ("8.0000000000000002E-3"); the shortest decimal that
// reads back as the same double is the number the partner typed (0.008).
// Text that is not such a number is returned as it is.
func sheetNumber(v string) string {
	if !strings.ContainsAny(v, "eE") {
		return v
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return v
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
