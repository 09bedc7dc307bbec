package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/wire"
)

// TestFinalizedReconciliationCountsLateUsageOnce: finalize March, send late
// March usage, finalize April. April's invoice bills the late usage as
// LateUsage lines that continue March's tiers, but the finalized April
// reconciliation file counted April's own LateUsage lines as already billed
// before April and priced them again past the tier: the invoice said 151.83
// and the file's rows 149.74.
func TestFinalizedReconciliationCountsLateUsageOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		clk := clock.Manual(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
		e := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		if _, err := e.app.Billing.ImportPriceList(ctx, op, "tiers", []byte(testPriceListUSD), time.Time{}); err != nil {
			t.Fatal(err)
		}
		e.createRegistration(W.ContosoDefault, "azurestack", "stamp", registration.PayAsYouUse, true)
		reg, _ := e.app.Registrations.Get(ctx, op, regKey(W.ContosoDefault, "azurestack", "stamp"))
		bp := auth.Principal{Role: auth.RoleBridge, RegistrationUID: reg.UID, TokenID: "b"}
		sub := randomGUID()
		send := func(usage time.Time, qty string, vm string) {
			t.Helper()
			if now := clk.Now(); now.Before(usage.Add(time.Hour)) {
				clk.Set(usage.Add(time.Hour))
			}
			r := wire.Record{SubscriptionID: sub, TenantID: randomGUID(), MeterID: simulate.MeterBaseVM, Quantity: money.MustQuantity(qty),
				UsageHour: usage, ReportedHour: clock.HourStart(clk.Now()), ResourceURI: "/r/" + vm, Location: "local"}
			r.SetID(reg.CloudID)
			if res, err := e.app.Ingestor.Ingest(ctx, bp, wire.Batch{CloudID: reg.CloudID, Records: []wire.Record{r}}); err != nil || res.Accepted != 1 {
				t.Fatalf("ingest: %+v %v", res, err)
			}
		}
		// March: 400 vCPU-hours (the first tier runs to 500).
		send(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), "400", "a")
		clk.Set(time.Date(2026, 4, 2, 1, 0, 0, 0, time.UTC))
		if _, err := e.app.Billing.Finalize(ctx, op, "2026-03"); err != nil {
			t.Fatal(err)
		}
		// Late March usage, 200, across the tier boundary; and April's own.
		send(time.Date(2026, 3, 31, 22, 0, 0, 0, time.UTC), "200", "b")
		send(time.Date(2026, 4, 15, 12, 0, 0, 0, time.UTC), "50", "a")
		recon := func() string {
			t.Helper()
			resp, body := e.raw("GET", "/v1/billing/reconciliation?partner=contoso&period=2026-04", e.tokens["contoso"], "", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("reconciliation: %d %s", resp.StatusCode, body)
			}
			return body
		}
		draft := recon()
		clk.Set(time.Date(2026, 5, 2, 1, 0, 0, 0, time.UTC))
		if _, err := e.app.Billing.Finalize(ctx, op, "2026-04"); err != nil {
			t.Fatal(err)
		}
		inv, err := e.app.Billing.Invoice(ctx, op, "SB-202604-contoso")
		if err != nil {
			t.Fatal(err)
		}
		// 100 late at 0.008 and 100 at 0.0065 (continuing March's 400),
		// then April's 50 at 0.008.
		if inv.Total.String() != "1.85" {
			t.Fatalf("April's invoice: %s, want 1.85 (0.80 + 0.65 late, 0.40 own)", inv.Total)
		}
		final := recon()
		for name, file := range map[string]string{"draft": draft, "finalized": final} {
			if sum := reconTotal(t, []byte(file)); !sum.Equal(inv.Total) {
				t.Errorf("the %s reconciliation file's rows sum to %s; the invoice is %s", name, sum, inv.Total)
			}
		}
		if final != draft {
			t.Errorf("finalizing changed the reconciliation file:\n%s\nwas\n%s", final, draft)
		}
		resp, body := e.raw("POST", "/v1/billing/exports", e.tokens["contoso"], "application/json", strings.NewReader(`{"partner":"contoso","period":"2026-04"}`))
		var job struct {
			ID string `json:"id"`
		}
		if resp.StatusCode != 202 || json.Unmarshal([]byte(body), &job) != nil {
			t.Fatalf("export: %d %s", resp.StatusCode, body)
		}
		if err := e.app.Billing.RunExports(ctx); err != nil {
			t.Fatal(err)
		}
		if _, file := e.raw("GET", "/v1/billing/exports/"+job.ID+"/file", e.tokens["contoso"], "", nil); file != final {
			t.Fatalf("the exported file differs from the streamed one")
		}
		// stackbill billing verify finds every view in agreement, and then
		// the difference an edit behind stackbill's back makes.
		if res := runCLI(t, nil, "billing", "verify", "--db", e.dsn); res.code != 0 || !strings.Contains(res.stdout, "ok: every view agrees") {
			t.Fatalf("billing verify: %d %s %s", res.code, res.stdout, res.stderr)
		}
		if _, err := tamperExec(t, e, `UPDATE invoice_lines SET amount = '0.66' WHERE invoice_number = 'SB-202604-contoso' AND amount = '0.65'`); err != nil {
			t.Fatal(err)
		}
		res := runCLI(t, nil, "billing", "verify", "--db", e.dsn, "--period", "2026-04")
		if res.code == 0 || !strings.Contains(res.stdout, "DIFFERS: 2026-04 contoso: invoice total = Σ stored invoice lines [SB-202604-contoso]: want 1.85, got 1.86") {
			t.Fatalf("billing verify after an edit: %d %s", res.code, res.stdout)
		}
		_ = fmt.Sprint
	})
}

// TestPartnerCenterCloseRule: with --invoice-grace 0 a period closes as its
// month ends, and usage commerce receives after that goes on the next
// invoice as LateUsage, however late finalization runs; the draft shows so
// from the close, and the invoice states the rule.
func TestPartnerCenterCloseRule(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		clk := clock.Manual(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC))
		grace := time.Duration(0)
		e := newTestEnv(t, backend, func(o *Options) { o.Clock, o.InvoiceGrace = clk, &grace })
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		if _, err := e.app.Billing.ImportPriceList(ctx, op, "tiers", []byte(testPriceListUSD), time.Time{}); err != nil {
			t.Fatal(err)
		}
		e.createRegistration(W.ContosoDefault, "azurestack", "stamp", registration.PayAsYouUse, true)
		reg, _ := e.app.Registrations.Get(ctx, op, regKey(W.ContosoDefault, "azurestack", "stamp"))
		bp := auth.Principal{Role: auth.RoleBridge, RegistrationUID: reg.UID, TokenID: "b"}
		send := func(usage, received time.Time, qty string) {
			t.Helper()
			clk.Set(received)
			r := wire.Record{SubscriptionID: randomGUID(), TenantID: randomGUID(), MeterID: simulate.MeterBaseVM, Quantity: money.MustQuantity(qty),
				UsageHour: usage, ReportedHour: clock.HourStart(received), ResourceURI: "/r/a", Location: "local"}
			r.SetID(reg.CloudID)
			if res, err := e.app.Ingestor.Ingest(ctx, bp, wire.Batch{CloudID: reg.CloudID, Records: []wire.Record{r}}); err != nil || res.Accepted != 1 {
				t.Fatalf("ingest: %+v %v", res, err)
			}
		}
		invoice := func(number string) billing.Invoice {
			t.Helper()
			inv, err := e.app.Billing.Invoice(ctx, op, number)
			if err != nil {
				t.Fatal(err)
			}
			return inv
		}
		send(time.Date(2026, 10, 15, 12, 0, 0, 0, time.UTC), time.Date(2026, 10, 15, 13, 5, 0, 0, time.UTC), "100")
		// Usage of October's last hour, received five minutes after the close.
		send(time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 0, 5, 0, 0, time.UTC), "50")
		draft := invoice("SB-202610-contoso")
		if !draft.Total.Equal(money.MustQuantity("0.80")) || !strings.Contains(draft.LateUsageRule, "as the month ends, as Partner Center closes a period") ||
			!strings.Contains(draft.LateUsageRule, "2026-11-01T00:00:00Z") {
			t.Fatalf("October's draft after the close: %s, rule %q; want 0.80 (100 × 0.008) under Partner Center's rule", draft.Total, draft.LateUsageRule)
		}
		clk.Set(time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)) // finalization runs hours after the close
		if _, err := e.app.Billing.Finalize(ctx, op, "2026-10"); err != nil {
			t.Fatal(err)
		}
		if oct := invoice("SB-202610-contoso"); !oct.Total.Equal(money.MustQuantity("0.80")) || oct.LateUsageRule != draft.LateUsageRule {
			t.Fatalf("October finalized: %s, rule %q; want the draft's 0.80 and rule", oct.Total, oct.LateUsageRule)
		}
		nov := invoice("SB-202611-contoso")
		if !nov.Total.Equal(money.MustQuantity("0.40")) || len(nov.Sections) != 1 || len(nov.Sections[0].Lines) != 1 || nov.Sections[0].Lines[0].Kind != "LateUsage" ||
			nov.Sections[0].Lines[0].UsagePeriod != "2026-10" {
			t.Fatalf("November's draft: %s %+v; want October's 50 as LateUsage, 0.40", nov.Total, nov.Sections)
		}
		if res := runCLI(t, nil, "billing", "verify", "--db", e.dsn); res.code != 0 {
			t.Fatalf("billing verify: %d %s %s", res.code, res.stdout, res.stderr)
		}
		if res := runCLI(t, nil, "serve", "--db", e.dsn, "--invoice-grace", "-1h"); res.code != 2 || !strings.Contains(res.stderr, "--invoice-grace -1h0m0s: want 0") {
			t.Fatalf("serve --invoice-grace -1h: %d %s", res.code, res.stderr)
		}
	})
}
