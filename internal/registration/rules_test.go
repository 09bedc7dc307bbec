package registration_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/tenancy"
)

// rulesWorld is the shared directory with registrations for each rule:
// contoso's approved PayAsYouUse stamp, an unapproved one, a Capacity one,
// fabrikam's approved stamp, and one that reseller tailspin operates,
// registered with its customer Proseware's CSP subscription.
type rulesWorld struct {
	regs                                            *registration.Service
	approved, unapproved, capacity, fabri, reseller registration.Key
}

var (
	operator = auth.Principal{Role: auth.RoleOperator, TokenID: "op"}
	contoso  = auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "c"}
	fabrikam = auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "f"}
	tailspin = auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "t"}
	north    = auth.Principal{Role: auth.RolePartner, PartnerID: "northwind", TokenID: "n"}
	w        = storetest.World
)

func newRulesWorld(t *testing.T, backend string, resolver func(*directory.Service) registration.Resolver) *rulesWorld {
	t.Helper()
	ctx := t.Context()
	db := storetest.Open(t, backend)
	clk := clock.Manual(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC))
	dir := directory.NewService(db, clk)
	if _, err := dir.Import(ctx, "test", storetest.WorldJSON()); err != nil {
		t.Fatal(err)
	}
	var res registration.Resolver = dir
	if resolver != nil {
		res = resolver(dir)
	}
	rw := &rulesWorld{regs: registration.NewService(db, res, clk)}
	// Registrations are made with the real directory, whatever the rules
	// are then checked against.
	setup := registration.NewService(db, dir, clk)
	put := func(p auth.Principal, sub, name string, model registration.BillingModel, approve bool) registration.Key {
		k := registration.Key{SubscriptionID: sub, ResourceGroup: "azurestack", Name: name}
		tok := storetest.SignedToken(registration.Token{CloudID: tenancy.NewGUID(), ObjectID: tenancy.NewGUID(), BillingModel: model, AgreementNumber: map[bool]string{true: "EA-1"}[model == registration.Capacity]})
		loc := "global"
		if _, _, err := setup.Put(ctx, p, k, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{}); err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
		if approve {
			if _, err := setup.Approve(ctx, operator, k, true); err != nil {
				t.Fatalf("approve %s: %v", name, err)
			}
		}
		return k
	}
	rw.approved = put(contoso, w.ContosoDefault, "approved", registration.PayAsYouUse, true)
	rw.unapproved = put(contoso, w.ContosoDefault, "unapproved", registration.PayAsYouUse, false)
	rw.capacity = put(contoso, w.ContosoDefault, "capacity", registration.Capacity, true)
	rw.fabri = put(fabrikam, w.FabrikamDefault, "fabrikam", registration.PayAsYouUse, true)
	rw.reseller = put(tailspin, w.Proseware.Subscription, "tailspin", registration.PayAsYouUse, true)
	return rw
}

// TestAddingATenantFollowsTheSeedRules checks each of the eleven rules for
// adding an end customer (customerSubscriptions PUT), in the order the seed
// gives them, with the code and kind each failure answers, and that a
// refused PUT leaves no mapping behind.
func TestAddingATenantFollowsTheSeedRules(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		rw := newRulesWorld(t, backend, nil)
		missing := registration.Key{SubscriptionID: w.ContosoDefault, ResourceGroup: "azurestack", Name: "nope"}
		for _, c := range []struct {
			rule     string
			p        auth.Principal
			k        registration.Key
			sub, ten string
			pre      registration.Precondition
			code     string
			kind     arm.Kind
		}{
			{"1. the registration exists", contoso, missing, w.Adatum.Subscription, w.Adatum.Tenant, registration.Precondition{}, "RegistrationNotFound", arm.NotFound},
			{"1. the caller may manage its subscription", north, rw.approved, w.Adatum.Subscription, w.Adatum.Tenant, registration.Precondition{}, "RegistrationNotFound", arm.NotFound},
			{"2. the billing model is PayAsYouUse", contoso, rw.capacity, w.Adatum.Subscription, w.Adatum.Tenant, registration.Precondition{}, "CustomerSubscriptionsNotAllowed", arm.Invalid},
			{"3. the registration is approved for multi-tenancy", contoso, rw.unapproved, w.Adatum.Subscription, w.Adatum.Tenant, registration.Precondition{}, "UnauthorizedCspRegistration", arm.Denied},
			{"4. the customer subscription ID is a GUID", contoso, rw.approved, "not-a-guid", w.Adatum.Tenant, registration.Precondition{}, "InvalidCustomerSubscriptionId", arm.Invalid},
			{"6. the directory knows the subscription", contoso, rw.approved, "99999999-9999-4999-8999-999999999999", w.Adatum.Tenant, registration.Precondition{}, "InvalidCustomerSubscriptionId", arm.Invalid},
			{"7. it is a CSP subscription", contoso, rw.approved, w.EA, w.Adatum.Tenant, registration.Precondition{}, "InvalidCSPSubscription", arm.Invalid},
			{"8. it rolls up to the default subscription's partner", contoso, rw.approved, w.Woodgrove.Subscription, w.Woodgrove.Tenant, registration.Precondition{}, "BadCustomerSubscriptionId", arm.Invalid},
			{"1. a reseller does not manage its provider's stamp", tailspin, rw.fabri, w.Proseware.Subscription, w.Proseware.Tenant, registration.Precondition{}, "RegistrationNotFound", arm.NotFound},
			{"9. a reseller adds only its own customers", tailspin, rw.reseller, w.Relecloud.Subscription, w.Relecloud.Tenant, registration.Precondition{}, "InvalidCustomerSubscriptionId", arm.Invalid},
			{"10. the tenant owns the subscription", contoso, rw.approved, w.Adatum.Subscription, w.Litware.Tenant, registration.Precondition{}, "CustomerTenantMismatch", arm.Invalid},
			{"11. If-Match needs a mapping to match", contoso, rw.approved, w.Adatum.Subscription, w.Adatum.Tenant, registration.Precondition{IfMatch: "*"}, "PreconditionFailed", arm.Precondition},
		} {
			_, err := rw.regs.PutCustomerSubscription(context.Background(), c.p, c.k, c.sub, c.ten, c.pre)
			e, ok := arm.As(err)
			if !ok || e.Code != c.code || e.Kind != c.kind {
				t.Errorf("rule %s: %v, want %s (%s)", c.rule, err, c.code, c.kind)
			}
			if c.k != missing {
				if got, _ := rw.regs.GetCustomerSubscription(context.Background(), operator, c.k, c.sub); got.ID != "" {
					t.Errorf("rule %s: the refused PUT left a mapping %+v", c.rule, got)
				}
			}
		}
		// What the rules let through: a partner's own customer, a
		// reseller's own customer on the stamp it operates, and the provider
		// adding a reseller's customer; If-None-Match then guards a mapping.
		for _, ok := range []struct {
			p        auth.Principal
			k        registration.Key
			sub, ten string
		}{
			{contoso, rw.approved, w.Adatum.Subscription, w.Adatum.Tenant},
			{tailspin, rw.reseller, w.Proseware.Subscription, w.Proseware.Tenant},
			{fabrikam, rw.fabri, w.Relecloud.Subscription, w.Relecloud.Tenant},
		} {
			if _, err := rw.regs.PutCustomerSubscription(context.Background(), ok.p, ok.k, ok.sub, ok.ten, registration.Precondition{}); err != nil {
				t.Errorf("%s adding %s: %v", ok.p.Actor(), ok.sub, err)
			}
		}
		_, err := rw.regs.PutCustomerSubscription(context.Background(), contoso, rw.approved, w.Adatum.Subscription, w.Adatum.Tenant, registration.Precondition{IfNoneMatch: "*"})
		if e, ok := arm.As(err); !ok || e.Code != "PreconditionFailed" {
			t.Errorf("11. If-None-Match: * on an existing mapping: %v", err)
		}
	})
}

// TestADirectoryOutageWritesNothing is rule 5: when the directory cannot
// answer, the PUT is a 502 MetadataResolverBadGatewayError, never a guess,
// and nothing is written.
func TestADirectoryOutageWritesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		rw := newRulesWorld(t, backend, func(*directory.Service) registration.Resolver {
			// A real remote resolver, pointed where nothing listens.
			r, err := directory.NewRemoteResolver("http://127.0.0.1:1", "token", 200*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			return r
		})
		_, err := rw.regs.PutCustomerSubscription(context.Background(), contoso, rw.approved, w.Adatum.Subscription, w.Adatum.Tenant, registration.Precondition{})
		e, ok := arm.As(err)
		if !ok || e.Code != "MetadataResolverBadGatewayError" || e.Kind != arm.Upstream {
			t.Fatalf("PUT with the directory down: %v", err)
		}
		if got, _ := rw.regs.GetCustomerSubscription(context.Background(), operator, rw.approved, w.Adatum.Subscription); got.ID != "" || strings.Contains(e.Message, "fabrikam") {
			t.Fatalf("the outage wrote %+v or leaked another partner: %s", got, e.Message)
		}
	})
}
