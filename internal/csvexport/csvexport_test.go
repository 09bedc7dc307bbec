package csvexport

import (
	"bytes"
	"strings"
	"testing"
)

func TestCell(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                               "",
		"Contoso":                        "Contoso",
		"=HYPERLINK(\"http://x\",\"a\")": "'=HYPERLINK(\"http://x\",\"a\")",
		"+1+2":                           "'+1+2",
		"-2+3":                           "'-2+3",
		"@SUM(A1)":                       "'@SUM(A1)",
		"\t=1":                           "'\t=1",
		"\r=1":                           "'\r=1",
		"-12.50":                         "-12.50",
		"0.006":                          "0.006",
		"-":                              "'-",
		"1e5":                            "1e5",
		"{\"a\":1}":                      "{\"a\":1}",
		"/subscriptions/x":               "/subscriptions/x",
	} {
		if got := Cell(in); got != want {
			t.Errorf("Cell(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriter(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	w := NewWriter(&b)
	_ = w.Write([]string{"=cmd|' /C calc'!A0", "-3.25", "Adatum"})
	w.Flush()
	if got, want := b.String(), "'=cmd|' /C calc'!A0,-3.25,Adatum\n"; got != want || w.Error() != nil {
		t.Fatalf("got %q, want %q (%v)", got, want, w.Error())
	}
}

// FuzzCell: whatever a name holds, the cell a spreadsheet sees never
// starts a formula, and plain numbers come through unchanged.
func FuzzCell(f *testing.F) {
	for _, s := range []string{"=1+1", "-3.5", "@x", "+", "\t=", "Adatum", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Cell(s)
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) && !plainNumber(c) {
			t.Fatalf("Cell(%q) = %q starts a formula", s, c)
		}
		if s != "" && plainNumber(s) && c != s {
			t.Fatalf("the number %q became %q", s, c)
		}
	})
}
