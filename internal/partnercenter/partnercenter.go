// Package partnercenter shapes stackbill's invoices and prices as Partner
// Center's REST API returns them, in its documented JSON field names, so
// that a CSP's billing tools written against Partner Center read
// stackbill's bills unchanged: invoices, their Azure billing line items
// (UsageBasedLineItem), and the CSP Azure rate card (AzureRateCard). It
// owns no data: it renders what billing returns, and every figure is the
// invoice's own, so Σ line items = the invoice = the reconciliation file.
package partnercenter

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/money"
)

// Link is a Partner Center resource link.
type Link struct {
	URI     string       `json:"uri"`
	Method  string       `json:"method"`
	Headers []LinkHeader `json:"headers"`
}

// LinkHeader is a header a client sends with a link: the continuation
// token of a seek.
type LinkHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Links are a resource's or a collection's links; Next only while a
// collection has more.
type Links struct {
	Self Link  `json:"self"`
	Next *Link `json:"next,omitempty"`
}

// Attributes names the resource's type.
type Attributes struct {
	ObjectType string `json:"objectType"`
}

func get(uri string) Link { return Link{URI: uri, Method: "GET", Headers: []LinkHeader{}} }

// Collection is a page of a resource collection.
type Collection[T any] struct {
	TotalCount int        `json:"totalCount"`
	Items      []T        `json:"items"`
	Links      Links      `json:"links"`
	Attributes Attributes `json:"attributes"`
}

// Page cuts items to [offset, offset+size) with Partner Center's links:
// self, and next while there is more. totalCount is the page's count, as in
// Partner Center's examples.
func Page[T any](items []T, base string, size, offset int) Collection[T] {
	if offset > len(items) {
		offset = len(items)
	}
	end := min(len(items), offset+size)
	c := Collection[T]{Items: items[offset:end], Attributes: Attributes{ObjectType: "Collection"}}
	if c.Items == nil {
		c.Items = []T{}
	}
	c.TotalCount = len(c.Items)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	c.Links.Self = get(base + sep + "size=" + strconv.Itoa(size) + "&offset=" + strconv.Itoa(offset))
	if end < len(items) {
		next := get(base + sep + "size=" + strconv.Itoa(size) + "&offset=" + strconv.Itoa(end))
		c.Links.Next = &next
	}
	return c
}

// InvoiceDetail points at one kind of an invoice's line items.
type InvoiceDetail struct {
	InvoiceLineItemType string     `json:"invoiceLineItemType"`
	BillingProvider     string     `json:"billingProvider"`
	Links               Links      `json:"links"`
	Attributes          Attributes `json:"attributes"`
}

// TaxReceipt is a tax receipt of an invoice (stackbill issues none).
type TaxReceipt struct {
	ID                        string `json:"id"`
	TaxReceiptPdfDownloadLink string `json:"taxReceiptPdfDownloadLink"`
}

// Invoice is Partner Center's Invoice resource.
type Invoice struct {
	ID                     string          `json:"id"`
	InvoiceDate            time.Time       `json:"invoiceDate"`
	BillingPeriodStartDate time.Time       `json:"billingPeriodStartDate"`
	BillingPeriodEndDate   time.Time       `json:"billingPeriodEndDate"`
	TotalCharges           money.Quantity  `json:"totalCharges"`
	PaidAmount             money.Quantity  `json:"paidAmount"`
	CurrencyCode           string          `json:"currencyCode"`
	CurrencySymbol         string          `json:"currencySymbol"`
	PdfDownloadLink        string          `json:"pdfDownloadLink"`
	TaxReceipts            []TaxReceipt    `json:"taxReceipts"`
	InvoiceDetails         []InvoiceDetail `json:"invoiceDetails"`
	DocumentType           string          `json:"documentType"`
	InvoiceType            string          `json:"invoiceType"`
	Links                  Links           `json:"links"`
	Attributes             Attributes      `json:"attributes"`
}

// symbols are the currency symbols Partner Center shows; others show their
// code.
var symbols = map[string]string{"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "AUD": "$", "CAD": "$", "NZD": "$", "CHF": "CHF", "INR": "₹", "BRL": "R$"}

// FromInvoice renders a finalized invoice. Its charges are what the invoice
// bills, credit notes aside (they are documents of their own); the PDF link
// is the invoice's printable HTML.
func FromInvoice(inv billing.Invoice) Invoice {
	sym := symbols[inv.Currency]
	if sym == "" {
		sym = inv.Currency
	}
	date := inv.PeriodEnd
	if inv.FinalizedAt != nil {
		date = *inv.FinalizedAt
	}
	self := "/invoices/" + inv.Number
	return Invoice{ID: inv.Number, InvoiceDate: date.UTC(), BillingPeriodStartDate: inv.PeriodStart.UTC(), BillingPeriodEndDate: inv.PeriodEnd.UTC(),
		TotalCharges: inv.Total, PaidAmount: money.Zero, CurrencyCode: inv.Currency, CurrencySymbol: sym,
		PdfDownloadLink: "/v1/billing/invoices/" + inv.Number + "?format=html", TaxReceipts: []TaxReceipt{},
		InvoiceDetails: []InvoiceDetail{
			{InvoiceLineItemType: "billing_line_items", BillingProvider: "azure", Links: Links{Self: get(self + "/lineitems/Azure/BillingLineItems")}, Attributes: Attributes{ObjectType: "InvoiceDetail"}},
		},
		DocumentType: "invoice", InvoiceType: "Recurring", Links: Links{Self: get(self)}, Attributes: Attributes{ObjectType: "Invoice"}}
}

// UsageBasedLineItem is an Azure billing line item of a legacy
// usage-based (MS-AZR-0145P) invoice.
type UsageBasedLineItem struct {
	DetailLineItemID     int            `json:"detailLineItemId"`
	Sku                  string         `json:"sku"`
	IncludedQuantity     money.Quantity `json:"includedQuantity"`
	OverageQuantity      money.Quantity `json:"overageQuantity"`
	ListPrice            money.Quantity `json:"listPrice"`
	Currency             string         `json:"currency"`
	PretaxCharges        money.Quantity `json:"pretaxCharges"`
	TaxAmount            money.Quantity `json:"taxAmount"`
	PostTaxTotal         money.Quantity `json:"postTaxTotal"`
	PretaxEffectiveRate  money.Quantity `json:"pretaxEffectiveRate"`
	PostTaxEffectiveRate money.Quantity `json:"postTaxEffectiveRate"`
	ChargeType           string         `json:"chargeType"`
	LegacyUsage
}

// LegacyUsage is what both kinds of a legacy usage-based invoice's Azure
// line items say of the line: who, which subscription, which meter, how
// much, when.
type LegacyUsage struct {
	InvoiceLineItemType      string          `json:"invoiceLineItemType"`
	PartnerID                string          `json:"partnerId"`
	PartnerName              string          `json:"partnerName"`
	PartnerBillableAccountID string          `json:"partnerBillableAccountId"`
	CustomerID               string          `json:"customerId"`
	DomainName               string          `json:"domainName"`
	CustomerCompanyName      string          `json:"customerCompanyName"`
	MpnID                    json.RawMessage `json:"mpnId"`
	Tier2MpnID               json.RawMessage `json:"tier2MpnId"`
	InvoiceNumber            string          `json:"invoiceNumber"`
	SubscriptionID           string          `json:"subscriptionId"`
	SubscriptionName         string          `json:"subscriptionName"`
	SubscriptionDescription  string          `json:"subscriptionDescription"`
	BillingCycleType         string          `json:"billingCycleType"`
	OrderID                  string          `json:"orderId"`
	ServiceName              string          `json:"serviceName"`
	ServiceType              string          `json:"serviceType"`
	ResourceGUID             string          `json:"resourceGuid"`
	ResourceName             string          `json:"resourceName"`
	Region                   string          `json:"region"`
	ConsumedQuantity         money.Quantity  `json:"consumedQuantity"`
	ChargeStartDate          string          `json:"chargeStartDate"`
	ChargeEndDate            string          `json:"chargeEndDate"`
	Unit                     string          `json:"unit"`
	BillingProvider          string          `json:"billingProvider"`
	Attributes               Attributes      `json:"attributes"`
}

// mpn is an MPN ID as Partner Center's number, or absent (-1 for a Tier 2
// partner, 0 for the partner).
func mpn(id string, none int) json.RawMessage {
	if n, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64); err == nil && n >= 0 {
		return json.RawMessage(strconv.FormatInt(n, 10))
	}
	return json.RawMessage(strconv.Itoa(none))
}

// pcDate is Partner Center's date-time without a zone (UTC).
func pcDate(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }

// BillingLineItems renders an invoice's lines. Each line is one item: its
// charges are the line's amount, so the items add up to the invoice's total
// exactly. A line of a meter's included quantity is an item whose quantity
// is included, not overage.
func BillingLineItems(inv billing.Invoice) []UsageBasedLineItem {
	var out []UsageBasedLineItem
	for _, sec := range inv.Sections {
		for _, l := range sec.Lines {
			included, overage := money.Zero, l.Quantity
			if l.Tier == "included" {
				included, overage = l.Quantity, money.Zero
			}
			rate := money.Zero
			if !l.Quantity.IsZero() {
				rate = l.Amount.Div(l.Quantity, 8)
			}
			charge := "ASSESS USAGE FEE FOR CURRENT CYCLE"
			if l.Kind == "LateUsage" {
				charge = "ASSESS USAGE FEE FOR PREVIOUS CYCLE"
			}
			name := l.SubscriptionName
			if name == "" {
				name = l.SubscriptionID
			}
			out = append(out, UsageBasedLineItem{DetailLineItemID: l.No, Sku: "", IncludedQuantity: included, OverageQuantity: overage, ListPrice: l.UnitPrice,
				Currency: inv.Currency, PretaxCharges: l.Amount, TaxAmount: money.Zero, PostTaxTotal: l.Amount, PretaxEffectiveRate: rate, PostTaxEffectiveRate: rate,
				ChargeType: charge, LegacyUsage: LegacyUsage{InvoiceLineItemType: "billing_line_items", PartnerID: inv.PartnerID, PartnerName: inv.PartnerName,
					PartnerBillableAccountID: inv.PartnerID, CustomerID: l.CustomerTenantID, DomainName: "", CustomerCompanyName: l.CustomerLabel(),
					MpnID: mpn(inv.MpnID, 0), Tier2MpnID: mpn(l.ResellerMpnID, -1), InvoiceNumber: inv.Number, SubscriptionID: l.SubscriptionID,
					SubscriptionName: name, SubscriptionDescription: name, BillingCycleType: "MONTHLY", OrderID: l.Registration,
					ServiceName: l.MeterCategory, ServiceType: l.MeterSubCategory, ResourceGUID: l.MeterID, ResourceName: l.MeterName, Region: "Azure Stack",
					ConsumedQuantity: l.Quantity, ChargeStartDate: pcDate(l.ChargeStart), ChargeEndDate: pcDate(l.ChargeEnd), Unit: l.Unit, BillingProvider: "azure",
					Attributes: Attributes{ObjectType: "UsageBasedLineItem"}}})
		}
	}
	if out == nil {
		out = []UsageBasedLineItem{}
	}
	return out
}

// AzureMeter is a meter of the CSP Azure rate card.
type AzureMeter struct {
	ID               string                     `json:"id"`
	Name             string                     `json:"name"`
	Rates            map[string]json.RawMessage `json:"rates"`
	Tags             []string                   `json:"tags"`
	Category         string                     `json:"category"`
	Subcategory      string                     `json:"subcategory"`
	Region           string                     `json:"region"`
	Unit             string                     `json:"unit"`
	IncludedQuantity json.RawMessage            `json:"includedQuantity"`
	EffectiveDate    time.Time                  `json:"effectiveDate"`
}

// AzureRateCard is Partner Center's CSP Azure rate card.
type AzureRateCard struct {
	Currency      string            `json:"currency"`
	IsTaxIncluded bool              `json:"isTaxIncluded"`
	Locale        string            `json:"locale"`
	Meters        []AzureMeter      `json:"meters"`
	OfferTerms    []json.RawMessage `json:"offerTerms"`
	Attributes    Attributes        `json:"attributes"`
}

// FromRateCard renders the price list in force as Partner Center's rate
// card: the same meters, rates and dates as Microsoft.Commerce/RateCard.
func FromRateCard(rc billing.RateCard) AzureRateCard {
	out := AzureRateCard{Currency: rc.Currency, Locale: rc.Locale, Meters: []AzureMeter{}, OfferTerms: []json.RawMessage{}, Attributes: Attributes{ObjectType: "AzureRateCard"}}
	for _, m := range rc.Meters {
		out.Meters = append(out.Meters, AzureMeter{ID: m.MeterID, Name: m.MeterName, Rates: m.MeterRates, Tags: m.MeterTags, Category: m.MeterCategory,
			Subcategory: m.MeterSubCategory, Region: m.MeterRegion, Unit: m.Unit, IncludedQuantity: m.IncludedQuantity, EffectiveDate: m.EffectiveDate})
	}
	return out
}

// DailyRatedUsageLineItem is a day of one resource's rated usage: the
// reconciliation file's row in Partner Center's field names (its daily
// rated usage API, provider=onetime, invoicelineitemtype=usagelineitems).
type DailyRatedUsageLineItem struct {
	PartnerID               string         `json:"partnerId"`
	PartnerName             string         `json:"partnerName"`
	CustomerID              string         `json:"customerId"`
	CustomerName            string         `json:"customerName"`
	CustomerDomainName      string         `json:"customerDomainName"`
	InvoiceNumber           string         `json:"invoiceNumber"`
	ProductID               string         `json:"productId"`
	SkuID                   string         `json:"skuId"`
	AvailabilityID          string         `json:"availabilityId"`
	SkuName                 string         `json:"skuName"`
	ProductName             string         `json:"productName"`
	PublisherName           string         `json:"publisherName"`
	PublisherID             string         `json:"publisherId"`
	SubscriptionID          string         `json:"subscriptionId"`
	SubscriptionDescription string         `json:"subscriptionDescription"`
	ChargeStartDate         string         `json:"chargeStartDate"`
	ChargeEndDate           string         `json:"chargeEndDate"`
	UsageDate               string         `json:"usageDate"`
	MeterType               string         `json:"meterType"`
	MeterCategory           string         `json:"meterCategory"`
	MeterID                 string         `json:"meterId"`
	MeterSubCategory        string         `json:"meterSubCategory"`
	MeterName               string         `json:"meterName"`
	MeterRegion             string         `json:"meterRegion"`
	UnitOfMeasure           string         `json:"unitOfMeasure"`
	ResourceLocation        string         `json:"resourceLocation"`
	ConsumedService         string         `json:"consumedService"`
	ResourceGroup           string         `json:"resourceGroup"`
	ResourceURI             string         `json:"resourceUri"`
	Tags                    string         `json:"tags"`
	AdditionalInfo          string         `json:"additionalInfo"`
	ServiceInfo1            string         `json:"serviceInfo1"`
	ServiceInfo2            string         `json:"serviceInfo2"`
	CustomerCountry         string         `json:"customerCountry"`
	MpnID                   string         `json:"mpnId"`
	ResellerMpnID           string         `json:"resellerMpnId"`
	ChargeType              string         `json:"chargeType"`
	UnitPrice               money.Quantity `json:"unitPrice"`
	Quantity                money.Quantity `json:"quantity"`
	UnitType                string         `json:"unitType"`
	BillingPreTaxTotal      money.Quantity `json:"billingPreTaxTotal"`
	BillingCurrency         string         `json:"billingCurrency"`
	PricingPreTaxTotal      money.Quantity `json:"pricingPreTaxTotal"`
	PricingCurrency         string         `json:"pricingCurrency"`
	InvoiceLineItemType     string         `json:"invoiceLineItemType"`
	BillingProvider         string         `json:"billingProvider"`
	Attributes              Attributes     `json:"attributes"`
}

// DailyRatedUsage reads one reconciliation file row (header names the
// columns, billing.ReconColumns) as a daily rated usage line item.
func DailyRatedUsage(header, row []string) (DailyRatedUsageLineItem, error) {
	col := map[string]string{}
	for i, h := range header {
		if i < len(row) {
			col[h] = row[i]
		}
	}
	num := func(name string) (money.Quantity, error) {
		if col[name] == "" {
			return money.Zero, nil
		}
		return money.ParseQuantity(col[name])
	}
	price, err1 := num("UnitPrice")
	qty, err2 := num("Quantity")
	total, err3 := num("BillingPreTaxTotal")
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return DailyRatedUsageLineItem{}, err
		}
	}
	uri := col["ResourceUri"]
	group, service := "", ""
	if i := strings.Index(strings.ToLower(uri), "/resourcegroups/"); i >= 0 {
		group = strings.SplitN(uri[i+len("/resourceGroups/"):], "/", 2)[0]
	}
	if i := strings.Index(uri, "/providers/"); i >= 0 {
		service = strings.SplitN(uri[i+len("/providers/"):], "/", 2)[0]
	}
	return DailyRatedUsageLineItem{PartnerID: col["PartnerId"], PartnerName: col["PartnerName"], CustomerID: col["CustomerId"], CustomerName: col["CustomerName"],
		InvoiceNumber: col["InvoiceNumber"], SkuName: col["MeterName"], ProductName: col["MeterCategory"] + " " + col["MeterSubCategory"], PublisherName: "Microsoft",
		SubscriptionID: col["SubscriptionId"], SubscriptionDescription: col["SubscriptionId"],
		ChargeStartDate: col["ChargeStartDate"], ChargeEndDate: col["ChargeEndDate"], UsageDate: col["UsageDate"], MeterType: col["UnitOfMeasure"],
		MeterCategory: col["MeterCategory"], MeterID: col["MeterId"], MeterSubCategory: col["MeterSubCategory"], MeterName: col["MeterName"], MeterRegion: col["MeterRegion"],
		UnitOfMeasure: col["UnitOfMeasure"], ResourceLocation: col["ResourceLocation"], ConsumedService: service, ResourceGroup: group, ResourceURI: uri,
		Tags: col["Tags"], AdditionalInfo: col["AdditionalInfo"], MpnID: col["MpnId"], ResellerMpnID: col["ResellerMpnId"], ChargeType: col["ChargeType"],
		UnitPrice: price, Quantity: qty, UnitType: col["UnitOfMeasure"], BillingPreTaxTotal: total, BillingCurrency: col["BillingCurrency"],
		PricingPreTaxTotal: total, PricingCurrency: col["BillingCurrency"], InvoiceLineItemType: "usage_line_items", BillingProvider: "azure",
		Attributes: Attributes{ObjectType: "DailyRatedUsageLineItem"}}, nil
}

// SeekPage is a page of a seek collection: Partner Center's continuation,
// where next carries the token a client sends back as MS-ContinuationToken
// with seekOperation=Next.
func SeekPage[T any](items []T, self string, next string, token string) Collection[T] {
	c := Collection[T]{Items: items, TotalCount: len(items), Attributes: Attributes{ObjectType: "Collection"}, Links: Links{Self: get(self)}}
	if c.Items == nil {
		c.Items = []T{}
	}
	if token != "" {
		l := get(next)
		l.Headers = []LinkHeader{{Key: "MS-ContinuationToken", Value: token}}
		c.Links.Next = &l
	}
	return c
}

// AzureResource is the meter a utilization record is of.
type AzureResource struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Category    string `json:"category"`
	Subcategory string `json:"subcategory"`
	Region      string `json:"region"`
}

// AzureInstanceData is a utilization record's resource instance.
type AzureInstanceData struct {
	ResourceURI    string            `json:"resourceUri"`
	Location       string            `json:"location"`
	PartNumber     string            `json:"partNumber"`
	OrderNumber    string            `json:"orderNumber"`
	Tags           map[string]string `json:"tags,omitempty"`
	AdditionalInfo map[string]string `json:"additionalInfo"`
}

// AzureUtilizationRecord is a subscription's usage of a meter in an hour or
// a day (Partner Center's Azure utilization API), unrated.
type AzureUtilizationRecord struct {
	UsageStartTime string             `json:"usageStartTime"`
	UsageEndTime   string             `json:"usageEndTime"`
	Resource       AzureResource      `json:"resource"`
	Quantity       money.Quantity     `json:"quantity"`
	Unit           string             `json:"unit"`
	InfoFields     map[string]string  `json:"infoFields"`
	InstanceData   *AzureInstanceData `json:"instanceData,omitempty"`
	Attributes     Attributes         `json:"attributes"`
}

// Utilization renders one bucket of a meter's usage; instance is nil
// without details.
func Utilization(start, end time.Time, res AzureResource, qty money.Quantity, unit string, instance *AzureInstanceData) AzureUtilizationRecord {
	return AzureUtilizationRecord{UsageStartTime: start.UTC().Format(time.RFC3339), UsageEndTime: end.UTC().Format(time.RFC3339), Resource: res, Quantity: qty, Unit: unit,
		InfoFields: map[string]string{}, InstanceData: instance, Attributes: Attributes{ObjectType: "AzureUtilizationRecord"}}
}

// DailyUsageLineItem is a day of one subscription's usage of one meter on a
// legacy usage-based invoice (invoicelineitemtype UsageLineItems).
type DailyUsageLineItem struct {
	CustomerBillableAccount string `json:"customerBillableAccount"`
	UsageDate               string `json:"usageDate"`
	LegacyUsage
}

// DailyUsage sums daily rated usage rows (resource by resource) into one
// item per subscription, meter and day, in the order they first appear.
type DailyUsage struct {
	at    map[[3]string]int
	Items []DailyUsageLineItem
}

// Add adds one reconciliation file row.
func (d *DailyUsage) Add(header, row []string) error {
	r, err := DailyRatedUsage(header, row)
	if err != nil {
		return err
	}
	if d.at == nil {
		d.at = map[[3]string]int{}
	}
	k := [3]string{r.SubscriptionID, r.MeterID, r.UsageDate}
	if i, ok := d.at[k]; ok {
		d.Items[i].ConsumedQuantity = d.Items[i].ConsumedQuantity.Add(r.Quantity)
		return nil
	}
	d.at[k] = len(d.Items)
	d.Items = append(d.Items, DailyUsageLineItem{CustomerBillableAccount: r.CustomerID, UsageDate: r.UsageDate, LegacyUsage: LegacyUsage{InvoiceLineItemType: "usage_line_items",
		PartnerID: r.PartnerID, PartnerName: r.PartnerName, PartnerBillableAccountID: r.PartnerID, CustomerID: r.CustomerID, CustomerCompanyName: r.CustomerName,
		MpnID: mpn(r.MpnID, 0), Tier2MpnID: mpn(r.ResellerMpnID, -1), InvoiceNumber: r.InvoiceNumber, SubscriptionID: r.SubscriptionID,
		SubscriptionName: r.SubscriptionID, SubscriptionDescription: r.SubscriptionID, BillingCycleType: "MONTHLY", ServiceName: r.MeterCategory,
		ServiceType: r.MeterSubCategory, ResourceGUID: r.MeterID, ResourceName: r.MeterName, Region: r.MeterRegion, ConsumedQuantity: r.Quantity,
		ChargeStartDate: r.ChargeStartDate, ChargeEndDate: r.ChargeEndDate, Unit: r.UnitOfMeasure, BillingProvider: "azure",
		Attributes: Attributes{ObjectType: "DailyUsageLineItem"}}})
	return nil
}
