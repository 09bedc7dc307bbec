// Package money owns stackbill's exact decimal numbers (usage quantities,
// prices, amounts) and the bounds every stage of the pipeline holds them to.
// Nothing in stackbill uses float64 for either.
//
// One decimal library (shopspring/decimal, arbitrary precision) sits behind
// these types, so it can be swapped without touching callers. Quantities
// travel as JSON numbers (Azure's usage APIs and SDKs expect a number) but are
// parsed from either a number or a string without going through float64, and
// are stored as canonical decimal TEXT.
//
// # Bounds
//
// Input is parsed strictly (ParseQuantity: at most 40 digits either side of
// the point) and then held to a bound per kind of value (MaxEventQuantity,
// MaxRecordQuantity, MaxUnitPrice, MaxMarkupPercent), each far beyond what a
// legitimate stack or price list reaches. Sums of bounded values are stored
// and read back with a much wider limit (storedDigits), so that reading a
// value stackbill accepted can never fail: a stored sum of a month's bounded
// records times a bounded price stays far inside it.
package money

import (
	"bytes"
	"database/sql/driver"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// Quantity is an exact decimal amount of some unit.
type Quantity struct{ d decimal.Decimal }

// Zero is the zero quantity.
var Zero = Quantity{}

// ParseQuantity parses a decimal string such as "12.5", "-0.001" or "1e3".
// Input is held to maxDigits either side of the point.
func ParseQuantity(s string) (Quantity, error) { return parseBounded(s, maxDigits) }

// ParseStored parses a decimal text that stackbill stored: a bounded input
// or a sum or product of them. Its limit is wider than ParseQuantity's, so a
// value that was accepted always reads back.
func ParseStored(s string) (Quantity, error) { return parseBounded(s, storedDigits) }

// IntegerDigits counts the digits before the point of a plain decimal text
// (as QuantityText and String return it), without leading zeros: a cheap
// first test against a bound, so that only rare large values are parsed.
func IntegerDigits(s string) int {
	n, lead := 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' || c == '+':
		case c == '.':
			return n
		case c >= '0' && c <= '9':
			if lead && c == '0' {
				continue
			}
			lead = false
			n++
		default:
			return n
		}
	}
	return n
}

// Above reports whether q is greater than bound.
func (q Quantity) Above(bound Quantity) bool { return q.d.Cmp(bound.d) > 0 }

// maxDigits bounds a quantity's integer digits and its decimal places. Usage
// and prices need far fewer; the plain-decimal fast path of QuantityText
// allows 40 digits in all, which this admits.
const maxDigits = 40

// storedDigits bounds what is read back from the store. Stored values are
// inputs (at most maxDigits either side) or sums and products of bounded
// inputs; 120 digits either side holds any of them with room to spare, while
// still refusing a corrupt text such as "1e999999999" before it expands.
const storedDigits = 120

func parseBounded(s string, limit int64) (Quantity, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Quantity{}, fmt.Errorf("empty quantity")
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Quantity{}, fmt.Errorf("%q is not a decimal number", s)
	}
	// An exponent is stored, not expanded, so "1e999999999" parses in
	// nanoseconds and would take minutes and a gigabyte to print or add.
	// Bound the digits on both sides of the point before anything expands it.
	if exp := int64(d.Exponent()); exp < -limit || (!d.IsZero() && int64(d.NumDigits())+exp > limit) || (d.IsZero() && exp > limit) {
		return Quantity{}, fmt.Errorf("%q has more than %d digits before or after the decimal point", s, limit)
	}
	return Quantity{d}, nil
}

// The bounds of each kind of value, chosen so that every later stage holds
// the largest legal one (docs/security.md, "Bounded arithmetic").
var (
	// MaxEventQuantity bounds one usage event's quantity (a level meter's
	// level): a million times the largest legitimate hourly figure of any
	// Azure Stack meter (a petabyte of storage is 10^6 GB).
	MaxEventQuantity = FromInt(1_000_000_000_000)
	// MaxRecordQuantity bounds one hourly record, the sum of the events of
	// one subscription, meter, resource and hour, and so every record a stack
	// forwards: a thousand maximal events. A legitimate stack stays more than
	// a billion times below it.
	MaxRecordQuantity = FromInt(1_000_000_000_000_000)
	// MaxUnitPrice bounds any unit price, in any currency (JPY included).
	MaxUnitPrice = FromInt(1_000_000_000)
	// MaxMarkupPercent bounds a price book's markup over cost.
	MaxMarkupPercent = FromInt(10_000)
)

// MustQuantity parses s and panics on error; for constants and tests.
func MustQuantity(s string) Quantity {
	q, err := ParseQuantity(s)
	if err != nil {
		panic(err)
	}
	return q
}

// FromInt makes a whole quantity.
func FromInt(n int64) Quantity { return Quantity{decimal.NewFromInt(n)} }

// Add returns q + o.
func (q Quantity) Add(o Quantity) Quantity { return Quantity{q.d.Add(o.d)} }

// Sub returns q - o.
func (q Quantity) Sub(o Quantity) Quantity { return Quantity{q.d.Sub(o.d)} }

// Mul returns q × o exactly.
func (q Quantity) Mul(o Quantity) Quantity { return Quantity{q.d.Mul(o.d)} }

// MulFrac returns q × num / den rounded half-even to places decimal places.
// Splitting a quantity across hours uses it; callers keep the parts summing
// exactly to the whole by giving the remainder to the last part.
func (q Quantity) MulFrac(num, den int64, places int32) Quantity {
	return Quantity{q.d.Mul(decimal.NewFromInt(num)).DivRound(decimal.NewFromInt(den), places+4).RoundBank(places)}
}

// Sign is -1, 0 or 1.
func (q Quantity) Sign() int { return q.d.Sign() }

// Cmp compares q and o.
func (q Quantity) Cmp(o Quantity) int { return q.d.Cmp(o.d) }

// Equal reports numeric equality (1.0 equals 1).
func (q Quantity) Equal(o Quantity) bool { return q.d.Equal(o.d) }

// String is the canonical decimal text, without exponent or trailing zeros.
func (q Quantity) String() string { return q.d.String() }

// MarshalJSON writes a JSON number with every digit.
func (q Quantity) MarshalJSON() ([]byte, error) { return []byte(q.d.String()), nil }

// UnmarshalJSON accepts a JSON number or a string holding one, without
// passing through float64.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return fmt.Errorf("quantity is null")
	}
	s := string(b)
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		s = string(b[1 : len(b)-1])
	}
	p, err := ParseQuantity(s)
	if err != nil {
		return err
	}
	*q = p
	return nil
}

// Value stores a quantity as decimal TEXT in either engine.
func (q Quantity) Value() (driver.Value, error) { return q.d.String(), nil }

// Scan reads decimal TEXT (or any value the driver returns) exactly.
func (q *Quantity) Scan(src any) error {
	switch v := src.(type) {
	case string:
		return q.set(v)
	case []byte:
		return q.set(string(v))
	case int64:
		*q = FromInt(v)
		return nil
	case nil:
		*q = Zero
		return nil
	}
	return fmt.Errorf("money: cannot scan %T into Quantity", src)
}

func (q *Quantity) set(s string) error {
	p, err := ParseStored(s)
	if err != nil {
		return err
	}
	*q = p
	return nil
}

// Float64 is for display and for clients whose type is float64 (the Azure
// SDK's quantity). Never use it for arithmetic.
func (q Quantity) Float64() float64 { f, _ := q.d.Float64(); return f }

// Neg returns -q.
func (q Quantity) Neg() Quantity { return Quantity{q.d.Neg()} }

// IsZero reports q == 0.
func (q Quantity) IsZero() bool { return q.d.IsZero() }

// Round rounds to places decimal places, half away from zero: the commercial
// rounding invoices use.
func (q Quantity) Round(places int32) Quantity { return Quantity{q.d.Round(places)} }

// Div returns q / o rounded half away from zero to places decimal places.
// Division is the one inexact operation, so every caller names its precision.
func (q Quantity) Div(o Quantity, places int32) Quantity { return Quantity{q.d.DivRound(o.d, places)} }

// StringFixed formats with exactly places decimal places (for money columns).
func (q Quantity) StringFixed(places int32) string { return q.d.StringFixed(places) }

// Sum adds decimal texts as read from the store without building a decimal
// per value: values with at most nine fractional digits accumulate in a
// scaled int64, anything else (or an overflow) falls back to exact decimal
// arithmetic. Rating sums millions of stored quantities, and this keeps that
// allocation-free while staying exact.
type Sum struct {
	units  int64 // in 1e-9
	big    decimal.Decimal
	hasBig bool
}

const sumScale = 9

// AddText adds one decimal text.
func (s *Sum) AddText(b []byte) error {
	if u, ok := parseScaled(b); ok {
		if n := s.units + u; (u > 0 && n < s.units) || (u < 0 && n > s.units) {
			s.flush()
			s.units = u
		} else {
			s.units = n
		}
		return nil
	}
	d, err := decimal.NewFromString(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a decimal number", b)
	}
	s.big, s.hasBig = s.big.Add(d), true
	return nil
}

// Add adds a quantity.
func (s *Sum) Add(q Quantity) { s.big, s.hasBig = s.big.Add(q.d), true }

// AddSum adds another sum.
func (s *Sum) AddSum(o Sum) {
	s.Add(o.Quantity())
}

func (s *Sum) flush() {
	if s.units != 0 {
		s.big, s.hasBig = s.big.Add(decimal.New(s.units, -sumScale)), true
		s.units = 0
	}
}

// Quantity is the exact total.
func (s Sum) Quantity() Quantity {
	d := decimal.New(s.units, -sumScale)
	if s.hasBig {
		d = d.Add(s.big)
	}
	return Quantity{d}
}

// UnitScale is the number of fractional digits of Units: quantities are
// stored beside their exact text as integers of 1e-9 so that the database
// can sum them (SQLite has no exact decimal type), and rating reads one sum
// per subscription, meter and day instead of every record.
const UnitScale = sumScale

// Units is q in units of 1e-9 when that is exact and fits an int64 with
// headroom; ok is false otherwise and the caller keeps the exact text path.
func (q Quantity) Units() (units int64, ok bool) {
	return parseScaled([]byte(q.d.String()))
}

// TextUnits is Units of a quantity given by its text.
func TextUnits(text string) (units int64, ok bool) { return parseScaled([]byte(text)) }

// ParseCanonical parses s like ParseQuantity and also returns the quantity's
// canonical text (String). When s is already canonical (digits without
// leading zeros, an optional fraction without trailing zeros, no sign or
// exponent), that is s itself and costs no formatting: a bridge batch
// carries tens of thousands of quantities that the stack wrote canonically.
func ParseCanonical(s string) (Quantity, string, error) {
	q, err := ParseQuantity(s)
	if err != nil {
		return q, "", err
	}
	if isCanonical(s) {
		return q, s, nil
	}
	return q, q.String(), nil
}

func isCanonical(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || (s[0] == '0' && i > 1) {
		return false
	}
	if i == len(s) {
		return true
	}
	if s[i] != '.' || i == len(s)-1 || s[len(s)-1] == '0' {
		return false
	}
	for _, c := range []byte(s[i+1:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// FromUnits reads a sum of Units as a database returns it, as integer text
// (SQLite) or numeric text (PostgreSQL's sum of bigint, which never
// overflows), back into an exact quantity.
func FromUnits(b []byte) (Quantity, error) {
	d, err := decimal.NewFromString(string(b))
	if err != nil || !d.Equal(d.Truncate(0)) {
		return Quantity{}, fmt.Errorf("%q is not a whole number of units", b)
	}
	return Quantity{d.Shift(-sumScale)}, nil
}

// parseScaled parses plain decimal text ("12", "-0.5", "3.000000001") into
// units of 1e-9, refusing exponents, more than nine significant fractional
// digits and anything that would overflow.
func parseScaled(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 30 {
		return 0, false
	}
	neg := false
	if b[0] == '-' || b[0] == '+' {
		neg = b[0] == '-'
		b = b[1:]
	}
	var n int64
	digits, frac, seenDot := 0, 0, false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if seenDot {
				if frac == sumScale {
					if c != '0' {
						return 0, false
					}
					continue
				}
				frac++
			}
			if n > (1<<62)/10 {
				return 0, false
			}
			n = n*10 + int64(c-'0')
			digits++
		case c == '.' && !seenDot:
			seenDot = true
		default:
			return 0, false
		}
	}
	if digits == 0 {
		return 0, false
	}
	for ; frac < sumScale; frac++ {
		if n > (1<<62)/10 {
			return 0, false
		}
		n *= 10
	}
	if neg {
		n = -n
	}
	return n, true
}

// QuantityText checks that s is a decimal number that ParseQuantity accepts
// and returns text that parses to the same quantity, and its sign. Intake
// calls it once per event and keeps the text, so the common plain form
// ("12", "0.25", "-3") is recognised without building a big integer and
// returned as it is; anything else (exponents, a leading plus) goes through
// ParseQuantity and comes back canonical.
func QuantityText(s string) (text string, sign int, err error) {
	if plain, nonZero := plainDecimal(s); plain {
		switch {
		case !nonZero:
			return s, 0, nil
		case s[0] == '-':
			return s, -1, nil
		}
		return s, 1, nil
	}
	q, err := ParseQuantity(s)
	if err != nil {
		return "", 0, err
	}
	return q.String(), q.Sign(), nil
}

// plainDecimal reports whether s is -?digits(.digits)? with at most 40
// digits, and whether any digit is non-zero.
func plainDecimal(s string) (plain, nonZero bool) {
	i := 0
	if len(s) > 0 && s[0] == '-' {
		i++
	}
	digits, point := 0, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			nonZero = nonZero || c != '0'
		case c == '.' && !point && digits > 0 && i < len(s)-1:
			point = true
		default:
			return false, false
		}
	}
	return digits > 0 && digits <= 40, nonZero
}
