// Package csvexport owns the one rule that makes stackbill's CSV exports
// (invoices, reconciliation files, statements, usage) safe to open in a
// spreadsheet: a cell that a spreadsheet would run as a formula is written
// as text.
//
// OWASP's CSV-injection guidance: a cell that begins with =, +, -, @, a tab
// or a carriage return is a formula to Excel, LibreOffice and Google Sheets,
// and a customer or resource name such as "=HYPERLINK(…)" would run in a
// finance clerk's spreadsheet. Such a cell gets a leading apostrophe, which
// spreadsheets read as "this is text" and do not show. Plain numbers
// ("-12.50") are left alone, so amounts stay numbers.
package csvexport

import (
	"encoding/csv"
	"io"
)

// Writer is an encoding/csv writer whose cells are made safe.
type Writer struct {
	w   *csv.Writer
	buf []string
}

// NewWriter writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: csv.NewWriter(w)} }

// Write writes one record with every cell made safe.
func (w *Writer) Write(record []string) error {
	w.buf = w.buf[:0]
	for _, c := range record {
		w.buf = append(w.buf, Cell(c))
	}
	return w.w.Write(w.buf)
}

// Flush writes what is buffered.
func (w *Writer) Flush() { w.w.Flush() }

// Error reports an error of an earlier Write or Flush.
func (w *Writer) Error() error { return w.w.Error() }

// Cell is s as a spreadsheet will take it as text: unchanged unless it
// would start a formula.
func Cell(s string) string {
	if s == "" || plainNumber(s) {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// plainNumber reports -?digits(.digits)?: an amount or a quantity.
func plainNumber(s string) bool {
	i := 0
	if s[0] == '-' {
		i++
	}
	digits, point := 0, false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !point && digits > 0 && i < len(s)-1:
			point = true
		default:
			return false
		}
	}
	return digits > 0
}
