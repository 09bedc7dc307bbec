package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestBillingVisibility checks every role against every billing endpoint:
// partners see their own invoices, a provider all of its resellers', a
// reseller only its own customers through statements (never the provider's
// invoice, price list or reconciliation), end customers and stack roles
// nothing at all.
func TestBillingVisibility(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		w := newBillingWorld(t, backend)
		e := w.env
		w.clk.Set(time.Date(2026, 11, 2, 1, 0, 0, 0, time.UTC))
		tenantTok, _, _ := e.app.Auth.Create(ctx, auth.RoleTenant, "", W.Adatum.Subscription, "", 0)
		stackTok, _, _ := e.app.Auth.Create(ctx, auth.RoleStackOperator, "", "", "", 0)
		writerTok, _, _ := e.app.Auth.Create(ctx, auth.RoleUsageWriter, "", "", "", 0)
		type call struct {
			name, method, path, body string
		}
		calls := []call{
			{"list", "GET", "/v1/billing/invoices?period=2026-10", ""},
			{"contoso invoice", "GET", "/v1/billing/invoices/SB-202610-contoso", ""},
			{"fabrikam invoice", "GET", "/v1/billing/invoices/SB-202610-fabrikam?format=csv", ""},
			{"contoso recon", "GET", "/v1/billing/reconciliation?partner=contoso&period=2026-10", ""},
			{"contoso statements", "GET", "/v1/billing/statements/contoso?period=2026-10", ""},
			{"tailspin statements", "GET", "/v1/billing/statements/tailspin?period=2026-10", ""},
			{"price lists", "GET", "/v1/billing/price-lists", ""},
			{"import price list", "POST", "/v1/billing/price-lists?effective=2027-01-01", testPriceListUSD},
			{"agreement", "PUT", "/v1/billing/agreements/northwind", `{"currency":"GBP"}`},
			{"contoso book", "PUT", "/v1/billing/price-books/contoso/default", `{"markupPercent":"12"}`},
			{"export", "POST", "/v1/billing/exports", `{"partner":"contoso","period":"2026-10"}`},
			{"period", "GET", "/v1/billing/periods/2026-10", ""},
			{"finalize", "POST", "/v1/billing/periods/2026-10/finalize", ""},
			{"credit", "POST", "/v1/billing/invoices/SB-202610-contoso/credit-notes", `{"reason":"x","lines":[{"line":1,"amount":"0.01"}]}`},
		}
		// want[role] lists the status of each call in order.
		roles := []struct {
			name, token string
			want        []int
		}{
			{"contoso", e.tokens["contoso"], []int{200, 200, 404, 200, 200, 404, 200, 403, 403, 200, 202, 403, 403, 403}},
			{"fabrikam", e.tokens["fabrikam"], []int{200, 404, 200, 404, 404, 404, 200, 403, 403, 404, 404, 403, 403, 403}},
			{"northwind", e.tokens["northwind"], []int{200, 404, 404, 404, 404, 404, 200, 403, 403, 404, 404, 403, 403, 403}},
			{"tailspin", e.tokens["tailspin"], []int{200, 404, 404, 403, 404, 200, 403, 403, 403, 404, 403, 403, 403, 403}},
			{"wingtip", e.tokens["wingtip"], []int{200, 404, 404, 403, 404, 404, 403, 403, 403, 404, 403, 403, 403, 403}},
			{"tenant", tenantTok, []int{403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403}},
			{"stack operator", stackTok, []int{403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403}},
			{"usage writer", writerTok, []int{403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403}},
			{"nobody", "", []int{401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401}},
			{"operator", e.operator, []int{200, 200, 200, 200, 200, 200, 200, 201, 200, 200, 202, 200, 200, 201}},
		}
		bodies := map[string]string{}
		for _, r := range roles {
			for i, c := range calls {
				var body *strings.Reader
				ct := "application/json"
				if c.body != "" {
					body = strings.NewReader(c.body)
					if strings.Contains(c.path, "price-lists") {
						ct = "text/csv"
					}
				}
				resp, out := e.raw(c.method, c.path, r.token, ct, readerOrNil(body))
				if resp.StatusCode != r.want[i] {
					t.Errorf("%s → %s: %d, want %d (%.200s)", r.name, c.name, resp.StatusCode, r.want[i], out)
				}
				if resp.StatusCode >= 400 && !strings.Contains(out, `"error":{"code":"`) {
					t.Errorf("%s → %s: error without the ARM envelope: %.200s", r.name, c.name, out)
				}
				bodies[r.name+"/"+c.name] = out
			}
		}
		// What was visible holds only what is theirs.
		if b := bodies["contoso/list"]; !strings.Contains(b, "SB-202610-contoso") || strings.Contains(b, "fabrikam") {
			t.Errorf("contoso's invoice list: %.300s", b)
		}
		if b := bodies["fabrikam/list"]; !strings.Contains(b, "SB-202610-fabrikam") || strings.Contains(b, "contoso") || !strings.Contains(b, "tailspin") || !strings.Contains(b, "wingtip") {
			t.Errorf("fabrikam's invoice list: %.300s", b)
		}
		for _, r := range []string{"tailspin", "wingtip", "northwind"} {
			if b := bodies[r+"/list"]; strings.Contains(b, "SB-") {
				t.Errorf("%s sees invoices: %.300s", r, b)
			}
		}
		var sts struct{ Value []billing.Statement }
		if err := json.Unmarshal([]byte(bodies["tailspin/tailspin statements"]), &sts); err != nil {
			t.Fatal(err)
		}
		for _, st := range sts.Value {
			if st.Account != W.Proseware.Tenant {
				t.Errorf("tailspin sees account %s", st.Account)
			}
		}
		if b := bodies["tailspin/tailspin statements"]; strings.Contains(b, "Relecloud") || strings.Contains(b, W.Relecloud.Subscription) {
			t.Errorf("tailspin sees wingtip's customer: %.300s", b)
		}
		// The provider's cost never reaches the reseller: fabrikam's invoice
		// line amounts for Proseware do not appear in tailspin's statement
		// unless its price to tailspin equals them (it is 10% over here).
		inv, _ := e.app.Billing.Invoice(ctx, w.op, "SB-202610-fabrikam")
		for _, sec := range inv.Sections {
			for _, l := range sec.Lines {
				if l.ResellerID == "tailspin" && l.Amount.Sign() > 0 && strings.Contains(bodies["tailspin/tailspin statements"], `"cost":`+l.Amount.String()+`,`) {
					t.Errorf("tailspin's statement shows fabrikam's cost %s", l.Amount)
				}
			}
		}
	})
}

// TestBillingBadInput sends bad price lists, currencies, periods and credit
// notes: each gets a clear 4xx in the ARM envelope, never a 409 or 5xx, and
// nothing changes.
func TestBillingBadInput(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		w := newBillingWorld(t, backend)
		e := w.env
		w.clk.Set(time.Date(2026, 11, 2, 1, 0, 0, 0, time.UTC))
		header := "MeterId,MeterName,MeterCategory,MeterSubCategory,MeterRegion,Unit,MeterRates,IncludedQuantity,Currency,EffectiveDate\n"
		row := func(id, rates, cur, date string) string {
			return fmt.Sprintf("%s,1 Core,Azure Stack Hub,Base VM,Azure Stack,1 Hour,%s,0,%s,%s\n", id, rates, cur, date)
		}
		base := "9c23489b-c01c-5893-b898-412bd252b0db"
		cases := []struct {
			name, path, ct, body string
			status               int
			code, contains       string
		}{
			{"missing columns", "/v1/billing/price-lists", "text/csv", "MeterId,Price\nx,1\n", 400, "InvalidPriceList", "lacks required columns"},
			{"bad decimal", "/v1/billing/price-lists", "text/csv", header + row(base, "0:0.008", "USD", "2027-01-01") + row("fb8c0713-ea20-40bf-901f-5560fd3f6330", "0:abc", "USD", "2027-01-01"), 400, "InvalidPriceList", "line 3"},
			{"unknown currency", "/v1/billing/price-lists", "text/csv", header + row(base, "0:0.008", "XYZ", "2027-01-01"), 400, "InvalidPriceList", "unknown currency"},
			{"mixed currencies", "/v1/billing/price-lists", "text/csv", header + row(base, "0:0.008", "USD", "2027-01-01") + row("fb8c0713-ea20-40bf-901f-5560fd3f6330", "0:1", "EUR", "2027-01-01"), 400, "InvalidPriceList", "one price list holds one currency"},
			{"bad date", "/v1/billing/price-lists", "text/csv", header + row(base, "0:0.008", "USD", "yesterday"), 400, "InvalidPriceList", "line 2"},
			{"tier not from zero", "/v1/billing/price-lists", "text/csv", header + row(base, "10:0.008", "USD", "2027-01-01"), 400, "InvalidPriceList", "must start at 0"},
			{"negative price", "/v1/billing/price-lists", "text/csv", header + row(base, "0:-1", "USD", "2027-01-01"), 400, "InvalidPriceList", "not a decimal between 0 and"},
			{"price past its bound", "/v1/billing/price-lists", "text/csv", header + row(base, "0:1e39", "USD", "2027-01-01"), 400, "InvalidPriceList", "not a decimal between 0 and"},
			{"only other regions", "/v1/billing/price-lists", "text/csv", strings.ReplaceAll(header+row(base, "0:0.008", "USD", "2027-01-01"), "Azure Stack,", "US West,"), 400, "InvalidPriceList", "no Azure Stack rows"},
			{"overlapping version", "/v1/billing/price-lists", "text/csv", strings.ReplaceAll(testPriceListUSD, "0:0.046", "0:0.05"), 400, "OverlappingPriceList", "already covers USD from 2019-12-03"},
			{"reprices finalized", "/v1/billing/price-lists?effective=2026-10-15", "text/csv", testPriceListUSD, 0, "", ""},
			{"agreement currency", "/v1/billing/agreements/contoso", "application/json", `{"currency":"DOLLARS"}`, 400, "InvalidRequestContent", "Unknown currency"},
			{"agreement reseller", "/v1/billing/agreements/tailspin", "application/json", `{"currency":"EUR"}`, 400, "InvalidRequestContent", "is a reseller"},
			{"bad period", "/v1/billing/invoices?period=2026-13", "", "", 400, "InvalidRequestContent", "billing period"},
			{"period not closed", "/v1/billing/periods/2026-11/finalize", "", "", 400, "PeriodNotClosed", ""},
			{"credit a draft", "/v1/billing/invoices/SB-202611-contoso/credit-notes", "application/json", `{"reason":"x","lines":[{"line":1,"amount":"1"}]}`, 400, "InvoiceNotFinal", ""},
			{"book for someone else's customer", "/v1/billing/price-books/contoso/" + W.Proseware.Tenant, "application/json", `{"markupPercent":"10"}`, 400, "InvalidRequestContent", "not one of contoso's customers"},
			{"book below -100%", "/v1/billing/price-books/contoso/default", "application/json", `{"markupPercent":"-150"}`, 400, "InvalidRequestContent", "between -100%"},
			// What the review found: a markup of 1e39 was accepted.
			{"book markup of 1e39", "/v1/billing/price-books/contoso/default", "application/json", `{"markupPercent":"1e39"}`, 400, "InvalidRequestContent", "between -100%"},
			{"book price past its bound", "/v1/billing/price-books/contoso/default", "application/json", `{"markupPercent":"1","prices":{"fab6eb84-500b-4a09-a8ca-7358f8bbaea5":"1e12"}}`, 400, "InvalidRequestContent", "between 0 and"},
			{"book bad meter", "/v1/billing/price-books/contoso/default", "application/json", `{"markupPercent":"1","prices":{"sql":"1"}}`, 400, "InvalidRequestContent", "not a meter ID"},
		}
		before, _ := e.app.Billing.PriceLists(ctx, w.op)
		for _, c := range cases {
			if c.status == 0 {
				continue
			}
			method := "POST"
			switch {
			case strings.HasPrefix(c.path, "/v1/billing/agreements"), strings.HasPrefix(c.path, "/v1/billing/price-books"):
				method = "PUT"
			case strings.HasPrefix(c.path, "/v1/billing/invoices?"):
				method = "GET"
			}
			resp, out := e.raw(method, c.path, e.operator, c.ct, readerOrNil(strings.NewReader(c.body)))
			if resp.StatusCode != c.status || !strings.Contains(out, `"code":"`+c.code+`"`) || !strings.Contains(out, c.contains) {
				t.Errorf("%s: %d %s", c.name, resp.StatusCode, out)
			}
		}
		after, _ := e.app.Billing.PriceLists(ctx, w.op)
		if len(after) != len(before) {
			t.Fatalf("bad input changed the price lists: %d → %d", len(before), len(after))
		}
		// The same file again is accepted as unchanged.
		if resp, out := e.raw("POST", "/v1/billing/price-lists", e.operator, "text/csv", strings.NewReader(testPriceListUSD)); resp.StatusCode != 200 || !strings.Contains(out, `"unchanged":true`) ||
			!strings.Contains(out, `"rowsSkipped":1`) {
			t.Fatalf("re-import: %d %s", resp.StatusCode, out)
		}
		// Once October is final, a price list reaching back into it is refused.
		if _, err := e.app.Billing.Finalize(ctx, w.op, "2026-10"); err != nil {
			t.Fatal(err)
		}
		if resp, out := e.raw("POST", "/v1/billing/price-lists?effective=2026-10-15", e.operator, "text/csv", strings.NewReader(testPriceListUSD)); resp.StatusCode != 400 ||
			!strings.Contains(out, "PriceListRepricesFinalizedPeriod") {
			t.Fatalf("reprice: %d %s", resp.StatusCode, out)
		}
		// Unpriced usage blocks finalization rather than being free.
		w.clk.Set(time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC))
		w.ingest(t, w.contoso, time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), []usageRec{
			{"local-adatum", W.Adatum.Tenant, "190C935E-9ADA-48FF-9AB8-56EA1CF9ADAA", "5", W.Adatum.Subscription, "asp"},
			{"local-adatum", W.Adatum.Tenant, "B03C6AE7-B080-4BFA-84A3-22C800F315C6", "5", W.Adatum.Subscription, "q"}})
		// While November is open, the unpriced usage is Contoso's to see
		// (it would be on Contoso's invoice), not another partner's, and
		// the operator sees whose it is.
		contosoP, northwind := auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "c"}, auth.Principal{Role: auth.RolePartner, PartnerID: "northwind", TokenID: "n"}
		if att, err := e.app.Billing.Attention(ctx, contosoP); err != nil || len(att.Unpriced) != 1 || att.Unpriced[0].PartnerID != "contoso" || len(att.Awaiting) != 0 {
			t.Fatalf("contoso's attention in November: %+v %v", att, err)
		}
		if att, err := e.app.Billing.Attention(ctx, northwind); err != nil || len(att.Unpriced) != 0 {
			t.Fatalf("another partner sees contoso's unpriced usage: %+v %v", att, err)
		}
		if att, err := e.app.Billing.Attention(ctx, w.op); err != nil || len(att.Unpriced) != 1 || att.Unpriced[0].PartnerID != "contoso" {
			t.Fatalf("operator's attention in November: %+v %v", att, err)
		}
		w.clk.Set(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
		resp, out := e.raw("POST", "/v1/billing/periods/2026-11/finalize", e.operator, "", nil)
		if resp.StatusCode != 400 || !strings.Contains(out, "MissingPrices") || !strings.Contains(out, "dc7b6603-f55e-522a-a6ed-ea8470a5efdc") {
			t.Fatalf("unpriced: %d %s", resp.StatusCode, out)
		}
		if sum, err := e.app.Billing.Period(ctx, w.op, "2026-11"); err != nil || sum.Status != "open" || len(sum.Unpriced) != 1 {
			t.Fatalf("period after a refused finalization: %+v %v", sum, err)
		}
		// Past its grace and refused, November awaits the operator; partners
		// are not told about periods, and resellers see nothing here.
		if att, err := e.app.Billing.Attention(ctx, w.op); err != nil || fmt.Sprint(att.Awaiting) != "[2026-11]" {
			t.Fatalf("operator's attention in December: %+v %v", att, err)
		}
		if att, err := e.app.Billing.Attention(ctx, contosoP); err != nil || len(att.Awaiting) != 0 {
			t.Fatalf("a partner is told about periods awaiting finalization: %+v %v", att, err)
		}
		if att, err := e.app.Billing.Attention(ctx, auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "t"}); err != nil || len(att.Unpriced)+len(att.Awaiting) != 0 {
			t.Fatalf("a reseller's attention: %+v %v", att, err)
		}
	})
}

// TestVMSeriesCostTheSame: VMs are billed per vCPU-hour at one rate for every
// series, so equal vCPU-hours from an A-series and a D-series VM cost the same.
func TestVMSeriesCostTheSame(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	w := newBillingWorld(t, "sqlite")
	w.clk.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	day := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	w.ingest(t, w.contoso, day, []usageRec{{"local-adatum", W.Adatum.Tenant, "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", "40", W.Adatum.Subscription, "Standard_A2_v2-vm"}})
	w.ingest(t, w.contoso, day, []usageRec{{"local-litware", W.Litware.Tenant, "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", "40", W.Litware.Subscription, "Standard_D4s_v3-vm"}})
	inv, err := w.env.app.Billing.Invoice(ctx, w.op, "SB-202611-contoso")
	if err != nil {
		t.Fatal(err)
	}
	amounts := map[string]money.Quantity{}
	for _, sec := range inv.Sections {
		for _, l := range sec.Lines {
			amounts[l.CustomerName] = amounts[l.CustomerName].Add(l.Amount)
		}
	}
	if !amounts["Adatum"].Equal(amounts["Litware"]) || amounts["Adatum"].IsZero() {
		t.Fatalf("equal vCPU-hours priced differently: %v", amounts)
	}
}

// readerOrNil keeps a nil *strings.Reader from becoming a non-nil io.Reader.
func readerOrNil(r *strings.Reader) io.Reader {
	if r == nil {
		return nil
	}
	return r
}

// TestBillingCLI drives the billing commands against a served commerce.
func TestBillingCLI(t *testing.T) {
	t.Parallel()
	w := newBillingWorld(t, "sqlite")
	w.clk.Set(time.Date(2026, 11, 2, 1, 0, 0, 0, time.UTC))
	op := map[string]string{"STACKBILL_URL": w.env.url, "STACKBILL_TOKEN": w.env.operator}
	sample := filepath.Join(t.TempDir(), "sample.csv")
	r := runCLI(t, op, "billing", "price-list", "sample")
	if r.code != 0 || !strings.Contains(r.stdout, "Azure Stack,1 Hour,0:0.008") {
		t.Fatalf("sample: %+v", r)
	}
	_ = os.WriteFile(sample, []byte(r.stdout), 0o644)
	if r := runCLI(t, op, "billing", "price-list", "import", "--effective", "2027-01-01", sample); r.code != 0 || !strings.Contains(r.stdout, "6 kept, 0 skipped") {
		t.Fatalf("import: %+v", r)
	}
	if r := runCLI(t, op, "billing", "period", "finalize", "2026-10"); r.code != 0 || !strings.Contains(r.stdout, "SB-202610-contoso") {
		t.Fatalf("finalize: %+v", r)
	}
	contoso := map[string]string{"STACKBILL_URL": w.env.url, "STACKBILL_TOKEN": w.env.tokens["contoso"]}
	if r := runCLI(t, contoso, "billing", "invoice", "list", "--period", "2026-10"); r.code != 0 || !regexp.MustCompile(`SB-202610-contoso\s+Contoso\s+contoso\s+final`).MatchString(r.stdout) {
		t.Fatalf("invoice list: %+v", r)
	}
	if r := runCLI(t, contoso, "billing", "invoice", "get", "--format", "html", "SB-202610-contoso"); r.code != 0 || !strings.Contains(r.stdout, "<h1>Invoice SB-202610-contoso") {
		t.Fatalf("invoice html: %+v", r)
	}
	out := filepath.Join(t.TempDir(), "recon.csv")
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { w.env.app.RunBilling(ctx, false); close(done) }()
	r = runCLI(t, contoso, "billing", "export", "--period", "2026-10", "--out", out)
	cancel()
	<-done
	data, _ := os.ReadFile(out)
	if r.code != 0 || !strings.HasPrefix(string(data), "PartnerId,PartnerName") {
		t.Fatalf("export: %+v", r)
	}
	if r := runCLI(t, contoso, "billing", "price-book", "put", "--owner", "contoso", "--markup", "20", "--price", strings.ToLower("CBCFEF9A-B91F-4597-A4D3-01FE334BED82")+"=0.0001"); r.code != 0 {
		t.Fatalf("price book: %+v", r)
	}
	if r := runCLI(t, contoso, "billing", "statements", "--owner", "contoso", "--period", "2026-10"); r.code != 0 || !strings.Contains(r.stdout, "Litware") {
		t.Fatalf("statements: %+v", r)
	}
	tail := map[string]string{"STACKBILL_URL": w.env.url, "STACKBILL_TOKEN": w.env.tokens["tailspin"]}
	if r := runCLI(t, tail, "billing", "export", "--partner", "fabrikam", "--period", "2026-10"); r.code == 0 || !strings.Contains(r.stderr, "AuthorizationFailed") {
		t.Fatalf("reseller export: %+v", r)
	}
	// Every read command prints a table, JSON or CSV with -o, and refuses
	// any other format before it asks the server.
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string // in the table
	}{
		{contoso, []string{"billing", "invoice", "get", "SB-202610-contoso"}, "SB-202610-contoso"},
		{contoso, []string{"billing", "statements", "--owner", "contoso", "--period", "2026-10"}, "Litware"},
		{contoso, []string{"billing", "price-book", "list", "--owner", "contoso"}, "20 %"},
		{op, []string{"billing", "price-list", "list"}, "USD"},
		{op, []string{"billing", "price-list", "show", "1"}, "Base VM"},
		{op, []string{"billing", "period", "show", "2026-10"}, "SB-202610-contoso"},
		{op, []string{"directory", "partner", "get", "contoso"}, "Contoso"},
	} {
		name := strings.Join(c.args, " ")
		if r := runCLI(t, c.env, c.args...); r.code != 0 || !strings.Contains(r.stdout, c.want) {
			t.Errorf("%s: %d %q %q", name, r.code, r.stdout, r.stderr)
		}
		r := runCLI(t, c.env, append(c.args, "-o", "json")...)
		if r.code != 0 || !json.Valid([]byte(r.stdout)) {
			t.Errorf("%s -o json: %d, valid JSON %v: %.200q %q", name, r.code, json.Valid([]byte(r.stdout)), r.stdout, r.stderr)
		}
		r = runCLI(t, c.env, append(c.args, "-o", "csv")...)
		if recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll(); r.code != 0 || err != nil || len(recs) < 2 {
			t.Errorf("%s -o csv: %d, %v, %d records: %.200q", name, r.code, err, len(recs), r.stdout)
		}
		if r := runCLI(t, c.env, append(c.args, "-o", "xml")...); r.code != 2 || !strings.Contains(r.stderr, "-o takes table, json or csv") {
			t.Errorf("%s -o xml: %d %q", name, r.code, r.stderr)
		}
	}
}
