package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/usage"
)

// TestTenancyAndDelegatedProviders covers the Subscriptions.Admin shapes, a
// delegated provider that sees only its direct tenants, soft deletion that
// keeps usage, and the history of changes.
func TestTenancyAndDelegatedProviders(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		day := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
		se := newStackEnv(t, backend, day.Add(2*time.Hour))
		ctx := t.Context()
		// dp is a reseller's subscription acting as a delegated provider; t1 is its tenant, t2 the operator's.
		dp, dpTenant := randomGUID(), randomGUID()
		se.onboard(t, dpTenant, dp, "")
		t1, t1Tenant := randomGUID(), randomGUID()
		se.onboard(t, t1Tenant, t1, dp)
		t2, t2Tenant := randomGUID(), randomGUID()
		se.onboard(t, t2Tenant, t2, "")
		dpTok, _, _ := se.app.Auth.Create(ctx, auth.RoleStackOperator, "", dp, "", 0)

		subs := func(provider, token string) (int, string) {
			resp, body := se.raw("GET", "/subscriptions/"+provider+"/providers/Microsoft.Subscriptions.Admin/subscriptions?api-version=2015-11-01", token, "", nil)
			return resp.StatusCode, body
		}
		if st, body := subs(se.provider, se.operator); st != 200 || strings.Count(body, `"subscriptionId"`) != 3 {
			t.Fatalf("operator sees %d: %s", st, body)
		}
		if st, body := subs(dp, dpTok); st != 200 || strings.Count(body, `"subscriptionId"`) != 1 || !strings.Contains(body, t1) {
			t.Fatalf("delegated provider sees %d: %s", st, body)
		}
		if st, _ := subs(se.provider, dpTok); st != 403 {
			t.Fatalf("delegated provider at the stack's provider subscription: %d", st)
		}
		// A delegated provider cannot take another provider's subscription.
		resp, body := se.raw("PUT", "/subscriptions/"+dp+"/providers/Microsoft.Subscriptions.Admin/subscriptions/"+t2+"?api-version=2015-11-01", dpTok, "application/json",
			strings.NewReader(`{"properties":{"tenantId":"`+t2Tenant+`","owner":"x","offerId":"o","state":"Enabled"}}`))
		if resp.StatusCode != 403 {
			t.Fatalf("takeover: %d %s", resp.StatusCode, body)
		}
		// Owners must be onboarded directories; bad states are refused.
		resp, body = se.raw("PUT", "/subscriptions/"+se.provider+"/providers/Microsoft.Subscriptions.Admin/subscriptions/"+randomGUID()+"?api-version=2015-11-01", se.operator, "application/json",
			strings.NewReader(`{"properties":{"tenantId":"`+randomGUID()+`","owner":"x","offerId":"o"}}`))
		if resp.StatusCode != 400 || errCode(body) != "DirectoryTenantNotOnboarded" {
			t.Fatalf("unknown directory: %d %s", resp.StatusCode, body)
		}
		resp, body = se.raw("PUT", "/subscriptions/"+se.provider+"/providers/Microsoft.Subscriptions.Admin/subscriptions/"+t2+"?api-version=2015-11-01", se.operator, "application/json",
			strings.NewReader(`{"properties":{"tenantId":"`+t2Tenant+`","owner":"x","offerId":"o","state":"Sleeping"}}`))
		if resp.StatusCode != 400 {
			t.Fatalf("bad state: %d %s", resp.StatusCode, body)
		}

		// Usage for both tenants, then t1 is deleted: its usage stays readable.
		s, e := day, day.Add(time.Hour)
		if _, err := se.rp.Post(ctx, []usage.Event{
			ev("a", t1, simulate.MeterBaseVM, "4", s, e, "/r/vm1"), ev("b", t2, simulate.MeterBaseVM, "8", s, e, "/r/vm2"),
		}); err != nil {
			t.Fatal(err)
		}
		resp, _ = se.raw("DELETE", "/subscriptions/"+dp+"/providers/Microsoft.Subscriptions.Admin/subscriptions/"+t1+"?api-version=2015-11-01", dpTok, "", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("delete: %d", resp.StatusCode)
		}
		se.clk.Advance(time.Hour)
		q := "?api-version=2015-06-01-preview&aggregationGranularity=Hourly&reportedStartTime=" + day.Add(2*time.Hour).Format(time.RFC3339) + "&reportedEndTime=" + day.Add(3*time.Hour).Format(time.RFC3339)
		admin := func(provider, token, extra string) (int, string) {
			resp, body := se.raw("GET", "/subscriptions/"+provider+"/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates"+q+extra, token, "", nil)
			return resp.StatusCode, body
		}
		if st, body := admin(dp, dpTok, ""); st != 200 || !strings.Contains(body, t1) || strings.Contains(body, t2) || !strings.Contains(body, `"quantity":4`) {
			t.Fatalf("delegated provider's usage view: %d %s", st, body)
		}
		if st, body := admin(dp, dpTok, "&subscriberId="+t2); st != 400 || errCode(body) != "SubscriberIdIsNotDirectTenant" {
			t.Fatalf("asking about another provider's tenant: %d %s", st, body)
		}
		if st, body := admin(se.provider, se.operator, ""); st != 200 || !strings.Contains(body, t2) || strings.Contains(body, t1) {
			t.Fatalf("operator's direct tenants: %d %s", st, body)
		}
		// History records the deletion with its actor.
		resp, body = se.raw("GET", "/v1/stack/subscriptions/"+t1+"/history", se.operator, "", nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `\"state\":\"Deleted\"`) && !strings.Contains(body, `"state":"Deleted"`) || !strings.Contains(body, "stack-operator:"+dp) {
			t.Fatalf("history: %d %s", resp.StatusCode, body)
		}
		// A tenant token reads only its own subscription on the tenant API.
		tok, _, _ := se.app.Auth.Create(ctx, auth.RoleTenant, "", t2, "", 0)
		for sub, want := range map[string]int{t2: 200, t1: 403} {
			resp, _ := se.raw("GET", "/subscriptions/"+sub+"/providers/Microsoft.Commerce/UsageAggregates"+q, tok, "", nil)
			if resp.StatusCode != want {
				t.Errorf("tenant token on %s: %d, want %d", sub, resp.StatusCode, want)
			}
		}
		// Meters: the catalogue is listed; an operator adds a custom worker tier meter.
		resp, body = se.raw("PUT", "/v1/meters/6e4b8d43-7c1a-4f7e-9b0f-2a1c3d4e5f60", se.operator, "application/json",
			strings.NewReader(`{"name":"Custom Worker Tier XL","unit":"1 hour","category":"App Service"}`))
		if resp.StatusCode != 200 {
			t.Fatalf("add meter: %d %s", resp.StatusCode, body)
		}
		resp, body = se.raw("PUT", "/v1/meters/"+simulate.MeterBaseVM, se.operator, "application/json", strings.NewReader(`{"name":"x","unit":"y"}`))
		if resp.StatusCode != 400 || errCode(body) != "BuiltinMeter" {
			t.Fatalf("redefining a built-in meter: %d %s", resp.StatusCode, body)
		}
		resp, body = se.raw("GET", "/v1/meters", tok, "", nil)
		if resp.StatusCode != 200 || strings.Count(body, `"id"`) != 85 || !strings.Contains(body, "Custom Worker Tier XL") {
			t.Fatalf("meters: %d, %d meters", resp.StatusCode, strings.Count(body, `"id"`))
		}
	})
}
