package billing

import (
	"context"
	"encoding/csv"
	"errors"
	"io"
	"strings"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/money"
)

// errStop ends a streamed file early; it is not an error of the file.
var errStop = errors.New("stop reading")

// ErrStopRows is what a row callback returns to stop reading a file.
var ErrStopRows = errStop

// ReconciliationRows streams a partner's reconciliation file for a period
// to fn, row by row under the file's header, as p may read it
// (Reconciliation's rules). fn returns ErrStopRows to stop early.
func (s *Service) ReconciliationRows(ctx context.Context, p auth.Principal, partner, period string, fn func(header, row []string) error) error {
	if err := s.canExport(ctx, p, partner); err != nil {
		return err
	}
	return s.reconRows(ctx, partner, period, fn)
}

func (s *Service) reconRows(ctx context.Context, partner, period string, fn func(header, row []string) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := s.reconFile(ctx, partner, period, pw, nil)
		pw.CloseWithError(err)
		done <- err
	}()
	cr := csv.NewReader(pr)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	for err == nil {
		var rec []string
		if rec, err = cr.Read(); err == nil {
			err = fn(header, rec)
		}
	}
	pr.CloseWithError(errStop)
	werr := <-done
	if werr != nil && !errors.Is(werr, errStop) && !errors.Is(werr, io.ErrClosedPipe) {
		// The file's own error (a failure while writing it) explains what
		// the reader saw.
		return werr
	}
	if errors.Is(err, io.EOF) || errors.Is(err, errStop) {
		return nil
	}
	return err
}

// ResellerDailyUsage streams a reseller's own customers' daily usage for an
// open or finalized period: the rows of its provider's reconciliation file
// for its customers' subscriptions, priced at what its provider charges it
// (its statements' cost), never at the provider's cost. Each statement
// line's cost is spread over the line's rows by quantity, rounded with a
// running remainder, so the rows add up to the line exactly. header is the
// reconciliation file's.
func (s *Service) ResellerDailyUsage(ctx context.Context, p auth.Principal, period string, fn func(header, row []string) error) error {
	if p.Role != auth.RoleReseller {
		return notFound("Partner", p.PartnerID)
	}
	sts, err := s.Statements(ctx, p, p.PartnerID, period)
	if err != nil {
		return err
	}
	type line struct {
		cost     money.Quantity
		currency string
	}
	lines := map[[2]string]line{}
	for _, st := range sts {
		for _, l := range st.Lines {
			if !l.LocalOnly {
				lines[[2]string{strings.ToLower(l.SubscriptionID), strings.ToLower(l.MeterID)}] = line{cost: l.Cost, currency: st.Currency}
			}
		}
	}
	_, op, err := s.ownerScope(ctx, p, p.PartnerID)
	if err != nil {
		return err
	}
	stopped := false
	emit := func(header, row []string) error {
		err := fn(header, row)
		stopped = stopped || errors.Is(err, errStop)
		return err
	}
	// The rows of one line come together (the file is ordered by
	// subscription and meter): buffer a line's rows, then price them.
	var header []string
	var group [][]string
	var key [2]string
	flush := func() error {
		l, ok := lines[key]
		if !ok || len(group) == 0 {
			group = group[:0]
			return nil
		}
		col := map[string]int{}
		for i, h := range header {
			col[h] = i
		}
		qty := make([]money.Quantity, len(group))
		total := money.Zero
		for i, r := range group {
			q, err := money.ParseQuantity(r[col["Quantity"]])
			if err != nil {
				return err
			}
			qty[i], total = q, total.Add(q)
		}
		minor, _ := MinorUnits(l.currency)
		// What the reseller pays per unit on this line: its cost over the
		// line's quantity (the cost is rounded once, per line).
		unit := money.Zero
		if !total.IsZero() {
			unit = l.cost.Div(total, 8)
		}
		cum, given := money.Zero, money.Zero
		for i, r := range group {
			cum = cum.Add(qty[i])
			upTo := l.cost
			if !total.IsZero() {
				upTo = l.cost.Mul(cum).Div(total, 20).Round(minor)
			}
			amount := upTo.Sub(given)
			given = upTo
			row := append([]string(nil), r...)
			row[col["BillingPreTaxTotal"]] = amount.StringFixed(minor)
			row[col["UnitPrice"]] = unit.String()
			if err := emit(header, row); err != nil {
				return err
			}
		}
		group = group[:0]
		return nil
	}
	err = s.reconRows(ctx, billingPartner(op), period, func(h, row []string) error {
		header = h
		col := -1
		mcol := -1
		for i, name := range h {
			switch name {
			case "SubscriptionId":
				col = i
			case "MeterId":
				mcol = i
			}
		}
		if col < 0 || mcol < 0 || col >= len(row) || mcol >= len(row) {
			return nil
		}
		k := [2]string{strings.ToLower(row[col]), strings.ToLower(row[mcol])}
		if k != key {
			if err := flush(); err != nil {
				return err
			}
			key = k
		}
		if _, ok := lines[k]; ok {
			group = append(group, row)
		}
		return nil
	})
	if err != nil || stopped {
		return err
	}
	return flush()
}
