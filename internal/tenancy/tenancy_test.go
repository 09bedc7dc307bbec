package tenancy_test

import (
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store/storetest"
	"github.com/stackbill/stackbill/internal/tenancy"
)

// stack is a stack's tenancy with two directories onboarded, one user
// subscription of the default provider, and a delegated provider with a
// subscription of its own.
type stack struct {
	svc                    *tenancy.Service
	clk                    *clock.Clock
	provider, dp, ownSub   string
	dpSub, t1, t2          string
	op, delegated, tenantP auth.Principal
}

func newStack(t *testing.T, backend string) *stack {
	t.Helper()
	ctx := t.Context()
	db := storetest.Open(t, backend)
	clk := clock.Manual(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC))
	s := &stack{clk: clk, provider: tenancy.NewGUID(), dp: tenancy.NewGUID(), ownSub: tenancy.NewGUID(), dpSub: tenancy.NewGUID(), t1: tenancy.NewGUID(), t2: tenancy.NewGUID()}
	s.svc = tenancy.NewService(db, clk, s.provider)
	s.op = auth.Principal{Role: auth.RoleStackOperator, TokenID: "op"}
	s.delegated = auth.Principal{Role: auth.RoleStackOperator, SubscriptionID: s.dp, TokenID: "dp"}
	s.tenantP = auth.Principal{Role: auth.RoleTenant, SubscriptionID: s.ownSub, TokenID: "tenant"}
	for _, tn := range []string{s.t1, s.t2} {
		if _, _, err := s.svc.PutDirectoryTenant(ctx, s.op, s.provider, tenancy.DirectoryTenant{Name: tn + ".onmicrosoft.com", TenantID: tn}); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []struct {
		id, tenant, dp string
	}{{s.dp, s.t1, ""}, {s.ownSub, s.t1, ""}, {s.dpSub, s.t2, s.dp}} {
		if _, _, err := s.svc.PutSubscription(ctx, s.op, s.provider, sub.id, tenancy.Subscription{TenantID: sub.tenant, DelegatedProviderSubscriptionID: sub.dp}); err != nil {
			t.Fatalf("subscription %s: %v", sub.id, err)
		}
	}
	return s
}

// TestUserSubscriptionRules: what a user subscription PUT takes and refuses,
// with the code and kind of each refusal, from the stack operator and from a
// delegated provider's operator.
func TestUserSubscriptionRules(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		s := newStack(t, backend)
		ctx := t.Context()
		fresh := tenancy.NewGUID()
		for _, c := range []struct {
			name     string
			p        auth.Principal
			provider string
			id       string
			in       tenancy.Subscription
			code     string
			kind     arm.Kind
		}{
			{"the provider subscription is a GUID", s.op, "nope", fresh, tenancy.Subscription{TenantID: s.t1}, "InvalidSubscriptionId", arm.Invalid},
			{"the subscription ID is a GUID", s.op, s.provider, "nope", tenancy.Subscription{TenantID: s.t1}, "InvalidSubscriptionId", arm.Invalid},
			{"the body's ID is the path's", s.op, s.provider, fresh, tenancy.Subscription{SubscriptionID: tenancy.NewGUID(), TenantID: s.t1}, "InvalidRequestContent", arm.Invalid},
			{"the owner is a GUID", s.op, s.provider, fresh, tenancy.Subscription{TenantID: "someone"}, "InvalidRequestContent", arm.Invalid},
			{"the state is one Azure Stack knows", s.op, s.provider, fresh, tenancy.Subscription{TenantID: s.t1, State: "Asleep"}, "InvalidRequestContent", arm.Invalid},
			{"the owner's directory is onboarded", s.op, s.provider, fresh, tenancy.Subscription{TenantID: tenancy.NewGUID()}, "DirectoryTenantNotOnboarded", arm.Invalid},
			{"a delegated provider exists", s.op, s.provider, fresh, tenancy.Subscription{TenantID: s.t1, DelegatedProviderSubscriptionID: tenancy.NewGUID()}, "InvalidRequestContent", arm.Invalid},
			{"a delegated operator stays under its provider", s.delegated, s.provider, fresh, tenancy.Subscription{TenantID: s.t2}, "AuthorizationFailed", arm.Denied},
			{"a delegated operator cannot take the default provider's subscription", s.delegated, s.dp, s.ownSub, tenancy.Subscription{TenantID: s.t1}, "AuthorizationFailed", arm.Denied},
			{"a tenant manages no subscriptions", s.tenantP, s.provider, fresh, tenancy.Subscription{TenantID: s.t1}, "AuthorizationFailed", arm.Denied},
		} {
			_, _, err := s.svc.PutSubscription(ctx, c.p, c.provider, c.id, c.in)
			e, ok := arm.As(err)
			if !ok || e.Code != c.code || e.Kind != c.kind {
				t.Errorf("%s: %v, want %s (%s)", c.name, err, c.code, c.kind)
			}
			if exists, _ := s.svc.Exists(ctx, fresh); exists {
				t.Fatalf("%s: the refused PUT created %s", c.name, fresh)
			}
		}
		// The delegated operator manages its own provider's subscriptions.
		if _, _, err := s.svc.PutSubscription(ctx, s.delegated, s.dp, fresh, tenancy.Subscription{TenantID: s.t2}); err != nil {
			t.Fatalf("delegated PUT under its provider: %v", err)
		}
		if got, err := s.svc.GetSubscription(ctx, s.delegated, s.dp, fresh); err != nil || got.DelegatedProviderSubscriptionID != s.dp || got.State != "Enabled" {
			t.Fatalf("delegated GET: %+v %v", got, err)
		}
		// Out of its scope, the default provider's subscription answers as
		// one that does not exist would.
		if _, err := s.svc.GetSubscription(ctx, s.delegated, s.dp, s.ownSub); !arm.Is(err, arm.NotFound) {
			t.Fatalf("a delegated operator reading the default provider's subscription: %v", err)
		}
	})
}

// TestDirectoryTenantsAndOwnership: a directory that owns subscriptions is
// not offboarded; deleting a subscription keeps it (and its usage) as
// Deleted, answers false the second time, and its owners are kept in order.
func TestDirectoryTenantsAndOwnership(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		s := newStack(t, backend)
		ctx := t.Context()
		if _, err := s.svc.DeleteDirectoryTenant(ctx, s.op, s.provider, s.t1+".onmicrosoft.com"); !arm.Is(err, arm.Invalid) {
			t.Fatalf("offboarding a directory that owns subscriptions: %v", err)
		}
		// The subscription changes hands a day later.
		s.clk.Set(s.clk.Now().Add(24 * time.Hour))
		if _, _, err := s.svc.PutSubscription(ctx, s.op, s.provider, s.ownSub, tenancy.Subscription{TenantID: s.t2}); err != nil {
			t.Fatal(err)
		}
		since, owners, err := s.svc.Owners(ctx, s.ownSub)
		if err != nil || len(owners) != 2 || owners[0] != s.t1 || owners[1] != s.t2 || !since[1].Equal(s.clk.Now()) {
			t.Fatalf("owners %v since %v (%v), want %s then %s from %s", owners, since, err, s.t1, s.t2, s.clk.Now())
		}
		for i, want := range []bool{true, false} {
			deleted, err := s.svc.DeleteSubscription(ctx, s.op, s.provider, s.ownSub)
			if err != nil || deleted != want {
				t.Fatalf("delete #%d: %v %v, want %v", i+1, deleted, err, want)
			}
		}
		if got, ok, err := s.svc.Lookup(ctx, s.ownSub); err != nil || !ok || got.State != "Deleted" {
			t.Fatalf("a deleted subscription is kept as Deleted: %+v %v %v", got, ok, err)
		}
		if h, err := s.svc.History(ctx, s.op, s.provider, s.ownSub); err != nil || len(h) < 3 {
			t.Fatalf("history: %d versions (%v), want create, change of owner, delete", len(h), err)
		}
		if _, err := s.svc.GetDirectoryTenant(ctx, s.op, s.provider, "nobody.onmicrosoft.com"); !arm.Is(err, arm.NotFound) {
			t.Fatalf("an unknown directory: %v", err)
		}
	})
}
