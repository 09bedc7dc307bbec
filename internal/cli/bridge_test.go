package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/services/azurestack/mgmt/2017-06-01/azurestack"
	"github.com/Azure/go-autorest/autorest/to"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
	"github.com/stackbill/stackbill/internal/varbuf"
	"github.com/stackbill/stackbill/internal/wire"
)

// TestBridgeChargesByHour forwards three days of a stack's usage to commerce
// and checks each hour was charged to the subscription its tenant mapped to
// at that hour, per billing meter, exactly; re-sending changes nothing.
func TestBridgeChargesByHour(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		t0 := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
		clk, com, stack := newStackPair(t, backend, t0, 97)
		ssrv := httptest.NewServer(stack.Handler)
		defer ssrv.Close()
		se := &stackEnv{testEnv: &testEnv{t: t, app: stack, srv: ssrv, url: ssrv.URL, operator: "stack-op"}, clk: clk, provider: stack.Tenancy.Provider(),
			c:  &client{base: ssrv.URL, token: "stack-op", http: ssrv.Client()},
			rp: &simulate.Reporter{Base: ssrv.URL, Token: "stack-op", HTTP: ssrv.Client()}}

		// Register and activate the stack with contoso's shared-services subscription.
		tok, err := bridge.RegistrationToken(ctx, stack.DB, "PayAsYouUse", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		loc := "global"
		regs := com.regClient(W.ContosoDefault, com.tokens["contoso"])
		if _, err := regs.CreateOrUpdate(ctx, "azurestack", "stamp", azurestack.RegistrationParameter{Location: &loc,
			RegistrationParameterProperties: &azurestack.RegistrationParameterProperties{RegistrationToken: &tok}}); err != nil {
			t.Fatal(err)
		}
		if _, err := com.app.Registrations.Approve(ctx, auth.Principal{Role: auth.RoleOperator, TokenID: "t"}, regKey(W.ContosoDefault, "azurestack", "stamp"), true); err != nil {
			t.Fatal(err)
		}
		key, err := regs.GetActivationKey(ctx, "azurestack", "stamp")
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := com.app.Signer.JWKS(ctx)
		if _, err := bridge.Activate(ctx, stack.DB, to.String(key.ActivationKey), keys, clk.Now()); err != nil {
			t.Fatal(err)
		}
		cs := com.csClient(W.ContosoDefault, com.tokens["contoso"])
		mapTenant := func(c storetest.Customer) {
			if _, err := cs.Create(ctx, "azurestack", "stamp", c.Subscription, azurestack.CustomerSubscription{
				CustomerSubscriptionProperties: &azurestack.CustomerSubscriptionProperties{TenantID: to.StringPtr(c.Tenant)}}); err != nil {
				t.Fatal(err)
			}
		}
		mapTenant(W.Adatum)

		// The stack's tenants: Adatum and Litware (CSP customers) and one never registered.
		subA, subL, subX, tenantX := randomGUID(), randomGUID(), randomGUID(), randomGUID()
		se.onboard(t, W.Adatum.Tenant, subA, "")
		se.onboard(t, W.Litware.Tenant, subL, "")
		se.onboard(t, tenantX, subX, "")
		meters := []struct{ id, qty string }{{simulate.MeterBaseVM, "2"}, {simulate.MeterWindowsVM, "2"}, {simulate.MeterBlockBlob, "10.5"}, {simulate.MeterStaticIP, "1"}}
		// want[charged subscription][local meter key] = quantity
		want := map[string]map[string]money.Quantity{}
		add := func(charged, meterID, qty string) {
			k, _ := meter.Normalize(meterID)
			if want[charged] == nil {
				want[charged] = map[string]money.Quantity{}
			}
			want[charged][k] = want[charged][k].Add(money.MustQuantity(qty))
		}
		for h := 0; h < 72; h++ {
			hour := t0.Add(time.Duration(h) * time.Hour)
			if h == 24 {
				clk.Set(hour)
				mapTenant(W.Litware) // Litware is added at the start of day 2
			}
			if h == 48 {
				clk.Set(hour) // Adatum is removed at the start of day 3
				if _, err := cs.Delete(ctx, "azurestack", "stamp", W.Adatum.Subscription); err != nil {
					t.Fatal(err)
				}
			}
			var evs []usage.Event
			for _, sub := range []string{subA, subL, subX} {
				for _, m := range meters {
					evs = append(evs, ev(fmt.Sprintf("%s-%s-%d", sub, m.id, h), sub, m.id, m.qty, hour, hour.Add(time.Hour), "/subscriptions/"+sub+"/resourceGroups/rg/providers/x/y/r1"))
					charged := W.ContosoDefault
					switch {
					case sub == subA && h < 48:
						charged = W.Adatum.Subscription
					case sub == subL && h >= 24:
						charged = W.Litware.Subscription
					}
					add(charged, m.id, m.qty)
				}
			}
			clk.Set(hour.Add(time.Hour + time.Minute))
			if _, err := se.rp.Post(ctx, evs); err != nil {
				t.Fatal(err)
			}
		}
		clk.Set(t0.Add(73*time.Hour + bridge.Grace))
		if n := forwardAll(t, stack); n != 72*3*4 {
			t.Fatalf("forwarded %d records, want %d", n, 72*3*4)
		}
		check := func() {
			t.Helper()
			for charged, ms := range want {
				totals, err := com.app.Ledger.Totals(ctx, []string{charged}, t0, t0.Add(72*time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]money.Quantity{}
				for _, tt := range totals {
					got[tt.LocalMeterID] = got[tt.LocalMeterID].Add(tt.Quantity)
					if (tt.BillingMeterID == "") != (tt.LocalMeterID == "f271a8a388c44d93956a063e1d2fa80b") {
						t.Errorf("meter %s billed as %q", tt.LocalMeterID, tt.BillingMeterID)
					}
				}
				for k, q := range ms {
					if !got[k].Equal(q) {
						t.Errorf("charged %s, meter %s: %s, want %s", charged, k, got[k], q)
					}
				}
				if len(got) != len(ms) {
					t.Errorf("charged %s: meters %v, want %v", charged, got, ms)
				}
			}
		}
		check()
		// A stack restored from a backup taken before it forwarded anything
		// (its watermark and its outbox both at the start) re-sends
		// everything: commerce counts nothing twice.
		for _, key := range []string{"bridge.watermark", "bridge.sealed"} {
			if err := stack.DB.SetSetting(ctx, key, `{"reportedHour":0,"id":0}`); err != nil {
				t.Fatal(err)
			}
		}
		if n := forwardAll(t, stack); n != 72*3*4 {
			t.Fatalf("re-sent %d", n)
		}
		check()
		// A stack upgraded from before the outbox has a watermark and no
		// sealed position: it seals after its watermark, re-sending nothing.
		if err := stack.DB.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `DELETE FROM settings WHERE key = 'bridge.sealed'`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n := forwardAll(t, stack); n != 0 {
			t.Fatalf("after the upgrade the bridge re-sent %d records", n)
		}
		st, err := stack.Forwarder.Status(ctx)
		if err != nil || st.Backlog != 0 || !st.Activated || st.Forwarded != 2*72*3*4 {
			t.Fatalf("status %+v %v", st, err)
		}
		// Caught up: every hour that may be forwarded (closed, past the grace) is.
		horizon := clock.HourStart(stack.Clock.Now().Add(-bridge.Grace))
		if st.ForwardedThrough == nil || !st.ForwardedThrough.Equal(horizon) {
			t.Fatalf("forwarded through %v, want %s", st.ForwardedThrough, horizon)
		}
		if r := runCLI(t, nil, "stack", "bridge", "status", "--url", ssrv.URL, "--token", "stack-op"); r.code != 0 ||
			!strings.Contains(r.stdout, "forwarding for registration stamp") || !regexp.MustCompile(`(?m)^backlog\s+0 records$`).MatchString(r.stdout) ||
			!regexp.MustCompile(`(?m)^complete to\s+`+regexp.QuoteMeta(horizon.Format(time.RFC3339))).MatchString(r.stdout) {
			t.Fatalf("bridge status: %+v", r)
		}
		if resp, body := se.raw("GET", "/metrics", "stack-op", "", nil); resp.StatusCode != 200 || !strings.Contains(body, "stackbill_bridge_backlog_records 0") ||
			!strings.Contains(body, "stackbill_bridge_forwarded_records_total 1728") {
			t.Fatalf("metrics: %d", resp.StatusCode)
		}
		// The reason is kept with each record.
		var reason string
		_ = com.app.DB.QueryRowContext(ctx, `SELECT reason FROM commerce_usage WHERE local_subscription_id = ? ORDER BY usage_hour_us LIMIT 1`, subX).Scan(&reason)
		if !strings.Contains(reason, "not registered → default subscription "+W.ContosoDefault) {
			t.Fatalf("reason %q", reason)
		}
		// Credentials: only this registration's bridge credential for this cloud.
		bridgeTok := claimValue(t, to.String(key.ActivationKey), "bridgeToken")
		for name, tc := range map[string]struct {
			token, body string
			status      int
		}{
			"other cloud":   {bridgeTok, `{"cloudId":"` + randomGUID() + `","records":[]}`, 403},
			"partner token": {com.tokens["contoso"], `{"cloudId":"x","records":[]}`, 403},
			"bad record":    {bridgeTok, `{"cloudId":"` + claimValue(t, to.String(key.ActivationKey), "cloudId") + `","records":[{"id":"short"}]}`, 400},
		} {
			resp, body := com.raw("POST", "/v1/bridge/usage", tc.token, "application/json", strings.NewReader(tc.body))
			if resp.StatusCode != tc.status {
				t.Errorf("%s: %d %s", name, resp.StatusCode, body)
			}
		}
		// The binary layout and its encodings: bad input is a 4xx that changes nothing.
		cloud := claimValue(t, to.String(key.ActivationKey), "cloudId")
		for name, tc := range map[string]struct {
			contentType, encoding string
			body                  []byte
			status                int
			code                  string
		}{
			"unknown encoding": {wire.ContentTypeBinary, "br", []byte{1}, 415, "UnsupportedContentEncoding"},
			"not zstd":         {wire.ContentTypeBinary, "zstd", []byte("plain"), 400, "InvalidRequestContent"},
			"truncated":        {wire.ContentTypeBinary, "", []byte{1, 36}, 400, "InvalidRequestContent"},
			"too many records": {wire.ContentTypeBinary, "", append(binary.AppendUvarint(varbuf.AppendString([]byte{1}, cloud), wire.MaxRecords+1), make([]byte, 30000)...), 400, "InvalidRequestContent"},
		} {
			resp, body := com.raw("POST", "/v1/bridge/usage", bridgeTok, tc.contentType, bytes.NewReader(tc.body), "Content-Encoding", tc.encoding)
			if resp.StatusCode != tc.status || !strings.Contains(body, `"code":"`+tc.code+`"`) {
				t.Errorf("%s: %d %s", name, resp.StatusCode, body)
			}
		}
		// A large batch is mapped in parallel parts; the answer is still the
		// first bad record in record order, and nothing of the batch is kept.
		big := wire.Batch{CloudID: cloud}
		hour := clock.HourStart(stack.Clock.Now().Add(-48 * time.Hour))
		for i := 0; i < 6000; i++ {
			q := money.MustQuantity("1")
			rec := wire.Record{SubscriptionID: subX, TenantID: randomGUID(), MeterID: simulate.MeterBaseVM,
				Quantity: q, UsageHour: hour, ReportedHour: hour, ResourceURI: fmt.Sprintf("/r/%d", i), Location: "local"}
			rec.SetID(cloud)
			big.Records = append(big.Records, rec)
		}
		big.Records[5500].ID = "not hex"
		big.Records[1500].MeterID = "not-a-meter"
		raw, err := big.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if resp, body := com.raw("POST", "/v1/bridge/usage", bridgeTok, wire.ContentTypeBinary, bytes.NewReader(raw)); resp.StatusCode != 400 ||
			!strings.Contains(body, `"target":"records[1500].meterId"`) {
			t.Errorf("large bad batch: %d %s", resp.StatusCode, body)
		}
		if n := forwardAll(t, stack); n != 0 {
			t.Fatalf("after refused batches the bridge had %d records to send", n)
		}
		check()
		// Partners read their customers' forwarded usage; others cannot.
		q := "/v1/usage/forwarded?subscriptionId=" + W.Adatum.Subscription
		resp, body := com.raw("GET", q, com.tokens["contoso"], "", nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "fb8c0713-ea20-40bf-901f-5560fd3f6330") {
			t.Fatalf("partner: %d %.300s", resp.StatusCode, body)
		}
		// Every total names its meter.
		var named struct {
			Value []struct{ MeterName, Unit string }
		}
		if err := json.Unmarshal([]byte(body), &named); err != nil || len(named.Value) == 0 {
			t.Fatalf("forwarded usage: %v %.300s", err, body)
		}
		for _, v := range named.Value {
			if v.MeterName == "" || v.Unit == "" {
				t.Fatalf("a forwarded total without its meter's name: %.300s", body)
			}
		}
		if r := runCLI(t, map[string]string{"STACKBILL_URL": com.url, "STACKBILL_TOKEN": com.tokens["contoso"]}, "usage", "forwarded", "--subscription", W.Adatum.Subscription); r.code != 0 ||
			!strings.Contains(r.stdout, "fb8c0713-ea20-40bf-901f-5560fd3f6330") || !strings.Contains(r.stdout, "(local only, not billed)") || !strings.Contains(r.stdout, "customer subscription") ||
			!strings.Contains(r.stdout, named.Value[0].MeterName) {
			t.Fatalf("usage forwarded: %+v", r)
		}
		if resp, _ := com.raw("GET", q, com.tokens["northwind"], "", nil); resp.StatusCode != 404 {
			t.Fatalf("another partner: %d", resp.StatusCode)
		}
		tenantTok, _, _ := com.app.Auth.Create(ctx, auth.RoleTenant, "", W.Adatum.Subscription, "", 0)
		if resp, _ := com.raw("GET", q, tenantTok, "", nil); resp.StatusCode != 403 {
			t.Fatalf("end customer: %d", resp.StatusCode)
		}
	})
}

// TestBridgeRidesOutAnOutage runs the forwarder's loop against a commerce
// that fails, hangs up and then recovers: the error shows in the status, the
// bridge backs off, and it catches up in order with nothing lost.
func TestBridgeRidesOutAnOutage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t0 := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	clk, com, stack := newStackPair(t, "sqlite", t0, 50)
	// Commerce behind a switch: down (503, then connection drops) or up.
	var down atomic.Int32
	down.Store(1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch down.Load() {
		case 1:
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		case 2:
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
		default:
			com.app.Handler.ServeHTTP(w, r)
		}
	}))
	defer front.Close()
	activateStack(t, com.app, stack, regKey(W.ContosoDefault, "azurestack", "stamp"), front.URL, clk.Now())
	sub, tenant := randomGUID(), randomGUID()
	sop := auth.Principal{Role: auth.RoleStackOperator, TokenID: "t"}
	stack.Tenancy.PutDirectoryTenant(ctx, sop, stack.Tenancy.Provider(), tenancy.DirectoryTenant{Name: tenant, TenantID: tenant})
	if _, _, err := stack.Tenancy.PutSubscription(ctx, sop, stack.Tenancy.Provider(), sub, tenancy.Subscription{TenantID: tenant, Owner: "o", OfferID: "o"}); err != nil {
		t.Fatal(err)
	}
	var evs []*usage.Event
	for h := 0; h < 10; h++ {
		for r := 0; r < 30; r++ {
			e := ev(fmt.Sprintf("e%d-%d", h, r), sub, simulate.MeterBaseVM, "1.5", t0.Add(time.Duration(h)*time.Hour), t0.Add(time.Duration(h+1)*time.Hour), fmt.Sprintf("/r/vm%d", r))
			evs = append(evs, &e)
		}
	}
	if _, err := stack.Usage.IngestAt(ctx, t0.Add(10*time.Hour), evs); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(12 * time.Hour))
	stack.Forwarder.MaxBackoff = 200 * time.Millisecond
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go stack.Forwarder.Run(runCtx)
	waitFor := func(what string, ok func(bridge.Status) bool) bridge.Status {
		t.Helper()
		for i := 0; i < 300; i++ {
			st, err := stack.Forwarder.Status(ctx)
			if err == nil && ok(st) {
				return st
			}
			time.Sleep(20 * time.Millisecond)
		}
		st, _ := stack.Forwarder.Status(ctx)
		t.Fatalf("timed out waiting for %s: %+v", what, st)
		return st
	}
	// While down, the backlog's oldest hour (reported at t0+10h) bounds what is complete in commerce.
	waitFor("the 503 to show", func(st bridge.Status) bool {
		return strings.Contains(st.LastError, "503") && st.Backlog == 300 && st.ForwardedThrough != nil && st.ForwardedThrough.Equal(t0.Add(10*time.Hour))
	})
	down.Store(2)
	waitFor("the dropped connection to show", func(st bridge.Status) bool {
		return strings.Contains(st.LastError, "EOF") || strings.Contains(st.LastError, "reset")
	})
	down.Store(0)
	st := waitFor("the catch-up", func(st bridge.Status) bool {
		return st.Backlog == 0 && st.ForwardedThrough != nil && st.ForwardedThrough.Equal(clock.HourStart(clk.Now().Add(-bridge.Grace)))
	})
	totals, err := com.app.Ledger.Totals(ctx, []string{W.ContosoDefault}, t0, t0.Add(10*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sum := money.Zero
	for _, tt := range totals {
		sum = sum.Add(tt.Quantity)
	}
	if !sum.Equal(money.MustQuantity("450")) || st.Forwarded != 300 {
		t.Fatalf("after the outage: %s forwarded as %s, want 450 (status %+v)", "300 records", sum, st)
	}
}
