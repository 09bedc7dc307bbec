package cli

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestWatchAnnouncesOnce: the billing watch announces each open draft once
// a day at most and only when its total moved, usage without a price once
// per period, partner, meter and currency, and a stamp gone silent once
// per stall, however many rounds and instances look; each partner sees
// its own.
func TestWatchAnnouncesOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		w := newBillingWorld(t, backend)
		e := w.env
		second := buildApp(t, Options{DB: e.dsn, Clock: w.clk, Logger: e.app.Logger})
		step := func() {
			t.Helper()
			for _, app := range []*App{e.app, second, e.app} {
				if err := app.Watch.Step(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		subjects := func(p auth.Principal, typ string) []string {
			t.Helper()
			evs, err := e.app.Notify.Events(ctx, p, notify.EventQuery{Type: typ, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, ev := range evs {
				out = append(out, ev.Subject)
			}
			sort.Strings(out)
			return out
		}
		step()
		if got := strings.Join(subjects(w.op, notify.InvoiceDraftUpdated), " "); got != "invoices/SB-202610-contoso invoices/SB-202610-fabrikam" {
			t.Fatalf("drafts announced: %s", got)
		}
		// More usage the same day: the draft moved, but it was announced
		// today already.
		w.ingest(t, w.contoso, time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC), []usageRec{{"local-adatum", W.Adatum.Tenant, simulate.MeterBaseVM, "5", W.Adatum.Subscription, "vm-more"}})
		step()
		if n := len(subjects(w.op, notify.InvoiceDraftUpdated)); n != 2 {
			t.Fatalf("the same day brought %d draft announcements, want still 2", n)
		}
		// November 2nd, October finalized: October's late usage goes on
		// November's invoice, a new draft, with queue storage that has no
		// price; Fabrikam's stamp has been silent since October 31st.
		w.clk.Set(time.Date(2026, 11, 2, 2, 0, 0, 0, time.UTC))
		if _, err := e.app.Billing.Finalize(ctx, w.op, "2026-10"); err != nil {
			t.Fatal(err)
		}
		w.ingest(t, w.contoso, time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC), []usageRec{{"local-adatum", W.Adatum.Tenant, simulate.MeterBaseVM, "7", W.Adatum.Subscription, "vm-late"}})
		w.ingest(t, w.contoso, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), []usageRec{{"local-adatum", W.Adatum.Tenant, simulate.MeterQueueCapacity, "3", W.Adatum.Subscription, "queue"}})
		step()
		step()
		sum, err := e.app.Billing.Period(ctx, w.op, "2026-11")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, u := range sum.Unpriced {
			want["meters/"+u.MeterID+" "+u.PartnerID] = true
		}
		evs, err := e.app.Notify.Events(ctx, w.op, notify.EventQuery{Type: notify.UsageUnpriced, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || len(evs) != len(want) {
			t.Fatalf("%d unpriced events for %d unpriced meters and partners: %v", len(evs), len(want), want)
		}
		for _, ev := range evs {
			if !want[ev.Subject+" "+ev.PartnerID] || ev.PartnerID != "contoso" {
				t.Fatalf("unpriced event %s for %s is not in the period's summary", ev.Subject, ev.PartnerID)
			}
		}
		if got := subjects(auth.Principal{Role: auth.RolePartner, PartnerID: "contoso"}, notify.InvoiceDraftUpdated); strings.Join(got, " ") != "invoices/SB-202610-contoso invoices/SB-202611-contoso" {
			t.Fatalf("contoso's draft announcements: %v", got)
		}
		lag := subjects(auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam"}, notify.BridgeLagging)
		if len(lag) != 1 || !strings.HasSuffix(lag[0], "/registrations/fabrikam-stamp") {
			t.Fatalf("fabrikam's lagging stamps: %v", lag)
		}
		if got := subjects(auth.Principal{Role: auth.RolePartner, PartnerID: "contoso"}, notify.BridgeLagging); len(got) != 0 {
			t.Fatalf("contoso hears of stamps: %v", got)
		}
	})
}
