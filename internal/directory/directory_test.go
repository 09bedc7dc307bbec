package directory_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

var operator = auth.Principal{Role: auth.RoleOperator, TokenID: "test"}

func newDirectory(t *testing.T, backend string) *directory.Service {
	t.Helper()
	db := storetest.Open(t, backend)
	dir := directory.NewService(db, clock.Manual(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)))
	if _, err := dir.Import(context.Background(), "test", storetest.WorldJSON()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestResolveRollsUpToTheBillingPartner: every subscription resolves to the
// partner who holds the billing relationship (a reseller's customer to its
// indirect provider, naming the reseller), and an unknown one is ErrNotFound.
// The directory snapshot billing uses bills exactly the CSP and CSPSS ones,
// to the same partner.
func TestResolveRollsUpToTheBillingPartner(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		dir := newDirectory(t, backend)
		snap, err := dir.Snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		w := storetest.World
		for _, c := range []struct {
			sub                      string
			offer                    directory.Offer
			rollsUp, reseller, owner string
		}{
			{w.ContosoDefault, directory.OfferCSPSS, "contoso", "", ""},
			{w.FabrikamDefault, directory.OfferCSPSS, "fabrikam", "", ""},
			{w.Adatum.Subscription, directory.OfferCSP, "contoso", "", w.Adatum.Tenant},
			{w.Proseware.Subscription, directory.OfferCSP, "fabrikam", "tailspin", w.Proseware.Tenant},
			{w.Relecloud.Subscription, directory.OfferCSP, "fabrikam", "wingtip", w.Relecloud.Tenant},
			{w.EA, directory.OfferEA, "", "", ""},
			{w.ContosoPAYG, directory.OfferPAYG, "contoso", "", ""},
		} {
			r, err := dir.Resolve(context.Background(), c.sub)
			if err != nil || r.Offer != c.offer || r.RollsUpTo != c.rollsUp || r.Reseller != c.reseller || r.CustomerTenantID != c.owner {
				t.Errorf("%s: %+v %v, want %s rolling up to %q (reseller %q, owner %q)", c.sub, r, err, c.offer, c.rollsUp, c.reseller, c.owner)
			}
			// Billing asks the snapshot, registration asks Resolve: one rule.
			a, billed := snap.Account(c.sub)
			csp := c.offer == directory.OfferCSP || c.offer == directory.OfferCSPSS
			if billed != csp || (billed && (a != directory.Account{BillTo: c.rollsUp, Reseller: c.reseller, Customer: c.owner})) {
				t.Errorf("%s: billed %v to %+v, want billed %v to %s (reseller %q, customer %q)", c.sub, billed, a, csp, c.rollsUp, c.reseller, c.owner)
			}
		}
		if _, err := dir.Resolve(context.Background(), "99999999-9999-4999-8999-999999999999"); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("an unknown subscription: %v", err)
		}
	})
}

// TestWhoMayReadAndChangeTheDirectory: each role reads its own part and
// nothing else, and what it may not see answers exactly as what does not
// exist.
func TestWhoMayReadAndChangeTheDirectory(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		dir := newDirectory(t, backend)
		ctx := t.Context()
		w := storetest.World
		op := auth.Principal{Role: auth.RoleOperator, TokenID: "op"}
		contoso := auth.Principal{Role: auth.RolePartner, PartnerID: "contoso", TokenID: "c"}
		fabrikam := auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam", TokenID: "f"}
		tailspin := auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin", TokenID: "t"}
		tenant := auth.Principal{Role: auth.RoleTenant, SubscriptionID: w.Adatum.Subscription, TokenID: "u"}
		reads := []struct {
			who      auth.Principal
			customer string
			visible  bool
		}{
			{op, w.Woodgrove.Tenant, true},
			{contoso, w.Adatum.Tenant, true},
			{contoso, w.Proseware.Tenant, false},
			{fabrikam, w.Proseware.Tenant, true}, // a provider sees its resellers' customers
			{fabrikam, w.Adatum.Tenant, false},
			{tailspin, w.Proseware.Tenant, true},
			{tailspin, w.Relecloud.Tenant, false}, // not another reseller's
		}
		for _, c := range reads {
			_, err := dir.GetCustomer(ctx, c.who, c.customer)
			_, missing := dir.GetCustomer(ctx, c.who, "99999999-9999-4999-8999-999999999999")
			switch {
			case c.visible && err != nil:
				t.Errorf("%s reading %s: %v", c.who.Actor(), c.customer, err)
			case !c.visible && (err == nil || !sameAnswer(err, missing)):
				t.Errorf("%s reading %s: %v; a missing customer answers %v", c.who.Actor(), c.customer, err, missing)
			}
		}
		if _, err := dir.ListCustomers(ctx, tenant, ""); !arm.Is(err, arm.Denied) {
			t.Errorf("an end customer listing the directory: %v", err)
		}
		// Changes: a reseller may add a subscription for its own customer
		// only, and a partner may not move another's customer.
		changes := []struct {
			name string
			do   func() error
			kind arm.Kind
		}{
			{"a reseller adds a CSP subscription for another reseller's customer", func() error {
				_, _, err := dir.PutSubscription(ctx, tailspin, directory.Subscription{ID: "12121212-0000-4000-8000-000000000001", Offer: directory.OfferCSP, Partner: "fabrikam", CustomerTenantID: w.Relecloud.Tenant})
				return err
			}, arm.Denied},
			{"a reseller adds a CSPSS subscription", func() error {
				_, _, err := dir.PutSubscription(ctx, tailspin, directory.Subscription{ID: "12121212-0000-4000-8000-000000000002", Offer: directory.OfferCSPSS, Partner: "fabrikam"})
				return err
			}, arm.Denied},
			{"a partner takes another partner's customer", func() error {
				_, _, err := dir.PutCustomer(ctx, contoso, directory.Customer{TenantID: w.Woodgrove.Tenant, Name: "Mine now", Partner: "contoso"})
				return err
			}, arm.Denied},
			{"a partner names another partner", func() error {
				_, _, err := dir.PutSubscription(ctx, contoso, directory.Subscription{ID: "12121212-0000-4000-8000-000000000003", Offer: directory.OfferCSP, Partner: "northwind", CustomerTenantID: w.Woodgrove.Tenant})
				return err
			}, arm.Denied},
			{"a partner edits the partner list", func() error {
				_, _, err := dir.PutPartner(ctx, contoso, directory.Partner{ID: "contoso", Name: "Contoso Renamed", Type: directory.DirectCSP})
				return err
			}, arm.Denied},
		}
		for _, c := range changes {
			if err := c.do(); !arm.Is(err, c.kind) {
				t.Errorf("%s: %v, want %s", c.name, err, c.kind)
			}
		}
		if c, err := dir.GetCustomer(ctx, op, w.Woodgrove.Tenant); err != nil || c.Partner != "northwind" {
			t.Errorf("a refused change changed the customer: %+v %v", c, err)
		}
		if _, _, err := dir.PutSubscription(ctx, tailspin, directory.Subscription{ID: "12121212-0000-4000-8000-000000000004", Offer: directory.OfferCSP, Partner: "fabrikam", CustomerTenantID: w.Proseware.Tenant}); err != nil {
			t.Errorf("a reseller adding a CSP subscription for its own customer: %v", err)
		}
	})
}

func sameAnswer(a, b error) bool {
	ea, oka := arm.As(a)
	eb, okb := arm.As(b)
	if oka != okb {
		return false
	}
	if !oka {
		return errors.Is(a, directory.ErrNotFound) == errors.Is(b, directory.ErrNotFound)
	}
	return ea.Kind == eb.Kind && ea.Code == eb.Code
}

// TestResolveCacheFollowsEveryChange: on PostgreSQL, while the store hears
// every process's changes, Resolve answers from memory; a change made by
// another process (the CLI, another commerce instance) is heard and
// answered within moments, and one made by this process at once. On SQLite
// nothing is kept, so every answer is read.
func TestResolveCacheFollowsEveryChange(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		dsn := storetest.DSN(t, backend)
		clk := clock.Manual(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC))
		open := func() (*store.DB, *directory.Service) {
			db := storetest.OpenDSN(t, dsn)
			return db, directory.NewService(db, clk)
		}
		db, here := open()
		_, elsewhere := open()
		if _, err := here.Import(ctx, "test", storetest.WorldJSON()); err != nil {
			t.Fatal(err)
		}
		// Hooks run in the order registered: once this one hears the
		// listener start, the cache (registered by NewService) has too.
		var started atomic.Bool
		db.OnChange("stackbill_directory", func(listening bool) { started.Store(listening) })
		lctx, stop := context.WithCancel(ctx)
		defer stop()
		go db.ListenChanges(lctx)
		if backend == "postgres" {
			storetest.WaitFor(t, "the store to listen", started.Load)
		}
		sub := storetest.World.ContosoPAYG
		for range 3 {
			if r, err := here.Resolve(ctx, sub); err != nil || r.RollsUpTo != "contoso" {
				t.Fatalf("resolve: %+v %v", r, err)
			}
		}
		hits, _ := here.CacheStats()
		if want := map[string]int64{"sqlite": 0, "postgres": 2}[backend]; hits != want {
			t.Fatalf("%d of 3 answers came from memory, want %d", hits, want)
		}
		// Another process removes it: heard, and answered as missing.
		if _, err := elsewhere.DeleteSubscription(ctx, operator, sub); err != nil {
			t.Fatal(err)
		}
		storetest.WaitFor(t, "the other process's change to be answered", func() bool {
			_, err := here.Resolve(ctx, sub)
			return errors.Is(err, directory.ErrNotFound)
		})
		// This process puts it back under another partner: answered at once.
		if _, _, err := here.PutSubscription(ctx, operator, directory.Subscription{ID: sub, Offer: directory.OfferPAYG, Partner: "fabrikam"}); err != nil {
			t.Fatal(err)
		}
		if r, err := here.Resolve(ctx, sub); err != nil || r.RollsUpTo != "fabrikam" {
			t.Fatalf("after this process's own change: %+v %v, want it under fabrikam", r, err)
		}
	})
}
