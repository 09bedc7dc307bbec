package cli

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/services/preview/commerce/mgmt/2015-06-01-preview/commerce"
	"github.com/Azure/go-autorest/autorest"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestRateCardSDK reads the price list in force through Azure's own
// RateCardClient, as a CSP's tools do: every meter of Region "Azure Stack"
// with its tiers, from a partner's own subscriptions only, on both engines.
func TestRateCardSDK(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		clk := clock.Manual(time.Date(2026, 10, 15, 12, 0, 0, 0, time.UTC))
		e := newTestEnv(t, backend, func(o *Options) { o.Clock = clk })
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "t"}
		for _, pl := range []string{testPriceListUSD, testPriceListEUR} {
			if _, err := e.app.Billing.ImportPriceList(ctx, op, "test", []byte(pl), time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
		client := func(sub, token string) commerce.RateCardClient {
			c := commerce.NewRateCardClientWithBaseURI(e.url, sub)
			c.Authorizer = e.authorizer(token)
			c.RetryAttempts, c.RetryDuration = 1, 0
			return c
		}
		const filter = "OfferDurableId eq 'MS-AZR-0145P' and Currency eq 'USD' and Locale eq 'en-US' and RegionInfo eq 'US'"
		card, err := client(W.ContosoDefault, e.tokens["contoso"]).Get(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		if *card.Currency != "USD" || *card.Locale != "en-US" || *card.IsTaxIncluded || card.Meters == nil || len(*card.Meters) != 5 {
			t.Fatalf("rate card: %s %s tax %v, %d meters", *card.Currency, *card.Locale, *card.IsTaxIncluded, len(*card.Meters))
		}
		var base *commerce.MeterInfo
		for i, m := range *card.Meters {
			if *m.MeterRegion != "Azure Stack" {
				t.Errorf("meter %s in region %q: only Azure Stack meters are priced", m.MeterID, *m.MeterRegion)
			}
			if m.MeterSubCategory != nil && *m.MeterSubCategory == "Base VM" {
				base = &(*card.Meters)[i]
			}
		}
		if base == nil || base.MeterID.String() != "9c23489b-c01c-5893-b898-412bd252b0db" || *base.MeterName != "1 Core" || *base.MeterCategory != "Azure Stack Hub" ||
			*base.Unit != "1 Hour" || len(base.MeterRates) != 2 || *base.MeterRates["0"] != 0.008 || *base.MeterRates["500"] != 0.0065 ||
			*base.IncludedQuantity != 0 || !base.EffectiveDate.Time.Equal(time.Date(2019, 12, 3, 0, 0, 0, 0, time.UTC)) || base.MeterTags == nil {
			t.Fatalf("the base VM meter: %+v", base)
		}
		// Another currency is another price list.
		eur, err := client(W.FabrikamDefault, e.tokens["fabrikam"]).Get(ctx, strings.ReplaceAll(filter, "USD", "EUR"))
		if err != nil || *eur.Currency != "EUR" || len(*eur.Meters) != 3 {
			t.Fatalf("EUR rate card: %v %+v", err, eur)
		}
		// The operator reads any partner's own subscription.
		if _, err := client(W.FabrikamDefault, e.operator).Get(ctx, filter); err != nil {
			t.Fatal(err)
		}
		refused := func(name string, c commerce.RateCardClient, f string, status int, code string) {
			t.Helper()
			_, err := c.Get(ctx, f)
			de, ok := err.(autorest.DetailedError)
			if !ok || de.StatusCode != status || !strings.Contains(err.Error(), code) {
				t.Errorf("%s: %v, want %d %s", name, err, status, code)
			}
		}
		// End customers see no CSP prices; another partner's subscription
		// does not exist for the caller; resellers, tenants and stack roles
		// are refused.
		refused("a customer's subscription", client(W.Adatum.Subscription, e.tokens["contoso"]), filter, http.StatusForbidden, "RateCardNotAvailable")
		refused("a customer's subscription, as the operator", client(W.Adatum.Subscription, e.operator), filter, http.StatusForbidden, "RateCardNotAvailable")
		refused("another partner's subscription", client(W.FabrikamDefault, e.tokens["contoso"]), filter, http.StatusNotFound, "SubscriptionNotFound")
		refused("an unknown subscription", client("99999999-0000-4000-8000-000000000001", e.tokens["contoso"]), filter, http.StatusNotFound, "SubscriptionNotFound")
		refused("a reseller on its customer's subscription", client(W.Proseware.Subscription, e.tokens["tailspin"]), filter, http.StatusForbidden, "RateCardNotAvailable")
		refused("a reseller on another's", client(W.Relecloud.Subscription, e.tokens["tailspin"]), filter, http.StatusNotFound, "SubscriptionNotFound")
		// Bad filters are 400s in the ARM envelope.
		for _, f := range []string{
			"",
			"Currency eq 'USD'",
			"OfferDurableId eq 'MS-AZR-0145P' and Currency eq 'usd' and Locale eq 'en-US' and RegionInfo eq 'US'",
			"OfferDurableId eq 'MS-AZR-0145P' and Currency eq 'USD' and Currency eq 'USD' and Locale eq 'en-US' and RegionInfo eq 'US'",
			"OfferDurableId eq 'MS-AZR-0145P' and Currency eq 'USD' and Locale eq 'en-US' and RegionInfo eq 'US' and Color eq 'red'",
			"OfferDurableId = 'MS-AZR-0145P'",
			strings.Repeat("x", 600),
		} {
			refused("filter "+f, client(W.ContosoDefault, e.tokens["contoso"]), f, http.StatusBadRequest, "InvalidFilter")
		}
		refused("another offer", client(W.ContosoDefault, e.tokens["contoso"]), strings.ReplaceAll(filter, "0145P", "0003P"), http.StatusBadRequest, "OfferNotSupported")
		refused("a currency without prices", client(W.ContosoDefault, e.tokens["contoso"]), strings.ReplaceAll(filter, "USD", "JPY"), http.StatusBadRequest, "CurrencyNotSupported")
		// Tenants and stack roles have no route to prices at all.
		for _, role := range []auth.Role{auth.RoleTenant, auth.RoleStackOperator} {
			sub := ""
			if role == auth.RoleTenant {
				sub = W.Adatum.Subscription
			}
			tok, _, err := e.app.Auth.Create(ctx, role, "", sub, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			refused(string(role), client(W.ContosoDefault, tok), filter, http.StatusForbidden, "AuthorizationFailed")
		}
	})
}
