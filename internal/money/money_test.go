package money

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestQuantityJSONKeepsEveryDigit(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`12345678901234567890.123456789012345678`, `"0.1"`, `"1e-12"`, `7`} {
		var q Quantity
		if err := json.Unmarshal([]byte(in), &q); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		out, _ := json.Marshal(q)
		var back Quantity
		if err := json.Unmarshal(out, &back); err != nil || !back.Equal(q) {
			t.Fatalf("%s -> %s -> %v", in, out, back)
		}
	}
	var q Quantity
	for _, bad := range []string{`"abc"`, `null`, `true`, `""`} {
		if err := json.Unmarshal([]byte(bad), &q); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestMulFracPartsSumExactly(t *testing.T) {
	t.Parallel()
	// 10 split over 3 equal parts: two rounded parts plus the remainder.
	total := MustQuantity("10")
	a := total.MulFrac(1, 3, 12)
	b := total.MulFrac(1, 3, 12)
	c := total.Sub(a).Sub(b)
	if !a.Add(b).Add(c).Equal(total) || a.String() != "3.333333333333" {
		t.Fatalf("parts %s %s %s", a, b, c)
	}
	if MustQuantity("0.1").Add(MustQuantity("0.2")).String() != "0.3" {
		t.Fatal("0.1 + 0.2 != 0.3")
	}
}

func TestSumIsExact(t *testing.T) {
	vals := []string{"1", "0.000000001", "2.5", "-0.25", "1e3", "0.0000000001", "3.1000000000", "12345678901234567890.123", "9223372036", "9223372036", "9223372036"}
	var s Sum
	want := Zero
	for _, v := range vals {
		if err := s.AddText([]byte(v)); err != nil {
			t.Fatal(err)
		}
		want = want.Add(MustQuantity(v))
	}
	if got := s.Quantity(); !got.Equal(want) {
		t.Fatalf("sum %s, want %s", got, want)
	}
	if err := s.AddText([]byte("x")); err == nil {
		t.Fatal("garbage accepted")
	}
}

func FuzzSum(f *testing.F) {
	f.Add("1.5", "0.000000001")
	f.Fuzz(func(t *testing.T, a, b string) {
		qa, ea := ParseQuantity(a)
		qb, eb := ParseQuantity(b)
		if ea != nil || eb != nil || strings.TrimSpace(a) != a || strings.TrimSpace(b) != b {
			return
		}
		var s Sum
		if s.AddText([]byte(a)) != nil || s.AddText([]byte(b)) != nil {
			t.Fatalf("parse mismatch %q %q", a, b)
		}
		if !s.Quantity().Equal(qa.Add(qb)) {
			t.Fatalf("%q + %q = %s, want %s", a, b, s.Quantity(), qa.Add(qb))
		}
	})
}

// TestQuantityTextAgreesWithParse checks the fast path against ParseQuantity:
// the same inputs are refused, and the text parses to the same quantity with
// the same sign.
func TestQuantityTextAgreesWithParse(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"0", "-0", "0.000", "12", "-3", "0.25", "-0.0001", "1.50", "007", "10", "100.05", "0.5", "00.5", "0.0625", "12345678901234567890.123456789",
		"1e3", "+2", "1.", ".5", "", "-", "1.2.3", "one", " 1", "1 ", "--1", "1-", "0x10", "1e", strings.Repeat("9", 41), strings.Repeat("9", 40),
		"1e39", "1e40", "1e-40", "1e-41", "0e999999999", "1e999999999", "1e-999999999", "-1E+2147483647"} {
		checkQuantityText(t, s)
	}
}

// TestHugeExponentsAreRefused: a valid decimal with an enormous exponent is
// refused when parsed, before anything expands it (printing "1e999999999"
// would run for minutes).
func TestHugeExponentsAreRefused(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"1e999999999", "1e-999999999", "0e999999999", "1e40", "1e-41", "0." + strings.Repeat("0", 40) + "1"} {
		if q, err := ParseQuantity(s); err == nil {
			t.Errorf("%q parsed as a quantity with exponent %d", s, q.d.Exponent())
		}
	}
	for _, s := range []string{"1e39", "1e-40", strings.Repeat("9", 40) + "." + strings.Repeat("9", 40)} {
		if q, err := ParseQuantity(s); err != nil || len(q.String()) > 81 {
			t.Errorf("%q: %v", s, err)
		}
	}
}

func FuzzQuantityText(f *testing.F) {
	for _, s := range []string{"0", "-0.5", "1e3", "12.", "+1"} {
		f.Add(s)
	}
	f.Fuzz(checkQuantityText)
}

func checkQuantityText(t *testing.T, s string) {
	text, sign, err := QuantityText(s)
	want, werr := ParseQuantity(s)
	if (err != nil) != (werr != nil) {
		t.Fatalf("%q: QuantityText error %v, ParseQuantity error %v", s, err, werr)
	}
	if err != nil {
		return
	}
	got, perr := ParseQuantity(text)
	if perr != nil || !got.Equal(want) || sign != want.Sign() {
		t.Fatalf("%q: text %q (sign %d, %v), want %s (sign %d)", s, text, sign, perr, want, want.Sign())
	}
	// ParseCanonical's text is exactly String's, however s was written.
	q, canon, cerr := ParseCanonical(s)
	if cerr != nil || !q.Equal(want) || canon != want.String() {
		t.Fatalf("%q: ParseCanonical gave %q (%v), want %q", s, canon, cerr, want.String())
	}
	if u, ok := TextUnits(canon); ok {
		if wu, wok := want.Units(); !wok || wu != u {
			t.Fatalf("%q: TextUnits %d, Units %d (%v)", s, u, wu, wok)
		}
	}
}
