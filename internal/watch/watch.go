// Package watch owns nothing but a loop: it reads commerce's open bills and
// its stamps' last deliveries, and records the events partners and the
// operator should hear of before an invoice arrives (package notify): a
// draft invoice whose total changed (at most once a day per draft), usage
// on a meter without a price (once per period, partner, meter and
// currency), and a stamp that stopped forwarding (once per stall).
//
// Each event has an ID made of what it reports, so a second instance, or a
// watcher restarted mid-round, records it once.
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/billing"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/notify"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
)

// Bills is the billing the watcher reads, as the operator.
type Bills interface {
	Invoices(ctx context.Context, p auth.Principal, period string) ([]billing.Invoice, error)
	Period(ctx context.Context, p auth.Principal, period string) (billing.PeriodSummary, error)
}

// Stamps is what commerce knows of each stamp's deliveries.
type Stamps interface {
	Health(ctx context.Context, since time.Time) ([]ledger.StampHealth, error)
}

// Owners finds who a stamp's registration is billed to.
type Owners interface {
	ByUID(ctx context.Context, uid string) (registration.Registration, bool, error)
}

// Resolver is the directory's answer to who is billed for a subscription.
type Resolver interface {
	Resolve(ctx context.Context, id string) (directory.ResolvedSubscription, error)
}

// Events is what the watcher asks of the event log.
type Events interface {
	Last(ctx context.Context, typ, subject string) (notify.Event, bool, error)
}

// Watcher records billing events as it finds them.
type Watcher struct {
	db     *store.DB
	clock  *clock.Clock
	bills  Bills
	stamps Stamps
	owners Owners
	dir    Resolver
	events Events
	// Lag is how long a stamp may go without delivering before it is
	// announced as lagging: a stack forwards each reported hour once it
	// has closed, so a few hours of silence is a stamp down or cut off.
	Lag time.Duration
}

// New builds a Watcher.
func New(db *store.DB, c *clock.Clock, bills Bills, stamps Stamps, owners Owners, dir Resolver, events Events) *Watcher {
	return &Watcher{db: db, clock: c, bills: bills, stamps: stamps, owners: owners, dir: dir, events: events, Lag: 6 * time.Hour}
}

var operator = auth.Principal{Role: auth.RoleOperator, TokenID: "watch"}

// Step looks once; each watch that fails is reported and the others run.
func (w *Watcher) Step(ctx context.Context) error {
	now := w.clock.Now()
	period := clock.Period(now)
	return errors.Join(w.drafts(ctx, now, period), w.unpriced(ctx, now, period), w.lagging(ctx, now))
}

// roundLock lets one of several commerce instances on one PostgreSQL look
// in a round; the events' IDs keep them once either way.
const roundLock = 7_261_004_131

// Run looks every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context, every time.Duration, logger *slog.Logger) {
	for {
		if _, err := w.db.TryAlone(ctx, roundLock, func() error { return w.Step(ctx) }); err != nil && ctx.Err() == nil {
			logger.Error("billing watch failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (w *Watcher) record(ctx context.Context, e notify.Event, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	e.Data = b
	return w.db.Write(ctx, func(tx *store.Tx) error {
		_, err := notify.Record(ctx, tx, e)
		return err
	})
}

// drafts announces each open draft whose total moved since it was last
// announced, at most once a day.
func (w *Watcher) drafts(ctx context.Context, now time.Time, period string) error {
	invs, err := w.bills.Invoices(ctx, operator, period)
	if err != nil {
		return fmt.Errorf("draft invoices: %w", err)
	}
	day := now.Format("2006-01-02")
	for _, inv := range invs {
		if inv.Status != "draft" || inv.Total.IsZero() {
			continue
		}
		subject := "invoices/" + inv.Number
		last, ok, err := w.events.Last(ctx, notify.InvoiceDraftUpdated, subject)
		if err != nil {
			return err
		}
		if ok {
			var was struct{ Total json.Number }
			if json.Unmarshal(last.Data, &was) == nil && was.Total.String() == inv.Total.String() {
				continue
			}
		}
		lines := 0
		for _, s := range inv.Sections {
			lines += len(s.Lines)
		}
		if err := w.record(ctx, notify.Event{ID: "msg_invoice_draft_" + inv.Number + "_" + day, Type: notify.InvoiceDraftUpdated, At: now, PartnerID: inv.PartnerID, Subject: subject},
			map[string]any{"invoiceNumber": inv.Number, "partnerId": inv.PartnerID, "period": inv.Period, "currency": inv.Currency, "total": inv.Total, "lines": lines, "asOf": now}); err != nil {
			return err
		}
	}
	return nil
}

// unpriced announces usage on a meter without a price in force, to the
// operator (who imports price lists) and the partner whose invoice lacks it.
func (w *Watcher) unpriced(ctx context.Context, now time.Time, period string) error {
	sum, err := w.bills.Period(ctx, operator, period)
	if err != nil {
		return fmt.Errorf("period summary: %w", err)
	}
	seen := map[string]bool{}
	for _, u := range sum.Unpriced {
		key := strings.Join([]string{period, u.PartnerID, u.MeterID, u.Currency}, "_")
		if seen[key] {
			continue
		}
		seen[key] = true
		if err := w.record(ctx, notify.Event{ID: "msg_usage_unpriced_" + key, Type: notify.UsageUnpriced, At: now, PartnerID: u.PartnerID, Subject: "meters/" + u.MeterID},
			map[string]any{"period": period, "partnerId": u.PartnerID, "meterId": u.MeterID, "currency": u.Currency, "firstDay": u.Day.Format("2006-01-02")}); err != nil {
			return err
		}
	}
	return nil
}

// lagging announces each stamp that has delivered before and not for Lag.
func (w *Watcher) lagging(ctx context.Context, now time.Time) error {
	health, err := w.stamps.Health(ctx, now.Add(-time.Hour))
	if err != nil {
		return fmt.Errorf("stamp health: %w", err)
	}
	for _, h := range health {
		if h.LastReceived.IsZero() || now.Sub(h.LastReceived) < w.Lag {
			continue
		}
		ev := notify.Event{ID: fmt.Sprintf("msg_bridge_lagging_%s_%d", h.RegistrationUID, h.LastReceived.Unix()), Type: notify.BridgeLagging, At: now, Subject: "stamps/" + h.CloudID}
		reg, ok, err := w.owners.ByUID(ctx, h.RegistrationUID)
		if err != nil {
			return err
		}
		if ok {
			ev.Subject = reg.Key.ResourceID()
			if r, err := w.dir.Resolve(ctx, reg.Key.SubscriptionID); err == nil {
				ev.PartnerID, ev.ResellerID = r.RollsUpTo, r.Reseller
			}
		}
		if err := w.record(ctx, ev, map[string]any{"registrationUid": h.RegistrationUID, "cloudId": h.CloudID, "lastReceived": h.LastReceived,
			"silentFor": now.Sub(h.LastReceived).Round(time.Minute).String()}); err != nil {
			return err
		}
	}
	return nil
}
