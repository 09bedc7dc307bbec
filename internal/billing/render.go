package billing

import (
	"html/template"
	"io"
	"strconv"
	"time"

	"github.com/stackbill/stackbill/internal/csvexport"
)

// WriteInvoiceCSV writes an invoice's lines as CSV, one row per line, with
// the partner and reseller columns a reconciliation expects.
func WriteInvoiceCSV(w io.Writer, inv Invoice) error {
	cw := csvexport.NewWriter(w)
	_ = cw.Write([]string{"InvoiceNumber", "Status", "PartnerId", "PartnerName", "LineNo", "ChargeType", "ResellerId", "ResellerMpnId", "CustomerId",
		"CustomerName", "SubscriptionId", "Registration", "CloudId", "UsagePeriod", "ChargeStartDate", "ChargeEndDate", "MeterId", "MeterName",
		"MeterCategory", "MeterSubCategory", "UnitOfMeasure", "PriceListId", "Tier", "Quantity", "UnitPrice", "Amount", "Currency"})
	minor, _ := MinorUnits(inv.Currency)
	for _, sec := range inv.Sections {
		for _, l := range sec.Lines {
			_ = cw.Write([]string{inv.Number, inv.Status, inv.PartnerID, inv.PartnerName, strconv.Itoa(l.No), l.Kind, l.ResellerID, l.ResellerMpnID,
				l.CustomerTenantID, l.CustomerName, l.SubscriptionID, l.Registration, l.CloudID, l.UsagePeriod, l.ChargeStart.Format(time.RFC3339),
				l.ChargeEnd.Format(time.RFC3339), l.MeterID, l.MeterName, l.MeterCategory, l.MeterSubCategory, l.Unit, strconv.FormatInt(l.PriceListID, 10),
				l.Tier, l.Quantity.String(), l.UnitPrice.String(), l.Amount.StringFixed(minor), l.Currency})
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteStatementsCSV writes statements as CSV, one row per line, with each
// statement's owner and account on every row.
func WriteStatementsCSV(w io.Writer, sts []Statement) error {
	cw := csvexport.NewWriter(w)
	_ = cw.Write([]string{"Owner", "OwnerName", "Account", "AccountName", "Period", "SubscriptionId", "MeterId", "MeterName", "LocalOnly", "UnitOfMeasure",
		"Quantity", "Cost", "UnitPrice", "Amount", "Margin", "Basis", "Currency"})
	for _, st := range sts {
		minor, _ := MinorUnits(st.Currency)
		for _, l := range st.Lines {
			price := ""
			if l.UnitPrice != nil {
				price = l.UnitPrice.String()
			}
			_ = cw.Write([]string{st.Owner, st.OwnerName, st.Account, st.AccountName, st.Period, l.SubscriptionID, l.MeterID, l.MeterName,
				strconv.FormatBool(l.LocalOnly), l.Unit, l.Quantity.String(), l.Cost.StringFixed(minor), price, l.Amount.StringFixed(minor),
				l.Margin.StringFixed(minor), l.Basis, st.Currency})
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteInvoiceHTML writes a printable invoice document.
func WriteInvoiceHTML(w io.Writer, inv Invoice) error {
	minor, _ := MinorUnits(inv.Currency)
	t := template.Must(template.New("invoice").Funcs(template.FuncMap{
		"money": func(q interface{ StringFixed(int32) string }) string { return GroupThousands(q.StringFixed(minor)) },
		"date":  func(t time.Time) string { return t.Format("2006-01-02") },
	}).Parse(invoiceHTML))
	return t.Execute(w, inv)
}

const invoiceHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice {{.Number}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#111}
table{border-collapse:collapse;width:100%;font-size:.85rem;margin-bottom:1.5rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.status{display:inline-block;padding:.1rem .5rem;border:1px solid #999;border-radius:.3rem}
@media print{.status{border-color:#000}}
</style></head><body>
<h1>Invoice {{.Number}} <span class="status">{{.Status}}</span></h1>
<p><strong>Bill to:</strong> {{.PartnerName}} ({{.PartnerID}}){{if .MpnID}}, MPN {{.MpnID}}{{end}}<br>
<strong>Period:</strong> {{.Period}} ({{date .PeriodStart}} to {{date .PeriodEnd}}, UTC)<br>
{{if .FinalizedAt}}<strong>Finalized:</strong> {{.FinalizedAt.Format "2006-01-02 15:04 UTC"}}{{else}}<strong>Draft until:</strong> {{.DraftUntil.Format "2006-01-02 15:04 UTC"}}{{end}}<br>
<strong>Currency:</strong> {{.Currency}}. Rounding: {{.Rounding}}.</p>
<p class="rules"><strong>Tiers:</strong> {{.TierRule}}.<br><strong>Late usage:</strong> {{.LateUsageRule}}</p>
{{range .Sections}}
<h2>{{if .ResellerID}}Reseller {{.ResellerName}} ({{.ResellerID}}{{if .ResellerMpnID}}, MPN {{.ResellerMpnID}}{{end}}){{else}}Direct{{end}}</h2>
<table><thead><tr><th>#</th><th>Type</th><th>Customer</th><th>Subscription</th><th>Registration</th><th>Usage</th><th>Meter</th><th>Tier</th>
<th class="n">Quantity</th><th>Unit</th><th class="n">Unit price</th><th class="n">Amount</th></tr></thead><tbody>
{{range .Customers}}{{range .Lines}}<tr><td>{{.No}}</td><td>{{.Kind}}</td><td>{{.CustomerLabel}}</td><td>{{.SubscriptionID}}</td>
<td>{{.Registration}}</td><td>{{date .ChargeStart}} to {{date .ChargeEnd}}</td><td>{{.MeterLabel}}</td><td>{{.TierLabel}}</td>
<td class="n">{{.Quantity}}</td><td>{{.Unit}}</td><td class="n">{{.UnitPrice}}</td><td class="n">{{money .Amount}}</td></tr>
{{end}}<tr class="subtotal"><td colspan="11">{{.Label}}: subtotal</td><td class="n">{{money .Subtotal}}</td></tr>
{{end}}<tr><th colspan="11">Subtotal</th><td class="n"><strong>{{money .Subtotal}}</strong></td></tr></tbody></table>
{{end}}
<p><strong>Total: {{money .Total}} {{.Currency}}</strong></p>
{{if .CreditNotes}}<h2>Credit notes</h2><table><thead><tr><th>Number</th><th>Date</th><th>By</th><th>Reason</th><th class="n">Amount</th></tr></thead><tbody>
{{range .CreditNotes}}<tr><td>{{.Number}}</td><td>{{date .CreatedAt}}</td><td>{{.CreatedBy}}</td><td>{{.Reason}}</td><td class="n">-{{money .Total}}</td></tr>{{end}}
</tbody></table>
<p><strong>Balance: {{money .Balance}} {{.Currency}}</strong></p>{{end}}
</body></html>
`
