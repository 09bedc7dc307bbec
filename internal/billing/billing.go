// Package billing is commerce's billing half: CSP price list versions, rating
// of forwarded usage at the prices in force on each usage date, monthly
// invoices to the partner who holds the billing relationship (the direct CSP,
// or the indirect provider with a section per reseller), finalization with
// late usage and credit notes, reconciliation exports with Partner Center
// column names, and the chargeback side: partners' and resellers' price books
// and the customer statements they produce.
//
// Rating is exact decimal arithmetic. Quantities are summed exactly; unit
// prices keep every digit; each invoice line is rounded once to the
// currency's minor unit, half away from zero, and an invoice total is the sum
// of its rounded lines. Daily reconciliation rows are rounded with a running
// remainder so that they add up to their invoice line to the cent.
package billing

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
)

//go:embed data/sample-price-list.csv
var samplePriceList []byte

// Service is the billing service.
type Service struct {
	db     *store.DB
	clock  *clock.Clock
	logger *slog.Logger
	// Grace is how long after a period ends its invoices stay drafts, so
	// that usage still on its way from the stacks lands on them.
	grace time.Duration
	// ExportStale is how long a running export may go without progress
	// before another runner (on this or another instance) takes it over.
	ExportStale time.Duration
	ledger      Ledger
	dir         Directory
	regs        Registrations
}

// Directory is the partner directory, as billing reads it: a snapshot that
// also answers who is billed for a subscription.
type Directory interface {
	Snapshot(ctx context.Context) (*directory.Snapshot, error)
}

// Registrations names registrations on bills and reconciliation files.
type Registrations interface {
	Labels(ctx context.Context) (map[string]registration.Label, error)
}

// Ledger is commerce's forwarded usage, as billing reads and stamps it.
// Settle completes it (batches acknowledged to a stack's bridge but not yet
// materialised), so that what billing reads includes them; the rest select
// and sum it (ledger.Selection).
type Ledger interface {
	Settle(ctx context.Context) error
	DaySums(ctx context.Context, q store.Querier, sel ledger.Selection) ([]ledger.DaySum, int64, error)
	Count(ctx context.Context, q store.Querier, sel ledger.Selection) (int64, error)
	EarliestDay(ctx context.Context, q store.Querier, sel ledger.Selection) (time.Time, bool, error)
	Rows(ctx context.Context, q store.Querier, sel ledger.Selection, fn func(*ledger.Row) error) error
	EarliestUnbilled(ctx context.Context, q store.Querier, before time.Time) (time.Time, bool, error)
	MarkBilled(ctx context.Context, tx *store.Tx, period string, end, receivedBefore time.Time) error
	PurgeBilled(ctx context.Context, before string) (int64, error)
	LocalOnly(ctx context.Context, q store.Querier, start, end time.Time, fn func(sub, meterKey string, qty []byte) error) error
	BilledIn(ctx context.Context, q store.Querier, from, to string, start, end time.Time, fn func(sub, meter string, qty []byte) error) error
}

// NewService builds the billing service. grace is how long invoices stay
// drafts after their month ends; the ledger is settled before usage is read.
func NewService(db *store.DB, c *clock.Clock, logger *slog.Logger, grace time.Duration, l Ledger, dir Directory, regs Registrations) *Service {
	return &Service{db: db, clock: c, logger: logger, grace: grace, ExportStale: 2 * time.Minute, ledger: l, dir: dir, regs: regs}
}

// settle completes forwarded usage before a read of commerce_usage. It
// takes the writer, so callers run it before their own write transaction.
func (s *Service) settle(ctx context.Context) error {
	return s.ledger.Settle(ctx)
}

// MinorUnits is a currency's number of decimal places (ISO 4217), which is
// where invoice lines are rounded. Unknown codes are refused.
func MinorUnits(code string) (int32, bool) {
	switch code {
	case "JPY", "KRW", "CLP", "VND", "ISK", "UGX", "XOF", "XAF", "PYG":
		return 0, true
	case "BHD", "KWD", "OMR", "JOD", "TND", "LYD", "IQD":
		return 3, true
	case "USD", "EUR", "GBP", "AUD", "CAD", "CHF", "DKK", "NOK", "SEK", "NZD", "INR", "BRL", "ZAR", "SGD", "HKD", "MXN",
		"PLN", "CZK", "TWD", "CNY", "ARS", "COP", "IDR", "ILS", "MYR", "SAR", "TRY", "AED", "EGP", "HUF", "THB", "PHP",
		"RON", "BGN", "QAR", "NGN", "KES", "PEN", "UAH", "PKR", "BDT", "LKR", "MAD", "RSD", "HRK":
		return 2, true
	}
	return 0, false
}

// FormatAmount writes an amount with its currency's minor digits (50671 JPY,
// 2.91 USD), as every view of a bill shows it.
func FormatAmount(q money.Quantity, currency string) string {
	minor, ok := MinorUnits(currency)
	if !ok {
		minor = 2
	}
	return q.StringFixed(minor)
}

// Agreement is a bill-to partner's agreement: the currency it is billed in.
type Agreement struct {
	PartnerID string `json:"partnerId"`
	Currency  string `json:"currency"`
}

// DefaultCurrency applies to partners without an agreement.
const DefaultCurrency = "USD"

// SetAgreement records a bill-to partner's currency. Only direct CSPs and
// indirect providers are billed; resellers are billed by their provider.
func (s *Service) SetAgreement(ctx context.Context, p auth.Principal, a Agreement) (Agreement, error) {
	if p.Role != auth.RoleOperator {
		return Agreement{}, arm.Forbidden(p.Actor(), "agreements/write", "/v1/billing/agreements/"+a.PartnerID)
	}
	a.Currency = strings.ToUpper(strings.TrimSpace(a.Currency))
	if _, ok := MinorUnits(a.Currency); !ok {
		return Agreement{}, arm.InvalidRequest("currency", "Unknown currency '%s': give an ISO 4217 code such as USD or EUR.", a.Currency)
	}
	dir, err := s.loadDirectory(ctx, s.db)
	if err != nil {
		return Agreement{}, err
	}
	pt, ok := dir.Partners[a.PartnerID]
	switch {
	case !ok:
		return Agreement{}, arm.Errorf(arm.NotFound, "PartnerNotFound", "Partner '%s' was not found.", a.PartnerID)
	case pt.Type == directory.IndirectReseller:
		return Agreement{}, arm.InvalidRequest("partnerId", "Partner '%s' is a reseller; its provider '%s' holds the billing relationship and the agreement.", pt.ID, pt.Provider)
	}
	now := s.clock.Now()
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO billing_agreements (partner_id, currency, updated_at_us, updated_by) VALUES (?, ?, ?, ?)
			ON CONFLICT (partner_id) DO UPDATE SET currency = excluded.currency, updated_at_us = excluded.updated_at_us, updated_by = excluded.updated_by`,
			a.PartnerID, a.Currency, clock.Micros(now), p.Actor())
		if err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: now, Actor: p.Actor(), Action: "agreement.put", Kind: "agreement", ID: a.PartnerID, Scope: a.PartnerID, After: audit.JSON(a)})
	})
	return a, err
}

// Agreements lists the agreements the caller may see.
func (s *Service) Agreements(ctx context.Context, p auth.Principal) ([]Agreement, error) {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, err
	}
	dir, err := s.loadDirectory(ctx, s.db)
	if err != nil {
		return nil, err
	}
	out := []Agreement{}
	for _, id := range dir.PartnerIDs() {
		pt := dir.Partners[id]
		if pt.Type == directory.IndirectReseller || !sc.billTo(id) {
			continue
		}
		out = append(out, Agreement{PartnerID: id, Currency: dir.currency(id)})
	}
	return out, nil
}

// scope is what a principal may see of billing.
type scope struct {
	all bool
	// partner is the bill-to partner (direct CSP or indirect provider) or the
	// reseller the principal acts for.
	partner  string
	reseller bool
}

func (sc scope) billTo(partnerID string) bool {
	return sc.all || (!sc.reseller && sc.partner == partnerID)
}

// scope refuses every role but operator, partner and reseller: end customers
// (tenant tokens) never see CSP billing.
func (s *Service) scope(ctx context.Context, p auth.Principal) (scope, error) {
	switch p.Role {
	case auth.RoleOperator:
		return scope{all: true}, nil
	case auth.RolePartner:
		return scope{partner: p.PartnerID}, nil
	case auth.RoleReseller:
		return scope{partner: p.PartnerID, reseller: true}, nil
	}
	return scope{}, arm.Errorf(arm.Denied, "AuthorizationFailed",
		"The client '%s' does not have access to billing: usage billed to a CSP partner is not visible to end customers.", p.Actor())
}

func notFound(kind, id string) *arm.Error {
	return arm.Errorf(arm.NotFound, kind+"NotFound", "%s '%s' was not found.", kind, id)
}

func badPeriod(err error) *arm.Error {
	return arm.InvalidRequest("period", "%v", fmt.Sprint(err))
}
