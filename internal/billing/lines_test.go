package billing

import (
	"testing"

	"github.com/stackbill/stackbill/internal/money"
)

func TestGroupThousands(t *testing.T) {
	for in, want := range map[string]string{
		"0": "0", "12.50": "12.50", "999.99": "999.99", "1000": "1,000", "1845.76": "1,845.76", "-1234567.5": "-1,234,567.5",
		"50671": "50,671", "123456789012.000001": "123,456,789,012.000001",
	} {
		if got := GroupThousands(in); got != want {
			t.Errorf("GroupThousands(%q) = %q, want %q", in, got, want)
		}
	}
	if got := FormatAmountGrouped(money.MustQuantity("50671.4"), "JPY"); got != "50,671" {
		t.Errorf("JPY: %q", got)
	}
}

func TestLineLabels(t *testing.T) {
	base := Line{MeterCategory: "Azure Stack Hub", MeterSubCategory: "Base VM", MeterName: "1 Core", UnitPrice: money.MustQuantity("0.008")}
	if got := base.MeterLabel(); got != "Azure Stack Hub / Base VM / 1 Core" {
		t.Errorf("MeterLabel = %q", got)
	}
	if got := base.CustomerLabel(); got != "(partner's own)" {
		t.Errorf("CustomerLabel = %q", got)
	}
	cases := []struct {
		tier, price, amount, label string
		why                        bool
	}{
		{"included", "0", "0", "included quantity", true},
		{"0", "0", "0", "base price", true},
		{"0", "0.008", "0", "base price", true},
		{"0", "0.008", "1.20", "base price", false},
		{"1000", "0.006", "3.00", "from 1000", false},
	}
	for _, c := range cases {
		l := base
		l.Tier, l.UnitPrice, l.Amount = c.tier, money.MustQuantity(c.price), money.MustQuantity(c.amount)
		if got := l.TierLabel(); got != c.label {
			t.Errorf("tier %q: TierLabel %q, want %q", c.tier, got, c.label)
		}
		if (l.ZeroReason() != "") != c.why {
			t.Errorf("tier %q price %s amount %s: ZeroReason %q", c.tier, c.price, c.amount, l.ZeroReason())
		}
	}
	inv := Invoice{Sections: []Section{{Lines: []Line{base}}}}
	if inv.Tiered() {
		t.Error("an invoice of base prices is Tiered")
	}
	inv.Sections[0].Lines[0].Tier = "included"
	if !inv.Tiered() {
		t.Error("an invoice with an included quantity is not Tiered")
	}
}
