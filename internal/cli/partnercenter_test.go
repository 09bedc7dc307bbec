package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// sameShape reports where got lacks a field of want (a documented example
// response), or holds it as another JSON type: objects field by field,
// arrays by their first elements when both have one.
func sameShape(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{path + ": an object in the documentation"}
		}
		var out []string
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				out = append(out, path+"."+k+": missing")
				continue
			}
			out = append(out, sameShape(path+"."+k, wv, gv)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{path + ": an array in the documentation"}
		}
		if len(w) > 0 && len(g) > 0 {
			return sameShape(path+"[0]", w[0], g[0])
		}
		return nil
	case float64:
		if _, ok := got.(float64); !ok {
			return []string{path + ": a number in the documentation"}
		}
	case string:
		if _, ok := got.(string); !ok {
			return []string{path + ": a string in the documentation"}
		}
	case bool:
		if _, ok := got.(bool); !ok {
			return []string{path + ": a boolean in the documentation"}
		}
	}
	return nil
}

// checkShape compares a response with a documented example.
func checkShape(t *testing.T, fixture, body string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "partnercenter", "testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%s: %v: %.300s", fixture, err, body)
	}
	if diffs := sameShape("$", want, got); len(diffs) > 0 {
		sort.Strings(diffs)
		t.Errorf("the response differs from Partner Center's documented %s: %s", fixture, strings.Join(diffs, "; "))
	}
}

// seekAll follows a Partner Center collection from first through its next
// links, sending each link's continuation token back as its header, and
// gives each page's body (and its number) to page.
func seekAll(t *testing.T, base, bearer, first string, page func(n int, body string)) {
	t.Helper()
	path, token := first, ""
	for n := 0; path != ""; n++ {
		if n > 1000 {
			t.Fatal("the pages do not end")
		}
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		if token != "" {
			req.Header.Set("MS-ContinuationToken", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %.300s", path, resp.StatusCode, buf.String())
		}
		page(n, buf.String())
		var l struct {
			Links struct {
				Next *struct {
					URI     string `json:"uri"`
					Headers []struct{ Key, Value string }
				} `json:"next"`
			} `json:"links"`
		}
		if err := json.Unmarshal(buf.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		path, token = "", ""
		if nx := l.Links.Next; nx != nil {
			path = "/partnercenter/v1" + nx.URI
			for _, h := range nx.Headers {
				if h.Key == "MS-ContinuationToken" {
					token = h.Value
				}
			}
			if strings.Contains(nx.URI, "seekOperation=Next") && token == "" {
				t.Fatalf("a seek's next link has no continuation token: %+v", nx)
			}
		}
	}
}

// TestPartnerCenterBilling reads invoices, their Azure billing line items
// and the rate card through Partner Center's API paths, compares each with
// Microsoft's documented example field by field, and checks conservation
// for a month with late usage and a month with a credit note: Σ line items
// = the invoice = the reconciliation file, to the cent. Each partner sees
// only its own; resellers and tenants see none.
func TestPartnerCenterBilling(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		w := newBillingWorld(t, backend)
		bs := w.env.app.Billing
		w.clk.Set(time.Date(2026, 11, 2, 1, 0, 0, 0, time.UTC))
		if _, err := bs.Finalize(ctx, w.op, "2026-10"); err != nil {
			t.Fatal(err)
		}
		w.clk.Set(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC))
		w.ingest(t, w.contoso, time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC), []usageRec{
			{"local-adatum", W.Adatum.Tenant, simulate.MeterBaseVM, "100", W.Adatum.Subscription, "vm-late"}})
		w.ingest(t, w.contoso, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), []usageRec{
			{"local-adatum", W.Adatum.Tenant, simulate.MeterBaseVM, "96", W.Adatum.Subscription, "vm-a2"}})
		w.clk.Set(time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC))
		if _, err := bs.Finalize(ctx, w.op, "2026-11"); err != nil {
			t.Fatal(err)
		}
		oct, err := bs.Invoice(ctx, w.op, "SB-202610-contoso")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bs.CreateCreditNote(ctx, w.op, "SB-202610-contoso", billing.CreditRequest{Reason: "BYOL",
			Lines: []billing.CreditLine{{Line: windowsLine(t, oct), Amount: money.MustQuantity("1.00")}}}); err != nil {
			t.Fatal(err)
		}
		contoso, fabrikam := w.env.tokens["contoso"], w.env.tokens["fabrikam"]
		base := "9c23489b-c01c-5893-b898-412bd252b0db" // the base VM's vCPU-hours
		call := func(token, path string, want int) string {
			t.Helper()
			resp, body := w.env.raw("GET", path, token, "", nil)
			if resp.StatusCode != want {
				t.Fatalf("GET %s: %d, want %d: %.300s", path, resp.StatusCode, want, body)
			}
			return body
		}

		// Invoices: the finalized ones, newest first, in Partner Center's shape.
		body := call(contoso, "/partnercenter/v1/invoices", http.StatusOK)
		checkShape(t, "invoices.json", body)
		var invs struct {
			Items []struct {
				ID           string         `json:"id"`
				TotalCharges money.Quantity `json:"totalCharges"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(body), &invs); err != nil || len(invs.Items) != 2 || invs.Items[0].ID != "SB-202611-contoso" || invs.Items[1].ID != "SB-202610-contoso" {
			t.Fatalf("contoso's invoices: %v %.400s", err, body)
		}
		shaped := 0
		for _, it := range invs.Items {
			inv, err := bs.Invoice(ctx, w.op, it.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !it.TotalCharges.Equal(inv.Total) {
				t.Errorf("%s: totalCharges %s, the invoice %s", it.ID, it.TotalCharges, inv.Total)
			}
			// Line items, a page of two at a time, by following next.
			sum, n, late := money.Zero, 0, 0
			seekAll(t, w.env.url, contoso, "/partnercenter/v1/invoices/"+it.ID+"/lineitems/Azure/BillingLineItems?size=2&offset=0", func(pages int, page string) {
				if pages == 0 && strings.Contains(page, `"next":`) {
					// A page with more after it has every link of the
					// documented example.
					checkShape(t, "lineitems-azure-billing.json", page)
					shaped++
				}
				var p struct {
					TotalCount int `json:"totalCount"`
					Items      []struct {
						PretaxCharges money.Quantity `json:"pretaxCharges"`
						PostTaxTotal  money.Quantity `json:"postTaxTotal"`
						ChargeType    string         `json:"chargeType"`
						InvoiceNumber string         `json:"invoiceNumber"`
					} `json:"items"`
				}
				if err := json.Unmarshal([]byte(page), &p); err != nil || p.TotalCount != len(p.Items) || len(p.Items) > 2 {
					t.Fatalf("page %d of %s: %v %.300s", pages, it.ID, err, page)
				}
				for _, li := range p.Items {
					sum, n = sum.Add(li.PretaxCharges), n+1
					if !li.PostTaxTotal.Equal(li.PretaxCharges) || li.InvoiceNumber != it.ID {
						t.Errorf("%s: a line item's post-tax total or invoice number is wrong: %+v", it.ID, li)
					}
					if strings.Contains(li.ChargeType, "PREVIOUS CYCLE") {
						late++
					}
				}
			})
			lines := 0
			for _, sec := range inv.Sections {
				lines += len(sec.Lines)
			}
			if n != lines || !sum.Equal(inv.Total) {
				t.Errorf("%s: %d line items adding up to %s; the invoice has %d lines and a total of %s", it.ID, n, sum, lines, inv.Total)
			}
			if (it.ID == "SB-202611-contoso") != (late > 0) {
				t.Errorf("%s: %d line items of late usage", it.ID, late)
			}
			// The reconciliation file adds up to the same.
			var buf bytes.Buffer
			if err := bs.Reconciliation(ctx, w.op, "contoso", inv.Period, &buf, nil); err != nil {
				t.Fatal(err)
			}
			recs, err := csv.NewReader(&buf).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			col := map[string]int{}
			for i, h := range recs[0] {
				col[h] = i
			}
			recon := money.Zero
			for _, r := range recs[1:] {
				recon = recon.Add(money.MustQuantity(r[col["BillingPreTaxTotal"]]))
			}
			if !recon.Equal(sum) {
				t.Errorf("%s: the reconciliation file adds up to %s, the line items to %s", it.ID, recon, sum)
			}
		}
		if shaped == 0 {
			t.Error("no page of line items was compared with the documented example")
		}
		// Daily rated usage, billed and unbilled, a few rows a page by
		// following next with its continuation token: it adds up to the
		// invoice (and so to the reconciliation file) to the cent.
		w.ingest(t, w.contoso, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), []usageRec{
			{"local-adatum", W.Adatum.Tenant, simulate.MeterBaseVM, "7", W.Adatum.Subscription, "vm-dec"}})
		daily := func(first string, number string) (money.Quantity, int) {
			t.Helper()
			sum, rows := money.Zero, 0
			seekAll(t, w.env.url, contoso, first, func(pages int, page string) {
				var p struct {
					Items []struct {
						BillingPreTaxTotal money.Quantity `json:"billingPreTaxTotal"`
						InvoiceNumber      string         `json:"invoiceNumber"`
					} `json:"items"`
				}
				if err := json.Unmarshal([]byte(page), &p); err != nil {
					t.Fatal(err)
				}
				if pages == 0 && strings.Contains(page, `"next":`) {
					checkShape(t, "lineitems-onetime-usage.json", page)
				}
				for _, it := range p.Items {
					sum, rows = sum.Add(it.BillingPreTaxTotal), rows+1
					if number != "" && it.InvoiceNumber != number {
						t.Errorf("a daily row of %s names invoice %q", number, it.InvoiceNumber)
					}
				}
			})
			return sum, rows
		}
		for _, number := range []string{"SB-202610-contoso", "SB-202611-contoso"} {
			inv, err := bs.Invoice(ctx, w.op, number)
			if err != nil {
				t.Fatal(err)
			}
			sum, rows := daily("/partnercenter/v1/invoices/"+number+"/lineitems?provider=onetime&invoicelineitemtype=usagelineitems&currencycode=usd&size=7", number)
			if !sum.Equal(inv.Total) || rows == 0 {
				t.Errorf("%s: %d daily rows add up to %s, the invoice to %s", number, rows, sum, inv.Total)
			}
		}
		dec, err := bs.Invoice(ctx, w.op, "SB-202612-contoso")
		if err != nil {
			t.Fatal(err)
		}
		if sum, rows := daily("/partnercenter/v1/invoices/unbilled/lineitems?provider=onetime&invoicelineitemtype=usagelineitems&currencycode=usd&period=current&size=1", ""); !sum.Equal(dec.Total) || rows == 0 {
			t.Errorf("unbilled: %d rows adding up to %s, the draft %s", rows, sum, dec.Total)
		}
		if body := call(fabrikam, "/partnercenter/v1/invoices/unbilled/lineitems?provider=onetime&invoicelineitemtype=usagelineitems&period=current", http.StatusOK); !strings.Contains(body, `"items":[]`) {
			t.Errorf("a partner without usage this month has unbilled lines: %.300s", body)
		}
		// A reseller reads its own customers' unbilled lines, priced at what
		// its provider charges it (10 % over its cost here), never at the
		// provider's cost, and no other reseller's customer.
		if _, err := bs.PutPriceBook(ctx, auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "t"},
			billing.PriceBook{Owner: "fabrikam", Target: "tailspin", MarkupPercent: money.MustQuantity("10")}); err != nil {
			t.Fatal(err)
		}
		w.ingest(t, w.fabrikam, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), []usageRec{
			{"local-proseware", W.Proseware.Tenant, simulate.MeterBaseVM, "48", W.Proseware.Subscription, "vm-p1"},
			{"local-relecloud", W.Relecloud.Tenant, simulate.MeterAppService, "8", W.Relecloud.Subscription, "asp-r"}})
		reseller := map[string]string{"tailspin": w.env.tokens["tailspin"]}
		sts, err := bs.Statements(ctx, auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "t"}, "tailspin", "2026-12")
		if err != nil {
			t.Fatal(err)
		}
		wantCost := money.Zero
		for _, st := range sts {
			for _, l := range st.Lines {
				if !l.LocalOnly {
					wantCost = wantCost.Add(l.Cost)
				}
			}
		}
		resellerSum, resellerRows := money.Zero, 0
		seekAll(t, w.env.url, reseller["tailspin"], "/partnercenter/v1/invoices/unbilled/lineitems?provider=onetime&invoicelineitemtype=usagelineitems&period=current&size=1", func(_ int, page string) {
			if strings.Contains(page, W.Relecloud.Subscription) {
				t.Error("tailspin's unbilled lines show wingtip's customer")
			}
			var p struct {
				Items []struct {
					SubscriptionID     string         `json:"subscriptionId"`
					MeterID            string         `json:"meterId"`
					UnitPrice          money.Quantity `json:"unitPrice"`
					BillingPreTaxTotal money.Quantity `json:"billingPreTaxTotal"`
				} `json:"items"`
			}
			if err := json.Unmarshal([]byte(page), &p); err != nil {
				t.Fatal(err)
			}
			for _, it := range p.Items {
				resellerSum, resellerRows = resellerSum.Add(it.BillingPreTaxTotal), resellerRows+1
				if it.SubscriptionID != W.Proseware.Subscription {
					t.Errorf("tailspin's unbilled lines show subscription %s", it.SubscriptionID)
				}
				// Fabrikam is billed in EUR, base VM hours at 0.0074.
				if strings.EqualFold(it.MeterID, base) && it.UnitPrice.Cmp(money.MustQuantity("0.0074")) <= 0 {
					t.Errorf("tailspin's base VM hours are priced %s: its provider's cost, not its price to tailspin (10 %% more)", it.UnitPrice)
				}
			}
		})
		if resellerRows == 0 || wantCost.IsZero() || !resellerSum.Equal(wantCost) {
			t.Errorf("tailspin's unbilled lines: %d adding up to %s; its statements' cost is %s", resellerRows, resellerSum, wantCost)
		}
		for _, path := range []string{
			"/partnercenter/v1/invoices/unbilled/lineitems?provider=onetime&invoicelineitemtype=usagelineitems&period=previous", // finalized: billed
			"/partnercenter/v1/invoices/unbilled/lineitems?provider=onetime&invoicelineitemtype=usagelineitems&period=someday",
			"/partnercenter/v1/invoices/SB-202610-contoso/lineitems?provider=onetime&invoicelineitemtype=usagelineitems&currencycode=eur",
			"/partnercenter/v1/invoices/SB-202610-contoso/lineitems?provider=onetime&invoicelineitemtype=usagelineitems&seekOperation=Next",
			"/partnercenter/v1/invoices/SB-202610-contoso/lineitems?provider=onetime&invoicelineitemtype=usagelineitems&size=5000",
		} {
			call(contoso, path, http.StatusBadRequest)
		}
		call(fabrikam, "/partnercenter/v1/invoices/SB-202610-contoso/lineitems?provider=onetime&invoicelineitemtype=usagelineitems", http.StatusNotFound)
		call(contoso, "/partnercenter/v1/invoices/SB-202612-contoso/lineitems?provider=onetime&invoicelineitemtype=usagelineitems", http.StatusNotFound)

		// Usage line items: the invoice's usage per subscription, meter and day,
		// which adds up to its billing line items' quantities.
		checkShape(t, "lineitems-azure-usage.json", call(contoso, "/partnercenter/v1/invoices/SB-202610-contoso/lineitems/Azure/UsageLineItems?size=2", http.StatusOK))
		type subMeter struct{ sub, meter string }
		sumOf := func(path string) map[subMeter]money.Quantity {
			var p struct {
				Items []struct {
					SubscriptionID   string         `json:"subscriptionId"`
					ResourceGUID     string         `json:"resourceGuid"`
					Unit             string         `json:"unit"`
					ConsumedQuantity money.Quantity `json:"consumedQuantity"`
				} `json:"items"`
			}
			if err := json.Unmarshal([]byte(call(contoso, path, http.StatusOK)), &p); err != nil {
				t.Fatal(err)
			}
			out := map[subMeter]money.Quantity{}
			for _, it := range p.Items {
				if it.Unit != "1 Hour" {
					continue
				}
				k := subMeter{strings.ToLower(it.SubscriptionID), strings.ToLower(it.ResourceGUID)}
				if q, ok := out[k]; ok {
					out[k] = q.Add(it.ConsumedQuantity)
				} else {
					out[k] = it.ConsumedQuantity
				}
			}
			return out
		}
		daySums := sumOf("/partnercenter/v1/invoices/SB-202610-contoso/lineitems/Azure/UsageLineItems?size=2000")
		lineSums := sumOf("/partnercenter/v1/invoices/SB-202610-contoso/lineitems/Azure/BillingLineItems?size=2000")
		if len(lineSums) == 0 || len(daySums) != len(lineSums) {
			t.Errorf("usage line items cover %d subscription meters, billing line items %d", len(daySums), len(lineSums))
		}
		for k, q := range lineSums {
			if !daySums[k].Equal(q) {
				t.Errorf("%v: the usage line items add up to %s, the billing line items to %s", k, daySums[k], q)
			}
		}

		// Utilization records: a customer's subscription's usage per meter and
		// day, unrated, of what was reported in October and November: the
		// base VM hours October's and November's invoices billed (late usage
		// included, December's not yet).
		// billed sums Adatum's base VM hours on invoices.
		billed := func(numbers ...string) money.Quantity {
			sum := money.Zero
			for _, number := range numbers {
				inv, _ := bs.Invoice(ctx, w.op, number)
				for _, sec := range inv.Sections {
					for _, l := range sec.Lines {
						if strings.EqualFold(l.MeterID, base) && l.SubscriptionID == W.Adatum.Subscription {
							sum = sum.Add(l.Quantity)
						}
					}
				}
			}
			return sum
		}
		billedHours := billed("SB-202610-contoso", "SB-202611-contoso")
		util := "/partnercenter/v1/customers/" + W.Adatum.Tenant + "/subscriptions/" + W.Adatum.Subscription + "/utilizations/azure"
		// baseHours sums the base VM hours of the utilization records a query
		// pages through, and counts the records.
		baseHours := func(query string, shape bool) (money.Quantity, int) {
			t.Helper()
			hours, records := money.Zero, 0
			seekAll(t, w.env.url, contoso, util+query, func(pages int, page string) {
				if shape && pages == 0 {
					checkShape(t, "utilizations-azure.json", page)
				}
				var p struct {
					Items []struct {
						Resource struct{ ID string } `json:"resource"`
						Quantity money.Quantity      `json:"quantity"`
					} `json:"items"`
				}
				if err := json.Unmarshal([]byte(page), &p); err != nil {
					t.Fatal(err)
				}
				for _, it := range p.Items {
					records++
					if strings.EqualFold(it.Resource.ID, base) {
						hours = hours.Add(it.Quantity)
					}
				}
			})
			return hours, records
		}
		hours, records := baseHours("?start_time=2026-10-01T00:00:00Z&end_time=2026-11-30T23:59:59Z&size=4", true)
		if records == 0 || !hours.Equal(billedHours) || billedHours.IsZero() {
			t.Errorf("Adatum's base VM hours reported in October and November: %s in %d utilization records, %s billed", hours, records, billedHours)
		}
		// What October's invoice billed was reported in October; the late
		// hours, reported in November, are not in October's range.
		octBilled := billed("SB-202610-contoso")
		if octHours, _ := baseHours("?start_time=2026-10-01T00:00:00Z&end_time=2026-10-31T23:59:59Z&show_details=false", false); !octHours.Equal(octBilled) || octHours.Equal(billedHours) {
			t.Errorf("base VM hours reported in October: %s; October's invoice billed %s (both months %s)", octHours, octBilled, billedHours)
		}
		// Until the range's last hour has reached commerce: 204 and when to
		// come back.
		resp, _ := w.env.raw("GET", util+"?start_time=2026-12-01T00:00:00Z&end_time=2026-12-31T00:00:00Z", contoso, "", nil)
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Retry-After") == "" {
			t.Errorf("a range not yet complete: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		octRange := "?start_time=2026-10-01T00:00:00Z&end_time=2026-10-02T00:00:00Z"
		call(fabrikam, util+octRange, http.StatusNotFound)
		call(contoso, "/partnercenter/v1/customers/"+W.Litware.Tenant+"/subscriptions/"+W.Adatum.Subscription+"/utilizations/azure"+octRange, http.StatusNotFound)
		call(w.env.tokens["tailspin"], "/partnercenter/v1/customers/"+W.Proseware.Tenant+"/subscriptions/"+W.Proseware.Subscription+"/utilizations/azure"+octRange, http.StatusOK)
		call(w.env.tokens["tailspin"], "/partnercenter/v1/customers/"+W.Relecloud.Tenant+"/subscriptions/"+W.Relecloud.Subscription+"/utilizations/azure"+octRange, http.StatusNotFound)
		for _, q := range []string{"", "?start_time=2026-10-01", "?start_time=2026-10-02T00:00:00Z&end_time=2026-10-01T00:00:00Z",
			octRange + "&granularity=weekly", octRange + "&show_details=maybe", octRange + "&size=5000", "?start_time=2026-01-01T00:00:00Z&end_time=2026-10-01T00:00:00Z",
			octRange + "&seekOperation=Next"} {
			call(contoso, util+q, http.StatusBadRequest)
		}

		// The query form answers the same as the path form.
		byPath := call(contoso, "/partnercenter/v1/invoices/SB-202610-contoso/lineitems/Azure/BillingLineItems", http.StatusOK)
		byQuery := call(contoso, "/partnercenter/v1/invoices/SB-202610-contoso/lineitems?provider=Azure&invoicelineitemtype=BillingLineItems", http.StatusOK)
		if byPath != byQuery {
			t.Error("the path and query forms of the line items differ")
		}
		checkShape(t, "invoices.json", `{"totalCount":1,"items":[`+call(contoso, "/partnercenter/v1/invoices/SB-202610-contoso", http.StatusOK)+`]}`)

		// The rate card, in the partner's agreement currency by default.
		rc := call(fabrikam, "/partnercenter/v1/ratecards/azure?region=US", http.StatusOK)
		checkShape(t, "ratecard-azure.json", rc)
		if !strings.Contains(rc, `"currency":"EUR"`) || !strings.Contains(rc, `"region":"Azure Stack Hub"`) {
			t.Errorf("fabrikam's rate card is not its EUR price list: %.300s", rc)
		}
		if rc := call(contoso, "/partnercenter/v1/ratecards/azure?currency=USD", http.StatusOK); !strings.Contains(rc, `"0":0.008`) || !strings.Contains(rc, `"500":0.0065`) {
			t.Errorf("the USD rate card lacks the base VM's tiers: %.400s", rc)
		}

		// Scope: another partner's invoice does not exist for the caller;
		// resellers have none; tenants have no route; drafts are not
		// invoices; bad input is a 400.
		call(fabrikam, "/partnercenter/v1/invoices/SB-202610-contoso", http.StatusNotFound)
		call(fabrikam, "/partnercenter/v1/invoices/SB-202610-contoso/lineitems/Azure/BillingLineItems", http.StatusNotFound)
		if body := call(w.env.tokens["tailspin"], "/partnercenter/v1/invoices", http.StatusOK); !strings.Contains(body, `"items":[]`) {
			t.Errorf("a reseller lists invoices: %.300s", body)
		}
		call(w.env.tokens["tailspin"], "/partnercenter/v1/ratecards/azure", http.StatusForbidden)
		tenant, _, err := w.env.app.Auth.Create(ctx, auth.RoleTenant, "", W.Adatum.Subscription, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		call(tenant, "/partnercenter/v1/invoices", http.StatusForbidden)
		call(contoso, "/partnercenter/v1/invoices/SB-202612-contoso", http.StatusNotFound)
		for _, path := range []string{
			"/partnercenter/v1/invoices/SB-202610-contoso/lineitems/Office/BillingLineItems",
			"/partnercenter/v1/invoices/SB-202610-contoso/lineitems/Azure/Nothing",
			"/partnercenter/v1/invoices/SB-202610-contoso/lineitems/Azure/BillingLineItems?size=0",
			"/partnercenter/v1/invoices/SB-202610-contoso/lineitems/Azure/BillingLineItems?offset=-1",
			"/partnercenter/v1/ratecards/azure?currency=dollars",
			"/partnercenter/v1/ratecards/azure?region=USA",
			"/partnercenter/v1/ratecards/azure?currency=JPY",
		} {
			call(contoso, path, http.StatusBadRequest)
		}
	})
}
