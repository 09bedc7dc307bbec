package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/services/preview/commerce/mgmt/2015-06-01-preview/commerce"
	"github.com/Azure/go-autorest/autorest/date"
	"github.com/Azure/go-autorest/autorest/to"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/usage"
)

// stackEnv is a stack on a manual clock with one onboarded tenant.
type stackEnv struct {
	*testEnv
	clk      *clock.Clock
	provider string
	c        *client
	rp       *simulate.Reporter // the resource providers' client
}

func newStackEnv(t *testing.T, backend string, start time.Time) *stackEnv {
	clk := clock.Manual(start)
	e := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
	se := &stackEnv{testEnv: e, clk: clk, provider: e.app.Tenancy.Provider(), c: &client{base: e.url, token: e.operator, http: e.srv.Client()},
		rp: &simulate.Reporter{Base: e.url, Token: e.operator, HTTP: e.srv.Client()}}
	return se
}

func (se *stackEnv) onboard(t *testing.T, tenant, sub, delegatedProvider string) {
	t.Helper()
	resp, body := se.raw("PUT", "/subscriptions/"+se.provider+"/resourceGroups/system.local/providers/Microsoft.Subscriptions.Admin/directoryTenants/"+tenant+"?api-version=2015-11-01",
		se.operator, "application/json", strings.NewReader(`{"location":"local","properties":{"tenantId":"`+tenant+`"}}`))
	if resp.StatusCode >= 300 {
		t.Fatalf("onboard directory: %d %s", resp.StatusCode, body)
	}
	props := `{"properties":{"displayName":"sub","owner":"o@x","tenantId":"` + tenant + `","offerId":"offer","state":"Enabled","delegatedProviderSubscriptionId":"` + delegatedProvider + `"}}`
	resp, body = se.raw("PUT", "/subscriptions/"+se.provider+"/providers/Microsoft.Subscriptions.Admin/subscriptions/"+sub+"?api-version=2015-11-01", se.operator, "application/json", strings.NewReader(props))
	if resp.StatusCode >= 300 {
		t.Fatalf("create subscription: %d %s", resp.StatusCode, body)
	}
}

func ev(id, sub, meterID, qty string, start, end time.Time, uri string) usage.Event {
	q := money.MustQuantity(qty)
	return usage.Event{ID: id, SubscriptionID: sub, MeterID: meterID, Quantity: &q, StartTime: &start, EndTime: &end, ResourceURI: uri, Location: "local"}
}

func usageClient(url, sub, token string) commerce.UsageAggregatesClient {
	c := commerce.NewUsageAggregatesClientWithBaseURI(url, sub)
	c.Authorizer = (&testEnv{}).authorizer(token)
	c.RetryAttempts, c.RetryDuration = 1, 0
	return c
}

func listAll(t *testing.T, c commerce.UsageAggregatesClient, start, end time.Time, details *bool, g commerce.AggregationGranularity) ([]commerce.UsageAggregation, int, error) {
	t.Helper()
	page, err := c.List(context.Background(), date.Time{Time: start}, date.Time{Time: end}, details, g, "")
	if err != nil {
		return nil, 0, err
	}
	var out []commerce.UsageAggregation
	pages := 0
	for page.NotDone() {
		pages++
		out = append(out, page.Values()...)
		if err := page.NextWithContext(context.Background()); err != nil {
			return nil, pages, err
		}
	}
	return out, pages, nil
}

func sumQty(items []commerce.UsageAggregation) money.Quantity {
	total := money.Zero
	for _, it := range items {
		total = total.Add(money.MustQuantity(fmt.Sprint(*it.Quantity)))
	}
	return total
}

// TestUsageAggregatesSDK reads the tenant usage API with the real Azure SDK
// for Go: paging past 1,000 rows, Hourly and Daily, details on and off, late,
// duplicate and bad events, and every error code.
func TestUsageAggregatesSDK(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		day := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)
		se := newStackEnv(t, backend, day.Add(24*time.Hour+30*time.Minute))
		ctx := t.Context()
		sub, tenant := randomGUID(), randomGUID()
		se.onboard(t, tenant, sub, "")
		other, otherTenant := randomGUID(), randomGUID()
		se.onboard(t, otherTenant, other, "")
		tenantTok, _, _ := se.app.Auth.Create(ctx, auth.RoleTenant, "", sub, "", 0)

		// 50 VMs × 24 hours of Base VM usage, 2 vCPU each: 1,200 hourly rows.
		var events []usage.Event
		for vm := 0; vm < 50; vm++ {
			for h := 0; h < 24; h++ {
				s := day.Add(time.Duration(h) * time.Hour)
				events = append(events, ev(fmt.Sprintf("vm%d-h%d", vm, h), sub, simulate.MeterBaseVM, "2", s, s.Add(time.Hour), fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm%d", sub, vm)))
			}
		}
		res, err := se.rp.Post(ctx, events)
		if err != nil || res.Accepted != 1200 {
			t.Fatalf("intake: %+v %v", res, err)
		}
		// Re-sending every event changes nothing.
		if res, err := se.rp.Post(ctx, events); err != nil || res.Accepted != 0 || res.Duplicates != 1200 {
			t.Fatalf("re-send: %+v %v", res, err)
		}
		reported := clock.HourStart(se.clk.Now()) // the reported hour of everything above
		se.clk.Advance(time.Hour)
		uc := usageClient(se.url, sub, tenantTok)
		items, pages, err := listAll(t, uc, reported, reported.Add(time.Hour), nil, commerce.Hourly)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 1200 || pages != 2 || !sumQty(items).Equal(money.FromInt(2400)) {
			t.Fatalf("hourly: %d items in %d pages, total %s", len(items), pages, sumQty(items))
		}
		it := items[0]
		if it.SubscriptionID.String() != sub || to.String(it.MeterID) != simulate.MeterBaseVM || it.UsageEndTime.Sub(it.UsageStartTime.Time) != time.Hour ||
			to.String(it.Type) != "Microsoft.Commerce/UsageAggregate" || !strings.HasPrefix(to.String(it.ID), "/subscriptions/"+sub+"/providers/Microsoft.Commerce/UsageAggregates/") {
			t.Fatalf("first item: %+v %+v", it, it.UsageSample)
		}
		var inst map[string]map[string]any
		if err := json.Unmarshal([]byte(to.String(it.InstanceData)), &inst); err != nil || !strings.Contains(fmt.Sprint(inst["Microsoft.Resources"]["resourceUri"]), "/virtualMachines/vm") {
			t.Fatalf("instanceData %q: %v", to.String(it.InstanceData), err)
		}

		// Daily: needs the reported day closed.
		se.clk.Set(reported.Add(24 * time.Hour))
		daily, _, err := listAll(t, uc, reported, reported.Add(24*time.Hour), to.BoolPtr(true), commerce.Daily)
		if err != nil || len(daily) != 50 || !sumQty(daily).Equal(money.FromInt(2400)) || daily[0].UsageEndTime.Sub(daily[0].UsageStartTime.Time) != 24*time.Hour {
			t.Fatalf("daily: %d items, total %s, %v", len(daily), sumQty(daily), err)
		}
		agg, _, err := listAll(t, uc, reported, reported.Add(24*time.Hour), to.BoolPtr(false), commerce.Daily)
		if err != nil || len(agg) != 1 || !sumQty(agg).Equal(money.FromInt(2400)) || agg[0].InstanceData != nil {
			t.Fatalf("daily without details: %+v %v", agg, err)
		}

		// A late event lands in its usage hour under a later reported hour.
		lateReported := clock.HourStart(se.clk.Now())
		late := []usage.Event{ev("late-1", sub, simulate.MeterBaseVM, "0.5", day.Add(5*time.Hour), day.Add(5*time.Hour+30*time.Minute), "/subscriptions/"+sub+"/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm0")}
		if res, err := se.rp.Post(ctx, late); err != nil || res.Accepted != 1 {
			t.Fatalf("late: %+v %v", res, err)
		}
		se.clk.Advance(time.Hour)
		lateItems, _, err := listAll(t, uc, lateReported, lateReported.Add(time.Hour), nil, commerce.Hourly)
		if err != nil || len(lateItems) != 1 || !lateItems[0].UsageStartTime.Equal(day.Add(5*time.Hour)) || *lateItems[0].Quantity != 0.5 {
			t.Fatalf("late event: %+v %v", lateItems, err)
		}
		// The earlier reported hour is unchanged by it.
		again, _, _ := listAll(t, uc, reported, reported.Add(time.Hour), nil, commerce.Hourly)
		if !sumQty(again).Equal(money.FromInt(2400)) {
			t.Fatalf("a late event changed an already reported hour: %s", sumQty(again))
		}

		// Errors, read as an SDK user reads them.
		now := se.clk.Now()
		_, err = uc.List(ctx, date.Time{Time: clock.HourStart(now)}, date.Time{Time: clock.HourStart(now).Add(time.Hour)}, nil, commerce.Hourly, "")
		wantARMError(t, err, 400, "RequestEndTimeIsInFuture")
		_, err = uc.List(ctx, date.Time{Time: reported.Add(time.Minute)}, date.Time{Time: reported.Add(time.Hour)}, nil, commerce.Hourly, "")
		wantARMError(t, err, 400, "InvalidProperty")
		_, err = uc.List(ctx, date.Time{Time: reported.Add(time.Hour)}, date.Time{Time: reported.Add(24 * time.Hour)}, nil, commerce.Daily, "")
		wantARMError(t, err, 400, "InvalidProperty")
		_, err = uc.List(ctx, date.Time{Time: reported}, date.Time{Time: reported.Add(time.Hour)}, nil, "Weekly", "")
		wantARMError(t, err, 400, "InvalidAggregationGranularity")
		_, err = uc.List(ctx, date.Time{Time: reported}, date.Time{Time: reported.Add(time.Hour)}, nil, commerce.Hourly, "tampered")
		wantARMError(t, err, 400, "InvalidProperty")
		_, err = usageClient(se.url, other, tenantTok).List(ctx, date.Time{Time: reported}, date.Time{Time: reported.Add(time.Hour)}, nil, commerce.Hourly, "")
		wantARMError(t, err, 403, "AuthorizationFailed")
		q := "?reportedStartTime=" + reported.Format(time.RFC3339) + "&reportedEndTime=" + reported.Add(time.Hour).Format(time.RFC3339) + "&aggregationGranularity=hourly"
		if resp, body := se.raw("GET", "/subscriptions/"+sub+"/providers/microsoft.commerce/usageAggregates"+q, tenantTok, "", nil); resp.StatusCode != 400 || errCode(body) != "NoApiVersion" {
			t.Fatalf("no api-version: %d %s", resp.StatusCode, body)
		}
		// Azure Stack's documented time form, +00:00 followed by Z, lower-case path and granularity.
		docq := "?reportedStartTime=" + strings.ReplaceAll(reported.Format("2006-01-02T15:04:05")+"+00:00Z", ":", "%3a") + "&reportedEndTime=" +
			strings.ReplaceAll(reported.Add(time.Hour).Format("2006-01-02T15:04:05")+"%2b00:00Z", ":", "%3a") + "&aggregationGranularity=hourly&api-version=2015-06-01-preview"
		resp, body := se.raw("GET", "/subscriptions/"+sub+"/providers/microsoft.commerce/usageaggregates"+docq, tenantTok, "", nil)
		if resp.StatusCode != 200 || strings.Count(body, `"meterId"`) != 1000 {
			t.Fatalf("documented form: %d %.300s", resp.StatusCode, body)
		}
		// Continuation tokens are sealed: an edited token, or one replayed
		// against another subscription, is a 400 and reads nothing.
		var first struct {
			NextLink string `json:"nextLink"`
		}
		_ = json.Unmarshal([]byte(body), &first)
		nl, err := url.Parse(first.NextLink)
		if err != nil || nl.Query().Get("continuationToken") == "" {
			t.Fatalf("nextLink %q", first.NextLink)
		}
		tok := nl.Query().Get("continuationToken")
		cursorPart, seal, _ := strings.Cut(tok, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(cursorPart)
		edited := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), sub, other, 1))) + "." + seal
		for name, bad := range map[string]string{"edited": edited, "truncated": cursorPart, "flipped seal": cursorPart + "." + strings.ToUpper(seal)} {
			q := nl.Query()
			q.Set("continuationToken", bad)
			if resp, body := se.raw("GET", nl.Path+"?"+q.Encode(), tenantTok, "", nil); resp.StatusCode != 400 || strings.Contains(body, `"meterId"`) {
				t.Fatalf("%s continuation token: %d %.200s", name, resp.StatusCode, body)
			}
		}
		otherTok, _, _ := se.app.Auth.Create(ctx, auth.RoleTenant, "", other, "", 0)
		if resp, body := se.raw("GET", strings.Replace(nl.RequestURI(), sub, other, 1), otherTok, "", nil); resp.StatusCode != 400 || strings.Contains(body, `"meterId"`) {
			t.Fatalf("token replayed on another subscription: %d %.200s", resp.StatusCode, body)
		}
		// Provider API: direct tenants only.
		adminQ := q + "&api-version=2015-06-01-preview"
		if resp, body := se.raw("GET", "/subscriptions/"+se.provider+"/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates"+adminQ+"&subscriberId="+randomGUID(), se.operator, "", nil); resp.StatusCode != 400 || errCode(body) != "SubscriberIdIsNotDirectTenant" {
			t.Fatalf("not a direct tenant: %d %s", resp.StatusCode, body)
		}
		if resp, body := se.raw("GET", "/subscriptions/"+se.provider+"/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates"+adminQ+"&subscriberId="+sub, se.operator, "", nil); resp.StatusCode != 200 ||
			!strings.Contains(body, `"type":"Microsoft.Commerce.Admin/UsageAggregate"`) || !strings.Contains(body, `"nextLink":"http`) {
			t.Fatalf("provider API: %d %.300s", resp.StatusCode, body)
		}
		if resp, _ := se.raw("GET", "/subscriptions/"+se.provider+"/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates"+adminQ, tenantTok, "", nil); resp.StatusCode != 403 {
			t.Fatalf("tenant on the provider API: %d", resp.StatusCode)
		}
	})
}

// TestUsageIntakeRejectsBadEvents checks each kind of bad event is refused by
// index with its reason, the good events of the batch are kept, and nothing
// bad reaches stored usage.
func TestUsageIntakeRejectsBadEvents(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		day := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)
		se := newStackEnv(t, backend, day.Add(30*time.Minute))
		sub, tenant := randomGUID(), randomGUID()
		se.onboard(t, tenant, sub, "")
		start, end := day.Add(-time.Hour).Format(time.RFC3339), day.Format(time.RFC3339)
		line := func(id, s, m, q, st, en string) string {
			return fmt.Sprintf(`{"id":%q,"subscriptionId":%q,"meterId":%q,"quantity":%s,"startTime":%q,"endTime":%q,"resourceUri":"/r/x"}`, id, s, m, q, st, en)
		}
		body := strings.Join([]string{
			line("ok-1", sub, simulate.MeterBaseVM, `"1.5"`, start, end),
			line("bad-meter", sub, "00000000-0000-0000-0000-000000000000", "1", start, end),
			line("bad-sub", randomGUID(), simulate.MeterBaseVM, "1", start, end),
			line("negative", sub, simulate.MeterBaseVM, "-1", start, end),
			line("backwards", sub, simulate.MeterBaseVM, "1", end, start),
			line("bad-qty", sub, simulate.MeterBaseVM, `"one"`, start, end),
			`{"id":"broken", "quantity": }`,
			line("ok-2", sub, strings.ToLower(strings.ReplaceAll(simulate.MeterBaseVM, "-", "")), `123456789012.123456789123456789`, start, end),
			`{"id":"extra","subscriptionId":"` + sub + `","meterId":"` + simulate.MeterBaseVM + `","quantity":1,"startTime":"` + start + `","endTime":"` + end + `","colour":"red"}`,
		}, "\n")
		resp, out := se.raw("POST", "/v1/usage/events", se.operator, "application/x-ndjson", strings.NewReader(body))
		var res usage.Result
		if resp.StatusCode != 200 || json.Unmarshal([]byte(out), &res) != nil {
			t.Fatalf("intake: %d %s", resp.StatusCode, out)
		}
		want := map[int]string{1: "unknown meter", 2: "unknown subscription", 3: "negative quantity", 4: "is before startTime", 5: "malformed value", 6: "malformed value", 8: "unknown field"}
		if res.Accepted != 2 || len(res.Rejected) != len(want) {
			t.Fatalf("result %+v", res)
		}
		for _, r := range res.Rejected {
			if !strings.Contains(r.Reason, want[r.Index]) {
				t.Errorf("event %d rejected for %q, want %q", r.Index, r.Reason, want[r.Index])
			}
		}
		// CloudEvents batch: the event is in data, id and source on the envelope.
		ce := `[{"specversion":"1.0","id":"ce-1","source":"/rp/compute","type":"usage","data":{"subscriptionId":"` + sub + `","meterId":"` + simulate.MeterBaseVM + `","quantity":"0.25","startTime":"` + start + `","endTime":"` + end + `"}},
			{"specversion":"0.3","id":"ce-2","source":"/rp/compute","type":"usage","data":{}}]`
		resp, out = se.raw("POST", "/v1/usage/events", se.operator, "application/cloudevents-batch+json", strings.NewReader(ce))
		if resp.StatusCode != 200 || !strings.Contains(out, `"accepted":1`) || !strings.Contains(out, `"index":1`) {
			t.Fatalf("cloudevents: %d %s", resp.StatusCode, out)
		}
		// A JSON array works too, and an unframed body is a 400.
		arr := `[` + line("arr-1", sub, simulate.MeterBaseVM, "1", start, end) + `]`
		if resp, out := se.raw("POST", "/v1/usage/events", se.operator, "application/json", strings.NewReader(arr)); resp.StatusCode != 200 || !strings.Contains(out, `"accepted":1`) {
			t.Fatalf("array: %d %s", resp.StatusCode, out)
		}
		if resp, _ := se.raw("POST", "/v1/usage/events", se.operator, "application/json", strings.NewReader(`[{"id":`)); resp.StatusCode != 400 {
			t.Fatalf("broken array: %d", resp.StatusCode)
		}
		se.clk.Advance(time.Hour)
		items, _, err := listAll(t, usageClient(se.url, sub, se.operator), day, day.Add(time.Hour), to.BoolPtr(false), commerce.Hourly)
		want2 := money.MustQuantity("123456789012.123456789123456789").Add(money.MustQuantity("2.75"))
		if err != nil || len(items) != 1 {
			t.Fatalf("stored: %+v %v", items, err)
		}
		// The SDK's float64 cannot hold every digit; read the exact JSON.
		resp, out = se.raw("GET", "/subscriptions/"+sub+"/providers/Microsoft.Commerce/UsageAggregates?api-version=2015-06-01-preview&aggregationGranularity=Hourly&showDetails=false&reportedStartTime="+
			day.Format(time.RFC3339)+"&reportedEndTime="+day.Add(time.Hour).Format(time.RFC3339), se.operator, "", nil)
		if resp.StatusCode != 200 || !strings.Contains(out, `"quantity":`+want2.String()) {
			t.Fatalf("exact quantity %s not in %s", want2, out)
		}
	})
}
