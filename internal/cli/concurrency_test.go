package cli

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/services/azurestack/mgmt/2017-06-01/azurestack"
	"github.com/Azure/go-autorest/autorest/to"

	"github.com/stackbill/stackbill/internal/bench"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestConcurrentMappingPUTs sends 50 concurrent customerSubscription PUTs on
// one registration through the SDK: 25 tenants, each PUT twice at once to one
// of its two subscriptions. No request may fail, and each tenant must end with
// exactly one live mapping whose history is a clean chain.
func TestConcurrentMappingPUTs(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		ctx := t.Context()
		world, err := bench.SeedWorld(ctx, benchInstance(e.app), 25)
		if err != nil {
			t.Fatal(err)
		}
		cs := e.csClient(world.Key.SubscriptionID, e.operator)
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c := world.Customers[i%25]
				sub := c.Subscription
				if i >= 25 {
					sub = c.Second
				}
				_, err := cs.Create(ctx, world.Key.ResourceGroup, world.Key.Name, sub, azurestack.CustomerSubscription{
					CustomerSubscriptionProperties: &azurestack.CustomerSubscriptionProperties{TenantID: to.StringPtr(c.Tenant)}})
				if err != nil {
					errs <- err
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent PUT failed: %v", err)
		}
		live := map[string]int{}
		page, err := cs.List(ctx, world.Key.ResourceGroup, world.Key.Name)
		if err != nil {
			t.Fatal(err)
		}
		for page.NotDone() {
			for _, v := range page.Values() {
				live[to.String(v.TenantID)]++
			}
			if err := page.NextWithContext(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if len(live) != 25 {
			t.Fatalf("%d tenants mapped, want 25", len(live))
		}
		for tenant, n := range live {
			if n != 1 {
				t.Errorf("tenant %s has %d live mappings", tenant, n)
			}
		}
		// Every closed mapping ends where its successor starts: no gaps, no overlaps.
		rows, err := e.app.DB.QueryContext(ctx, `SELECT tenant_id, valid_from_us, valid_to_us FROM tenant_mappings ORDER BY tenant_id, valid_from_us, id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var prevTenant string
		var prevTo *int64
		for rows.Next() {
			var tenant string
			var from int64
			var to *int64
			if err := rows.Scan(&tenant, &from, &to); err != nil {
				t.Fatal(err)
			}
			if tenant == prevTenant && (prevTo == nil || *prevTo != from) {
				t.Errorf("tenant %s: mapping starting at %d does not follow the previous one (ended %v)", tenant, from, prevTo)
			}
			prevTenant, prevTo = tenant, to
		}
	})
}

// TestAPIVersionShapes checks the three api-versions answer the same
// resources, the preview adding systemData.
func TestAPIVersionShapes(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		e := newTestEnv(t, backend)
		e.createRegistration(W.ContosoDefault, "azurestack", "payg", registration.PayAsYouUse, true)
		path := "/subscriptions/" + W.ContosoDefault + "/resourceGroups/azurestack/providers/Microsoft.AzureStack/registrations/payg"
		e.raw("PUT", path+"/customerSubscriptions/"+W.Adatum.Subscription+"?api-version=2022-06-01", e.operator, "application/json",
			strings.NewReader(`{"properties":{"tenantId":"`+W.Adatum.Tenant+`"}}`))
		for _, v := range []string{"2017-06-01", "2020-06-01-preview", "2022-06-01"} {
			for _, p := range []string{path, path + "/customerSubscriptions/" + W.Adatum.Subscription} {
				resp, body := e.raw("GET", p+"?api-version="+v, e.operator, "", nil)
				var doc map[string]any
				if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &doc) != nil {
					t.Fatalf("%s %s: %d %s", v, p, resp.StatusCode, body)
				}
				_, hasSD := doc["systemData"]
				if hasSD != (v == "2020-06-01-preview") {
					t.Errorf("%s: systemData present = %v", v, hasSD)
				}
				for _, f := range []string{"id", "name", "type", "etag", "properties"} {
					if _, ok := doc[f]; !ok {
						t.Errorf("%s %s: no %s", v, p, f)
					}
				}
			}
		}
	})
}
