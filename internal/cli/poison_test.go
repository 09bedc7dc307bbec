package cli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/wire"
)

// unusual is text that has tripped up software before: a right-to-left
// override, zero-width joiners, combining marks, astral-plane emoji, and
// characters that look like the ASCII they are not.
const unusual = "\u202egnp.exe\u200d\u200b e\u0301\u0301\u0301 \U0001F4A9\U0001F468\u200d\U0001F469 \uff21\uff10 ∕ ＝SUM(1)"

// TestPoisonPills feeds every background stage the worst values the API
// accepts, and a few that only an attacker with the database could plant,
// and checks that each stage takes the rest, holds the bad in quarantine
// with its reason, and that other tenants' usage, the usage APIs,
// forwarding, invoices, reconciliation files and statements keep working.
func TestPoisonPills(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("every background stage through a month and its finalization: the full suite runs it")
	}
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		start := time.Date(2026, 10, 20, 9, 30, 0, 0, time.UTC)
		clk := clock.Manual(start)
		e := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
		app := e.app
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		if _, err := app.Billing.ImportPriceList(ctx, op, "poison", []byte(testPriceListUSD), time.Time{}); err != nil {
			t.Fatal(err)
		}
		k := regKey(W.ContosoDefault, "azurestack", "poison-stamp")
		activateStack(t, app, app, k, e.url, clk.Now())
		victim, attacker := randomGUID(), randomGUID()
		onboardLocal(t, app, randomGUID(), victim)
		onboardLocal(t, app, randomGUID(), attacker)
		writer, _, _ := app.Auth.Create(ctx, auth.RoleUsageWriter, "", "", "", 0)
		post := func(lines []string) usageResult {
			t.Helper()
			resp, body := e.raw("POST", "/v1/usage/events", writer, "application/x-ndjson", strings.NewReader(strings.Join(lines, "\n")))
			var res usageResult
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &res) != nil {
				t.Fatalf("intake: %d %.400s", resp.StatusCode, body)
			}
			return res
		}
		type ev struct {
			id, sub, meter, qty, start, end, uri, loc string
			tags                                      map[string]string
			addl                                      string
		}
		line := func(v ev) string {
			m := map[string]any{"id": v.id, "subscriptionId": v.sub, "meterId": v.meter, "quantity": v.qty, "startTime": v.start, "endTime": v.end,
				"resourceUri": v.uri, "location": v.loc}
			if v.tags != nil {
				m["tags"] = v.tags
			}
			if v.addl != "" {
				m["additionalInfo"] = json.RawMessage(v.addl)
			}
			b, _ := json.Marshal(m)
			return string(b)
		}
		ts := func(t time.Time) string { return t.Format(time.RFC3339) }
		hour := clock.HourStart(start)

		// The victim's ordinary usage, before and after the attack.
		post([]string{line(ev{id: "v1", sub: victim, meter: simulate.MeterBaseVM, qty: "2", start: ts(hour), end: ts(hour.Add(time.Hour)), uri: "/r/v"})})

		// The attacker: every extreme the API accepts.
		tags := map[string]string{}
		for i := 0; i < 50; i++ {
			tags[fmt.Sprintf("%03d-%s", i, strings.Repeat("k", 508))] = strings.Repeat("v", 250) + "ééé"
		}
		addl := `{"note":"` + strings.Repeat("x", 16000) + `"}`
		longURI := "/subscriptions/" + attacker + "/" + unusual + "/" + strings.Repeat("r", 2048-len("/subscriptions/"+attacker+"/"+unusual+"/"))
		big := money.MaxEventQuantity.String()
		oldest := start.Add(-34*24*time.Hour + time.Minute)
		extreme := []string{
			line(ev{id: "a-old", sub: attacker, meter: simulate.MeterBaseVM, qty: big, start: ts(oldest), end: ts(oldest), uri: longURI, loc: strings.Repeat("l", 128), tags: tags, addl: addl}),
			line(ev{id: "a-future", sub: attacker, meter: simulate.MeterBaseVM, qty: big, start: ts(start.Add(4 * time.Minute)), end: ts(start.Add(4 * time.Minute)), uri: "/r/" + unusual}),
			line(ev{id: "a-span", sub: attacker, meter: simulate.MeterStaticIP, qty: big, start: ts(hour.Add(-31 * 24 * time.Hour)), end: ts(hour), uri: "/r/ip"}),
			line(ev{id: "a-tiny", sub: attacker, meter: simulate.MeterBaseVM, qty: "0." + strings.Repeat("0", 39) + "1", start: ts(hour), end: ts(hour.Add(time.Hour)), uri: "/r/tiny"}),
			// Refused one by one: NUL where the engines cannot store it.
			line(ev{id: "a-nul", sub: attacker, meter: simulate.MeterBaseVM, qty: "1", start: ts(hour), end: ts(hour), uri: "/r/\u0000"}),
			line(ev{id: "a-nul-tag", sub: attacker, meter: simulate.MeterBaseVM, qty: "1", start: ts(hour), end: ts(hour), uri: "/r", tags: map[string]string{"a\u0000": "b"}}),
			line(ev{id: "a-nul-addl", sub: attacker, meter: simulate.MeterBaseVM, qty: "1", start: ts(hour), end: ts(hour), uri: "/r", addl: `{"a":"\u0000"}`}),
		}
		if res := post(extreme); res.Accepted != 4 || len(res.Rejected) != 3 {
			t.Fatalf("extreme events: %+v", res)
		}
		// One record driven to its bound in one request, then past it in
		// the next: what does not fit is held.
		var atBound, past []string
		for i := 0; i < 1000; i++ {
			atBound = append(atBound, line(ev{id: fmt.Sprintf("b-%d", i), sub: attacker, meter: simulate.MeterBaseVM, qty: big, start: ts(hour), end: ts(hour), uri: "/r/sum"}))
		}
		for i := 0; i < 3; i++ {
			past = append(past, line(ev{id: fmt.Sprintf("p-%d", i), sub: attacker, meter: simulate.MeterBaseVM, qty: big, start: ts(hour), end: ts(hour), uri: "/r/sum"}))
		}
		if res := post(atBound); res.Accepted != 1000 {
			t.Fatalf("at the bound: %+v", res.Rejected)
		}
		if res := post(past); res.Accepted != 3 {
			t.Fatalf("past the bound: %+v", res.Rejected)
		}
		// Planted behind stackbill's back: an intake log row that does not
		// decode, a stored record past its bound (as an older stackbill
		// could have left), and a commerce log row that does not decode.
		plant := func(q string, args ...any) {
			t.Helper()
			if err := app.DB.Write(ctx, func(tx *store.Tx) error { _, err := tx.ExecContext(ctx, q, args...); return err }); err != nil {
				t.Fatal(err)
			}
		}
		plant(`INSERT INTO usage_log (received_us, events, payload) VALUES (?, 1, ?)`, clock.Micros(start), []byte{0xff, 0x01, 0x02})
		plant(`INSERT INTO usage_records (subscription_id, meter_key, instance, usage_hour_us, reported_hour_us, quantity, events, resource_uri, location, tags, additional_info)
			VALUES (?, ?, '', ?, ?, ?, 1, '/r/legacy', 'local', 'null', 'null')`, attacker, "fab6eb84500b4a09a8ca7358f8bbaea5", clock.Micros(hour.Add(-time.Hour)), clock.Micros(hour), strings.Repeat("9", 41))
		plant(`INSERT INTO commerce_usage_log (received_us, records, payload) VALUES (?, 1, ?)`, clock.Micros(start), []byte("not a log payload"))

		post([]string{line(ev{id: "v2", sub: victim, meter: simulate.MeterBaseVM, qty: "3", start: ts(hour), end: ts(hour.Add(time.Hour)), uri: "/r/v"})})

		// A hostile bridge of this very stamp forwards usage from 1969 and
		// 9999: ingestion holds it, and the rest of its batch goes through.
		reg, _ := app.Registrations.Get(ctx, op, k)
		var forged []wire.Record
		for i, h := range []time.Time{time.Date(1969, 7, 20, 20, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 0, 0, 0, time.UTC), hour.Add(-2 * time.Hour)} {
			r := wire.Record{SubscriptionID: victim, TenantID: randomGUID(), MeterID: simulate.MeterBaseVM, Quantity: money.FromInt(1), UsageHour: h, ReportedHour: h,
				ResourceURI: fmt.Sprintf("/r/forged-%d", i), Location: "local"}
			r.SetID(reg.CloudID)
			forged = append(forged, r)
		}
		if res, err := app.Ingestor.Ingest(ctx, auth.Principal{Role: auth.RoleBridge, RegistrationUID: reg.UID, TokenID: "b"}, wire.Batch{CloudID: reg.CloudID, Records: forged}); err != nil ||
			res.Accepted != 1 || res.Quarantined != 2 {
			t.Fatalf("forged years: %+v %v", res, err)
		}

		// Every stage runs: aggregation, sealing and forwarding over HTTP,
		// materialisation, rating, finalization and the exports.
		clk.Set(hour.Add(time.Hour + bridge.Grace + time.Minute))
		if _, err := app.Forwarder.CatchUp(ctx); err != nil {
			t.Fatalf("forwarding with poison in the stack: %v", err)
		}
		if err := app.Ledger.Settle(ctx); err != nil {
			t.Fatalf("materialising with poison in the log: %v", err)
		}
		for _, sub := range []string{victim, attacker} {
			resp, body := e.raw("GET", "/subscriptions/"+sub+"/providers/Microsoft.Commerce/UsageAggregates?api-version=2015-06-01-preview&aggregationGranularity=Hourly&reportedStartTime="+
				ts(hour)+"&reportedEndTime="+ts(hour.Add(time.Hour)), e.operator, "", nil)
			if resp.StatusCode != 200 || (sub == victim && !strings.Contains(body, `"quantity":5`)) {
				t.Fatalf("usage API for %s: %d %.300s", sub, resp.StatusCode, body)
			}
		}
		if resp, body := e.raw("GET", "/v1/stack/bridge", e.operator, "", nil); resp.StatusCode != 200 || !strings.Contains(body, `"backlogRecords":0`) || strings.Contains(body, "lastError") {
			t.Fatalf("bridge status: %d %s", resp.StatusCode, body)
		}
		held := map[quarantine.Stage]int{}
		items, err := app.Quarantine.List(ctx, op, quarantine.Query{Open: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			held[it.Stage]++
			if it.Reason == "" {
				t.Errorf("item %d has no reason", it.ID)
			}
		}
		if held[quarantine.Aggregation] != 4 || held[quarantine.Seal] != 1 || held[quarantine.Ingest] != 2 || held[quarantine.Materialise] != 1 {
			t.Fatalf("held per stage: %v (%+v)", held, items)
		}
		resp, body := e.raw("GET", "/metrics", e.operator, "", nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `stackbill_quarantined_records{stage="aggregation"} 4`) || !strings.Contains(body, `stackbill_quarantined_records{stage="ingest"} 2`) {
			t.Fatalf("metrics: %d", resp.StatusCode)
		}
		// Releasing an overflow takes it again as late usage of the open
		// reported hour, a record of its own where it fits; dropping the
		// forged future ends it. Both are audited.
		var overflow, future int64
		for _, it := range items {
			switch {
			case it.Stage == quarantine.Aggregation && strings.Contains(it.Reason, "exceed") && overflow == 0:
				overflow = it.ID
			case it.Stage == quarantine.Ingest && strings.Contains(it.Reason, "future"):
				future = it.ID
			}
		}
		for _, c := range []struct {
			path string
			want int
		}{{fmt.Sprintf("/v1/quarantine/%d/release", overflow), 200}, {fmt.Sprintf("/v1/quarantine/%d/drop", future), 200}, {fmt.Sprintf("/v1/quarantine/%d/drop", overflow), 400}} {
			if resp, body := e.raw("POST", c.path, e.operator, "", nil); resp.StatusCode != c.want {
				t.Fatalf("%s: %d %s", c.path, resp.StatusCode, body)
			}
		}
		if err := app.Usage.Settle(ctx, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if after, _ := app.Quarantine.Counts(ctx); after[quarantine.Aggregation] != 3 || after[quarantine.Ingest] != 1 {
			t.Fatalf("after release and drop: %v", after)
		}
		for _, action := range []string{"quarantine.release", "quarantine.drop"} {
			if recs, _ := audit.List(ctx, app.DB, audit.Query{Kind: "quarantine"}); !containsAction(recs, action) {
				t.Fatalf("no %s in the audit log", action)
			}
		}

		// Billing: the month closes and is finalized with the poison in it;
		// every view of it answers, and the views agree.
		clk.Set(time.Date(2026, 11, 2, 1, 0, 0, 0, time.UTC))
		if _, err := app.Forwarder.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ method, path string }{
			// The oldest usage the stack took is September's.
			{"POST", "/v1/billing/periods/2026-09/finalize"},
			{"POST", "/v1/billing/periods/2026-10/finalize"},
			{"GET", "/v1/billing/periods/2026-10"},
			{"GET", "/v1/billing/invoices?period=2026-10"},
		} {
			if resp, body := e.raw(c.method, c.path, e.operator, "", nil); resp.StatusCode != 200 {
				t.Fatalf("%s %s: %d %.400s", c.method, c.path, resp.StatusCode, body)
			}
		}
		inv, err := app.Billing.Invoice(ctx, op, "SB-202610-contoso")
		if err != nil || inv.Status != "final" {
			t.Fatalf("invoice: %+v %v", inv.Status, err)
		}
		_, recon := e.raw("GET", "/v1/billing/reconciliation?partner=contoso&period=2026-10", e.tokens["contoso"], "", nil)
		rows, err := csv.NewReader(strings.NewReader(recon)).ReadAll()
		if err != nil || len(rows) < 2 {
			t.Fatalf("reconciliation: %v %.300s", err, recon)
		}
		sum := money.Zero
		for _, r := range rows[1:] {
			sum = sum.Add(money.MustQuantity(r[24]))
			for _, cell := range r {
				if strings.HasPrefix(cell, "=") || strings.HasPrefix(cell, "@") {
					t.Fatalf("a reconciliation cell a spreadsheet would run: %q", cell)
				}
			}
		}
		if !sum.Equal(inv.Total) {
			t.Fatalf("reconciliation rows sum to %s, the invoice is %s", sum, inv.Total)
		}
		resp, body = e.raw("POST", "/v1/billing/exports", e.tokens["contoso"], "application/json", strings.NewReader(`{"partner":"contoso","period":"2026-10"}`))
		var job struct {
			ID string `json:"id"`
		}
		if resp.StatusCode != 202 || json.Unmarshal([]byte(body), &job) != nil {
			t.Fatalf("export: %d %s", resp.StatusCode, body)
		}
		if err := app.Billing.RunExports(ctx); err != nil {
			t.Fatal(err)
		}
		if resp, file := e.raw("GET", "/v1/billing/exports/"+job.ID+"/file", e.tokens["contoso"], "", nil); resp.StatusCode != 200 || !bytes.Equal([]byte(file), []byte(recon)) {
			t.Fatalf("the exported file differs from the streamed one: %d", resp.StatusCode)
		}
		if resp, body := e.raw("GET", "/v1/billing/statements/contoso?period=2026-10&format=csv", e.tokens["contoso"], "", nil); resp.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("statements: %d %s", resp.StatusCode, body)
		}
		_ = registration.PayAsYouUse
	})
}

func containsAction(recs []audit.Entry, action string) bool {
	for _, r := range recs {
		if r.Action == action {
			return true
		}
	}
	return false
}
