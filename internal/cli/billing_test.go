package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/services/azurestack/mgmt/2017-06-01/azurestack"
	"github.com/Azure/go-autorest/autorest/to"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/wire"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// testPriceList is the sample list with a tier boundary on Base VM and an
// included quantity on table storage, in USD; the EUR list bills fabrikam.
const testPriceListUSD = `MeterId,MeterName,MeterCategory,MeterSubCategory,MeterRegion,Unit,MeterRates,IncludedQuantity,Currency,EffectiveDate
9c23489b-c01c-5893-b898-412bd252b0db,1 Core,Azure Stack Hub,Base VM,Azure Stack,1 Hour,0:0.008;500:0.0065,0,USD,2019-12-03
fb8c0713-ea20-40bf-901f-5560fd3f6330,1 Core,Azure Stack Hub,Windows VM,Azure Stack,1 Hour,0:0.046,0,USD,2019-12-03
190c935e-9ada-48ff-9ab8-56ea1cf9adaa,1 Core,Azure Stack Hub,App Service,Azure Stack,1 Hour,0:0.056,0,USD,2019-12-03
8767aeb3-6909-4db2-9927-3f51e9a9085e,Block Blob,Storage,Block Blob,Azure Stack,1 GB/Month,0:0.006,0,USD,2019-12-03
96f33ea2-68e0-5f55-9501-0be6f9fa9c98,Tables,Storage,Tables,Azure Stack,1 GB/Month,0:0.018,1,USD,2019-12-03
8767aeb3-6909-4db2-9927-3f51e9a9085e,Block Blob,Storage,Block Blob,US West,1 GB/Month,0:0.02,0,USD,2019-12-03
`

const testPriceListEUR = `Id,Name,Category,Subcategory,Region,Unit,Rates,IncludedQuantity,Currency,EffectiveDate
9c23489b-c01c-5893-b898-412bd252b0db,1 Core,Azure Stack Hub,Base VM,Azure Stack Hub,1 Hour,"{""0"": 0.0074, ""500"": 0.006}",0,EUR,2019-12-03
190c935e-9ada-48ff-9ab8-56ea1cf9adaa,1 Core,Azure Stack Hub,App Service,Azure Stack Hub,1 Hour,0:0.052,0,EUR,2019-12-03
96f33ea2-68e0-5f55-9501-0be6f9fa9c98,Tables,Storage,Tables,Azure Stack Hub,1 GB/Month,0:0.0166,1,EUR,2019-12-03
`

// billingWorld is a month of usage from two stamps: contoso's (Adatum
// mapped all month, Litware mapped from the 16th, one tenant never
// registered, a local-only SQL meter) and fabrikam's (Proseware through
// reseller tailspin, Relecloud through wingtip).
type billingWorld struct {
	env        *testEnv
	clk        *clock.Clock
	op         auth.Principal
	contoso    bridgeStamp
	fabrikam   bridgeStamp
	subX       string
	replacer   *strings.Replacer
	usageTotal map[string]money.Quantity // billed quantity per charged subscription and billing meter
}

type bridgeStamp struct {
	uid, cloud string
	p          auth.Principal
}

func newBillingWorld(t *testing.T, backend string) *billingWorld {
	ctx := t.Context()
	t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.Manual(t0)
	env := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
	w := &billingWorld{env: env, clk: clk, op: auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, usageTotal: map[string]money.Quantity{}}
	register := func(partner, defaultSub, name string) bridgeStamp {
		stack := newStackApp(t, clk)
		tok, err := bridge.RegistrationToken(ctx, stack.DB, "PayAsYouUse", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		loc := "global"
		if _, err := env.regClient(defaultSub, env.tokens[partner]).CreateOrUpdate(ctx, "azurestack", name, azurestack.RegistrationParameter{Location: &loc,
			RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: &tok}}); err != nil {
			t.Fatal(err)
		}
		reg, err := env.app.Registrations.Approve(ctx, w.op, regKey(defaultSub, "azurestack", name), true)
		if err != nil {
			t.Fatal(err)
		}
		return bridgeStamp{uid: reg.UID, cloud: reg.CloudID, p: auth.Principal{Role: auth.RoleBridge, RegistrationUID: reg.UID, TokenID: "b"}}
	}
	w.contoso = register("contoso", W.ContosoDefault, "contoso-stamp")
	w.fabrikam = register("fabrikam", W.FabrikamDefault, "fabrikam-stamp")
	w.replacer = strings.NewReplacer(w.contoso.uid, "<contoso-registration-uid>", w.contoso.cloud, "<contoso-cloud-id>",
		w.fabrikam.uid, "<fabrikam-registration-uid>", w.fabrikam.cloud, "<fabrikam-cloud-id>")
	mapTenant := func(partner, defaultSub, name string, c storetest.Customer) {
		if _, err := env.csClient(defaultSub, env.tokens[partner]).Create(ctx, "azurestack", name, c.Subscription, azurestack.CustomerSubscription{
			CustomerSubscriptionProperties: &azurestack.CustomerSubscriptionProperties{TenantID: to.StringPtr(c.Tenant)}}); err != nil {
			t.Fatal(err)
		}
	}
	mapTenant("contoso", W.ContosoDefault, "contoso-stamp", W.Adatum)
	mapTenant("fabrikam", W.FabrikamDefault, "fabrikam-stamp", W.Proseware)
	mapTenant("fabrikam", W.FabrikamDefault, "fabrikam-stamp", W.Relecloud)
	w.subX = "99999999-0000-4000-8000-0000000000aa"
	tenantX := "99999999-0000-4000-8000-0000000000bb"
	for d := 0; d < 31; d++ {
		day := t0.AddDate(0, 0, d)
		if d == 15 {
			clk.Set(day)
			mapTenant("contoso", W.ContosoDefault, "contoso-stamp", W.Litware)
		}
		litwareCharged := W.ContosoDefault
		if d >= 15 {
			litwareCharged = W.Litware.Subscription
		}
		w.ingest(t, w.contoso, day, []usageRec{
			{"local-adatum", W.Adatum.Tenant, simulate.MeterBaseVM, "96", W.Adatum.Subscription, "vm-a2"},
			{"local-adatum", W.Adatum.Tenant, simulate.MeterWindowsVM, "48", W.Adatum.Subscription, "vm-a2"},
			{"local-adatum", W.Adatum.Tenant, simulate.MeterBlockBlob, "240", W.Adatum.Subscription, "sa1"},
			{"local-litware", W.Litware.Tenant, simulate.MeterBaseVM, "24", litwareCharged, "vm-l1"},
			{"local-litware", W.Litware.Tenant, simulate.MeterSQLDatabase, "1000", litwareCharged, "db1"},
			{w.subX, tenantX, simulate.MeterBaseVM, "10", W.ContosoDefault, "vm-x"},
		})
		w.ingest(t, w.fabrikam, day, []usageRec{
			{"local-proseware", W.Proseware.Tenant, simulate.MeterBaseVM, "48", W.Proseware.Subscription, "vm-p1"},
			{"local-proseware", W.Proseware.Tenant, simulate.MeterTableCapacity, "24", W.Proseware.Subscription, "sa-p"},
			{"local-relecloud", W.Relecloud.Tenant, simulate.MeterAppService, "8", W.Relecloud.Subscription, "asp-r"},
		})
	}
	for _, pl := range []string{testPriceListUSD, testPriceListEUR} {
		if _, err := env.app.Billing.ImportPriceList(ctx, w.op, "test", []byte(pl), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.app.Billing.SetAgreement(ctx, w.op, billing.Agreement{PartnerID: "fabrikam", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	return w
}

type usageRec struct{ localSub, tenant, meterID, qty, charged, resource string }

// ingest posts one record per usage row for the day's hour 12, as the bridge does.
func (w *billingWorld) ingest(t *testing.T, st bridgeStamp, day time.Time, recs []usageRec) {
	t.Helper()
	var b wire.Batch
	b.CloudID = st.cloud
	hour := day.Add(12 * time.Hour)
	// Usage sent later is reported later: a record is its stack's for one
	// reported hour, and its ID says which.
	// A stack forwards an hour after it closes: the clock moves on to
	// then if it is earlier (commerce holds usage from the future).
	reported := hour.Add(time.Hour)
	if now := w.clk.Now(); now.Before(reported) {
		w.clk.Set(reported)
	} else {
		reported = clock.HourStart(now)
	}
	for _, r := range recs {
		rec := wire.Record{SubscriptionID: r.localSub, TenantID: r.tenant, MeterID: r.meterID,
			Quantity: money.MustQuantity(r.qty), UsageHour: hour, ReportedHour: reported,
			ResourceURI: "/subscriptions/" + r.localSub + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/" + r.resource, Location: "local",
			Tags: json.RawMessage(`{"costCenter":"` + r.resource + `"}`)}
		rec.SetID(st.cloud)
		b.Records = append(b.Records, rec)
	}
	res, err := w.env.app.Ingestor.Ingest(context.Background(), st.p, b)
	if err != nil || res.Accepted != len(recs) {
		t.Fatalf("ingest %v: %+v %v", day, res, err)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "billing", name)
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli -run TestBillingGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}

func (w *billingWorld) goldenJSON(t *testing.T, name string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, name, []byte(w.replacer.Replace(string(b))+"\n"))
}

// TestBillingGolden rates a known month on both engines: invoices,
// reconciliation files and customer statements match golden files to the
// cent; money is conserved from usage to lines to reconciliation rows;
// finalization is idempotent and immutable; late usage lands on the next
// invoice at its original usage date; credit notes correct without editing.
func TestBillingGolden(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		w := newBillingWorld(t, backend)
		bs := w.env.app.Billing
		contoso := auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "c"}

		// Draft: during the month and within the grace period.
		w.clk.Set(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
		draft, err := bs.Invoice(ctx, contoso, "SB-202610-contoso")
		if err != nil || draft.Status != "draft" {
			t.Fatalf("draft %+v %v", draft.Status, err)
		}
		if _, err := bs.Finalize(ctx, w.op, "2026-10"); !hasCode(err, "PeriodNotClosed") {
			t.Fatalf("finalize within grace: %v", err)
		}

		// Hand-computed amounts, independent of the rater.
		// Adatum Base VM: 96 × 31 = 2976 vCPU-h; 500 at 0.008 + 2476 at 0.0065 = 4 + 16.094.
		// Adatum Windows VM: 48 × 31 × 0.046 = 68.448. Block blob: 240 × 31 GB-h / 730 × 0.006 = 0.061150684...
		// Litware from the 16th: 24 × 16 × 0.008 = 3.072. Default sub: Litware 15 days + tenant X 31 days of
		// Base VM = 24×15 + 10×31 = 670: 500 × 0.008 + 170 × 0.0065 = 5.105 → 5.11 (half away from zero).
		wantContoso := money.MustQuantity("4.00").Add(money.MustQuantity("16.09")).Add(money.MustQuantity("68.45")).
			Add(money.MustQuantity("0.06")).Add(money.MustQuantity("3.07")).Add(money.MustQuantity("4.00")).Add(money.MustQuantity("1.11"))
		if !draft.Total.Equal(wantContoso) {
			t.Errorf("contoso October total %s, want %s", draft.Total, wantContoso)
		}

		// Chargeback, set before October closes (a finalized period keeps the
		// statements it was finalized with): contoso marks up 20% and charges SQL databases; fabrikam
		// prices tailspin at 10% over cost; tailspin marks up 25%.
		sqlKey := strings.ToLower(simulate.MeterSQLDatabase)
		books := []billing.PriceBook{
			{Owner: "contoso", Target: "default", MarkupPercent: money.MustQuantity("20"), Prices: map[string]money.Quantity{sqlKey: money.MustQuantity("0.0001")}},
			{Owner: "contoso", Target: W.Adatum.Tenant, MarkupPercent: money.MustQuantity("15")},
			{Owner: "fabrikam", Target: "tailspin", MarkupPercent: money.MustQuantity("10")},
			{Owner: "tailspin", Target: "default", MarkupPercent: money.MustQuantity("25")},
		}
		for _, b := range books {
			p := auth.Principal{Role: auth.RolePartner, PartnerID: b.Owner, TokenID: "x"}
			if b.Owner == "tailspin" {
				p.Role = auth.RoleReseller
			}
			if _, err := bs.PutPriceBook(ctx, p, b); err != nil {
				t.Fatal(err)
			}
		}
		w.clk.Set(time.Date(2026, 11, 2, 1, 0, 0, 0, time.UTC))
		fin, err := bs.Finalize(ctx, w.op, "2026-10")
		if err != nil || fin.Already || len(fin.Invoices) != 2 {
			t.Fatalf("finalize: %+v %v", fin, err)
		}
		again, err := bs.Finalize(ctx, w.op, "2026-10")
		if err != nil || !again.Already || fmt.Sprint(again.Invoices) != fmt.Sprint(fin.Invoices) {
			t.Fatalf("finalize again: %+v %v", again, err)
		}
		oct, err := bs.Invoice(ctx, contoso, "SB-202610-contoso")
		if err != nil || oct.Status != "final" || !oct.Total.Equal(draft.Total) {
			t.Fatalf("final %+v %v", oct.Total, err)
		}

		// Late usage for Oct 20 arrives after finalization, and November's usage.
		w.clk.Set(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC))
		w.ingest(t, w.contoso, time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC), []usageRec{
			{"local-adatum", W.Adatum.Tenant, simulate.MeterBaseVM, "100", W.Adatum.Subscription, "vm-late"}})
		for d := 0; d < 2; d++ {
			w.ingest(t, w.contoso, time.Date(2026, 11, 1+d, 0, 0, 0, 0, time.UTC), []usageRec{
				{"local-adatum", W.Adatum.Tenant, simulate.MeterBaseVM, "96", W.Adatum.Subscription, "vm-a2"}})
		}
		octAfter, _ := bs.Invoice(ctx, contoso, "SB-202610-contoso")
		if !octAfter.Total.Equal(oct.Total) {
			t.Fatalf("a finalized invoice changed: %s → %s", oct.Total, octAfter.Total)
		}
		nov, err := bs.Invoice(ctx, contoso, "SB-202611-contoso")
		if err != nil {
			t.Fatal(err)
		}
		// Late: 100 vCPU-h continuing October's tier (past 500) at 0.0065 = 0.65; November: 192 at 0.008 = 1.536.
		if want := money.MustQuantity("2.19"); !nov.Total.Equal(want) {
			t.Errorf("November draft %s, want %s", nov.Total, want)
		}
		w.clk.Set(time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC))
		if _, err := bs.Finalize(ctx, w.op, "2026-11"); err != nil {
			t.Fatal(err)
		}
		nov, _ = bs.Invoice(ctx, contoso, "SB-202611-contoso")

		// A credit note corrects October without editing it.
		cn, err := bs.CreateCreditNote(ctx, w.op, "SB-202610-contoso", billing.CreditRequest{Reason: "Windows licence was BYOL for Adatum",
			Lines: []billing.CreditLine{{Line: windowsLine(t, oct), Amount: money.MustQuantity("68.45")}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bs.CreateCreditNote(ctx, w.op, "SB-202610-contoso", billing.CreditRequest{Reason: "again",
			Lines: []billing.CreditLine{{Line: windowsLine(t, oct), Amount: money.MustQuantity("0.01")}}}); !hasCode(err, "InvalidRequestContent") && !hasCode(err, "InvalidRequest") {
			t.Fatalf("over-credit: %v", err)
		}
		octCredited, _ := bs.Invoice(ctx, contoso, "SB-202610-contoso")
		if !octCredited.Total.Equal(oct.Total) || !octCredited.Balance.Equal(oct.Total.Sub(cn.Total)) || len(octCredited.CreditNotes) != 1 {
			t.Fatalf("credited invoice: total %s balance %s", octCredited.Total, octCredited.Balance)
		}

		fab := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "f"}
		tail := auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "s"}
		fabOct, err := bs.Invoice(ctx, fab, "SB-202610-fabrikam")
		if err != nil || len(fabOct.Sections) != 2 || fabOct.Currency != "EUR" {
			t.Fatalf("fabrikam invoice: %d sections, %s, %v", len(fabOct.Sections), fabOct.Currency, err)
		}
		stC, err := bs.Statements(ctx, contoso, "contoso", "2026-10")
		if err != nil {
			t.Fatal(err)
		}
		stF, err := bs.Statements(ctx, fab, "fabrikam", "2026-10")
		if err != nil {
			t.Fatal(err)
		}
		stT, err := bs.Statements(ctx, tail, "tailspin", "2026-10")
		if err != nil {
			t.Fatal(err)
		}
		// Tailspin's cost is fabrikam's price to it, which is what fabrikam's statement charges it.
		if len(stT) != 1 || len(stF) != 2 || !stT[0].Cost.Equal(accountAmount(stF, "tailspin")) {
			t.Fatalf("tailspin cost %v vs fabrikam's statement to it", stT)
		}
		// A price book changed after October closed changes no statement of
		// October, which finalization stored.
		if _, err := bs.PutPriceBook(ctx, contoso, billing.PriceBook{Owner: "contoso", Target: "default", MarkupPercent: money.MustQuantity("90")}); err != nil {
			t.Fatal(err)
		}
		if again, _ := bs.Statements(ctx, contoso, "contoso", "2026-10"); fmt.Sprint(again) != fmt.Sprint(stC) {
			t.Fatalf("October's statements changed with a later price book")
		}
		if _, err := bs.PutPriceBook(ctx, contoso, books[0]); err != nil {
			t.Fatal(err)
		}

		// Reconciliation rows add up to their invoices, to the cent.
		for _, inv := range []billing.Invoice{oct, nov, fabOct} {
			var buf bytes.Buffer
			// The phases an export reports: a finalized period's stored file
			// is copied; an open one is read (ordered), then written.
			var phases []string
			var written int64
			progress := func(phase string, n int64) {
				if len(phases) == 0 || phases[len(phases)-1] != phase {
					phases = append(phases, phase)
				}
				written = n
			}
			if err := bs.Reconciliation(ctx, w.op, inv.PartnerID, inv.Period, &buf, progress); err != nil {
				t.Fatal(err)
			}
			if inv.FinalizedAt == nil || fmt.Sprint(phases) != fmt.Sprint([]string{billing.PhaseCopying}) || written != 0 {
				t.Errorf("%s (finalized at %v): export phases %v (last count %d), want [copying]", inv.Number, inv.FinalizedAt, phases, written)
			}
			sum := reconTotal(t, buf.Bytes())
			if !sum.Equal(inv.Total) {
				t.Errorf("%s: reconciliation rows sum to %s, invoice total %s", inv.Number, sum, inv.Total)
			}
			golden(t, inv.Number+"-recon.csv", []byte(w.replacer.Replace(buf.String())))
		}
		// An open period is rated as it is written: read (and ordered), then
		// written, the last count being every record of the partner's.
		{
			var phases []string
			var written int64
			if err := bs.Reconciliation(ctx, w.op, "contoso", "2026-12", io.Discard, func(phase string, n int64) {
				if len(phases) == 0 || phases[len(phases)-1] != phase {
					phases = append(phases, phase)
				}
				written = n
			}); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(phases) != fmt.Sprint([]string{billing.PhaseReading, billing.PhaseWriting}) {
				t.Errorf("open period's export phases %v (last count %d), want [reading writing]", phases, written)
			}
		}
		// Every line's amount is its quantity times its price, rounded once.
		for _, inv := range []billing.Invoice{oct, nov, fabOct} {
			var lines money.Quantity
			for _, sec := range inv.Sections {
				for _, l := range sec.Lines {
					lines = lines.Add(l.Amount)
					minor, _ := billing.MinorUnits(inv.Currency)
					if l.Unit == "1 Hour" && !l.Amount.Equal(l.Quantity.Mul(l.UnitPrice).Round(minor)) {
						t.Errorf("%s line %d: %s × %s ≠ %s", inv.Number, l.No, l.Quantity, l.UnitPrice, l.Amount)
					}
				}
			}
			if !lines.Equal(inv.Total) {
				t.Errorf("%s: lines %s ≠ total %s", inv.Number, lines, inv.Total)
			}
			w.goldenJSON(t, inv.Number+".json", inv)
			var csvBuf, htmlBuf bytes.Buffer
			if err := billing.WriteInvoiceCSV(&csvBuf, inv); err != nil {
				t.Fatal(err)
			}
			golden(t, inv.Number+".csv", []byte(w.replacer.Replace(csvBuf.String())))
			if err := billing.WriteInvoiceHTML(&htmlBuf, inv); err != nil || !strings.Contains(htmlBuf.String(), inv.Total.StringFixed(2)) {
				t.Fatalf("html: %v", err)
			}
		}
		// A background export produces the same file as the streamed one.
		job, err := bs.StartExport(ctx, contoso, "contoso", "2026-10")
		if err != nil {
			t.Fatal(err)
		}
		if err := bs.RunExports(ctx); err != nil {
			t.Fatal(err)
		}
		if job, err = bs.Export(ctx, contoso, job.ID); err != nil || job.Status != "succeeded" || job.RowsDone != job.RowsTotal || job.RowsTotal == 0 {
			t.Fatalf("export job %+v %v", job, err)
		}
		var direct, exported bytes.Buffer
		_ = bs.Reconciliation(ctx, contoso, "contoso", "2026-10", &direct, nil)
		if err := bs.ExportFile(ctx, contoso, job.ID, &exported); err != nil || !bytes.Equal(direct.Bytes(), exported.Bytes()) {
			t.Fatalf("exported file differs (%v)", err)
		}
		if _, err := bs.Export(ctx, auth.Principal{Role: auth.RolePartner, PartnerID: "northwind"}, job.ID); !hasCode(err, "ExportNotFound") {
			t.Fatalf("another partner reads the export: %v", err)
		}
		w.goldenJSON(t, "SB-202610-contoso-credited.json", octCredited)
		w.goldenJSON(t, "statements-contoso-202610.json", stC)
		w.goldenJSON(t, "statements-fabrikam-202610.json", stF)
		w.goldenJSON(t, "statements-tailspin-202610.json", stT)

		// A finalized period's reconciliation is rebuilt from the directory
		// it was finalized with: renaming the customer afterwards changes
		// nothing in October's file.
		var before, after bytes.Buffer
		if err := bs.Reconciliation(ctx, w.op, "contoso", "2026-10", &before, nil); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(before.String(), ",Adatum,") {
			t.Fatal("October's reconciliation does not name Adatum")
		}
		if _, _, err := w.env.app.Directory.PutCustomer(ctx, w.op, directory.Customer{TenantID: W.Adatum.Tenant, Name: "Adatum Renamed", Partner: "contoso"}); err != nil {
			t.Fatal(err)
		}
		if err := bs.Reconciliation(ctx, w.op, "contoso", "2026-10", &after, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before.Bytes(), after.Bytes()) {
			t.Fatalf("a finalized period's reconciliation changed with the directory:\n%s", after.String())
		}
	})
}

func windowsLine(t *testing.T, inv billing.Invoice) int {
	for _, sec := range inv.Sections {
		for _, l := range sec.Lines {
			if l.MeterSubCategory == "Windows VM" && l.CustomerName == "Adatum" {
				return l.No
			}
		}
	}
	t.Fatal("no Adatum Windows VM line")
	return 0
}

func accountAmount(sts []billing.Statement, account string) money.Quantity {
	for _, s := range sts {
		if s.Account == account {
			return s.Amount
		}
	}
	return money.Zero
}

func reconTotal(t *testing.T, data []byte) money.Quantity {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := -1
	for i, h := range rows[0] {
		if h == "BillingPreTaxTotal" {
			col = i
		}
	}
	sum := money.Zero
	for _, r := range rows[1:] {
		sum = sum.Add(money.MustQuantity(r[col]))
	}
	return sum
}

func hasCode(err error, code string) bool {
	return err != nil && strings.Contains(fmt.Sprintf("%+v", err), code)
}
