package billing

import (
	"strings"

	"github.com/stackbill/stackbill/internal/money"
)

// The labels below are how every human view of an invoice (the portal's
// page, the HTML download) names a line, so that the views read alike.

// MeterLabel names the line's meter the way Partner Center's price list
// does: category, subcategory and name ("Azure Stack Hub / Base VM /
// 1 Core"), so meters with the same name ("1 Core") are told apart.
func (l Line) MeterLabel() string {
	var parts []string
	for _, p := range []string{l.MeterCategory, l.MeterSubCategory, l.MeterName} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " / ")
}

// CustomerLabel is the line's customer, or the partner's own usage (its
// default subscription, where unmapped tenants' usage is charged).
func (l Line) CustomerLabel() string {
	if l.CustomerName != "" {
		return l.CustomerName
	}
	return "(partner's own)"
}

// TierLabel says which part of the meter's price the line is: its included
// quantity, the base price, or the tier from a threshold on.
func (l Line) TierLabel() string {
	switch l.Tier {
	case "included":
		return "included quantity"
	case "", "0":
		return "base price"
	}
	return "from " + l.Tier
}

// ZeroReason explains a line whose amount is zero, so that a partner does
// not take it for an error; "" when the amount is not zero.
func (l Line) ZeroReason() string {
	switch {
	case !l.Amount.IsZero():
		return ""
	case l.Tier == "included":
		return "within the meter's included quantity, which is free"
	case l.UnitPrice.IsZero():
		return "the meter's price is 0"
	}
	return "quantity × unit price rounds to less than the currency's smallest unit"
}

// Tiered says whether any line is priced past a meter's base price (an
// included quantity or a tier): views show the tier only then.
func (inv Invoice) Tiered() bool {
	for _, s := range inv.Sections {
		for _, l := range s.Lines {
			if l.Tier != "" && l.Tier != "0" {
				return true
			}
		}
	}
	return false
}

// FormatAmountGrouped is FormatAmount with the integer part grouped in
// thousands ("1,845.76"), for people; machine-readable exports use
// FormatAmount.
func FormatAmountGrouped(q money.Quantity, currency string) string {
	return GroupThousands(FormatAmount(q, currency))
}

// GroupThousands puts a comma between each three digits of a decimal
// number's integer part.
func GroupThousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	whole, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, r := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := sign + b.String()
	if hasFrac {
		out += "." + frac
	}
	return out
}

// CustomerGroup is one customer's lines in a section, with their subtotal:
// how an invoice reads, reseller by reseller and customer by customer.
type CustomerGroup struct {
	Label    string
	Lines    []Line
	Subtotal money.Quantity
}

// Customers groups the section's lines by customer (the partner's own
// usage is a customer of its own), in the order the lines come.
func (s Section) Customers() []CustomerGroup {
	var out []CustomerGroup
	at := map[string]int{}
	for _, l := range s.Lines {
		i, ok := at[l.CustomerTenantID]
		if !ok {
			i = len(out)
			at[l.CustomerTenantID] = i
			out = append(out, CustomerGroup{Label: l.CustomerLabel(), Subtotal: money.Zero})
		}
		out[i].Lines = append(out[i].Lines, l)
		out[i].Subtotal = out[i].Subtotal.Add(l.Amount)
	}
	return out
}
