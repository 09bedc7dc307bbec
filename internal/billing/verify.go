package billing

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// Difference is one place where two views of a bill disagree.
type Difference struct {
	Period  string `json:"period"`
	Partner string `json:"partner,omitempty"`
	Check   string `json:"check"`
	Key     string `json:"key,omitempty"`
	Want    string `json:"want"`
	Got     string `json:"got"`
}

func (d Difference) String() string {
	s := d.Period
	if d.Partner != "" {
		s += " " + d.Partner
	}
	s += ": " + d.Check
	if d.Key != "" {
		s += " [" + d.Key + "]"
	}
	return s + ": want " + d.Want + ", got " + d.Got
}

// VerifyReport is what a conservation check looked at, and what it found.
type VerifyReport struct {
	Periods     []string     `json:"periods"`
	Invoices    int          `json:"invoices"`
	Lines       int          `json:"lines"`
	ReconRows   int          `json:"reconciliationRows"`
	Statements  int          `json:"statements"`
	Series      int          `json:"usageSeries"`
	Notes       []string     `json:"notes,omitempty"`
	Differences []Difference `json:"differences"`
}

func (r *VerifyReport) diff(d Difference) { r.Differences = append(r.Differences, d) }

// Verify checks that every view of a bill agrees with the bill: per period
// and bill-to partner, Σ invoice lines = each section's subtotal = the
// invoice total = Σ its stored lines = Σ its CSV lines = Σ its
// reconciliation rows, and Σ the statement costs of its accounts; and per
// subscription and meter, the usage forwarded for a usage period equals what
// that period's invoice and later LateUsage lines billed. With period "" it
// checks every finalized period and the open one; each difference names the
// records involved.
func (s *Service) Verify(ctx context.Context, period string) (VerifyReport, error) {
	rep := VerifyReport{Differences: []Difference{}}
	if err := s.settle(ctx); err != nil {
		return rep, err
	}
	var periods []string
	if period != "" {
		if _, err := clock.ParsePeriod(period); err != nil {
			return rep, badPeriod(err)
		}
		periods = []string{period}
	} else {
		rows, err := s.db.QueryContext(ctx, `SELECT period FROM billing_periods ORDER BY period`)
		if err != nil {
			return rep, err
		}
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return rep, err
			}
			periods = append(periods, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return rep, err
		}
		open := clock.Period(s.clock.Now())
		if len(periods) > 0 {
			last, _ := clock.ParsePeriod(periods[len(periods)-1])
			open = clock.Period(clock.NextMonth(last))
		}
		periods = append(periods, open)
	}
	for _, p := range periods {
		if err := s.verifyPeriod(ctx, s.db, p, nil, &rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// verifyPeriod checks one period on q. invs are the period's invoices when
// the caller has them (finalization, inside its transaction); else they are
// read: stored for a finalized period, rated for an open one.
func (s *Service) verifyPeriod(ctx context.Context, q store.Querier, period string, invs map[string]*Invoice, rep *VerifyReport) error {
	rep.Periods = append(rep.Periods, period)
	st, err := s.periodState(ctx, q, period)
	if err != nil {
		return err
	}
	var dir *dirSnapshot
	if st.finalized {
		dir, err = s.periodDirectory(ctx, q, period)
	} else {
		dir, err = s.loadDirectory(ctx, q)
	}
	if err != nil {
		return err
	}
	if invs == nil {
		if st.finalized {
			invs, err = storedInvoicesOn(ctx, q, period)
		} else {
			var run rateRun
			run, err = s.rate(ctx, q, dir, period, false, nil)
			invs = run.invoices
		}
		if err != nil {
			return err
		}
	}
	partners := make([]string, 0, len(invs))
	for id := range invs {
		partners = append(partners, id)
	}
	sort.Strings(partners)
	for _, id := range partners {
		inv := invs[id]
		rep.Invoices++
		d := func(check, key string, want, got money.Quantity) {
			if !want.Equal(got) {
				rep.diff(Difference{Period: period, Partner: id, Check: check, Key: key, Want: want.String(), Got: got.String()})
			}
		}
		// The document: lines, subtotals, total.
		total := money.Zero
		for _, sec := range inv.Sections {
			sub := money.Zero
			for _, l := range sec.Lines {
				sub = sub.Add(l.Amount)
				rep.Lines++
			}
			d("section subtotal = Σ its lines", sec.ResellerID, sec.Subtotal, sub)
			total = total.Add(sec.Subtotal)
		}
		d("invoice total = Σ section subtotals", inv.Number, inv.Total, total)
		// The stored lines (finalized periods).
		if st.finalized {
			var n int
			var stored money.Sum
			rows, err := q.QueryContext(ctx, `SELECT amount FROM invoice_lines WHERE invoice_number = ?`, inv.Number)
			if err != nil {
				return err
			}
			for rows.Next() {
				var a []byte
				if err := rows.Scan(&a); err != nil {
					rows.Close()
					return err
				}
				if err := stored.AddText(a); err != nil {
					rows.Close()
					return err
				}
				n++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			d("invoice total = Σ stored invoice lines", inv.Number, inv.Total, stored.Quantity())
		}
		// The CSV, as downloaded.
		var buf bytes.Buffer
		if err := WriteInvoiceCSV(&buf, *inv); err != nil {
			return err
		}
		csvSum, _, err := sumColumn(buf.Bytes(), "Amount", nil)
		if err != nil {
			return err
		}
		d("invoice total = Σ CSV lines", inv.Number, inv.Total, csvSum)
		// The reconciliation file: stored for a finalized period, rated
		// now for an open one.
		buf.Reset()
		found := false
		if st.finalized {
			if found, err = copyPeriodFile(ctx, q, period, fileReconciliation, id, &buf); err != nil {
				return err
			}
			if !found {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s %s: finalized before reconciliation files were stored; checked as rated now", period, id))
			}
		}
		if !found {
			if err := s.writeRecon(ctx, q, id, period, &buf, nil); err != nil {
				return err
			}
		}
		perLine := map[string]money.Quantity{}
		reconSum, rows, err := sumColumn(buf.Bytes(), "BillingPreTaxTotal", func(r map[string]string, amount money.Quantity) {
			k := reconKey(r["SubscriptionId"], r["MeterId"], r["ChargeType"], r["ChargeStartDate"][:7], r["UnitPrice"])
			perLine[k] = perLine[k].Add(amount)
		})
		if err != nil {
			return err
		}
		rep.ReconRows += rows
		d("invoice total = Σ reconciliation rows", inv.Number, inv.Total, reconSum)
		byLine := map[string]money.Quantity{}
		for _, sec := range inv.Sections {
			for _, l := range sec.Lines {
				k := reconKey(l.SubscriptionID, l.MeterID, l.Kind, l.UsagePeriod, l.UnitPrice.String())
				byLine[k] = byLine[k].Add(l.Amount)
			}
		}
		for k, want := range byLine {
			d("invoice lines = their reconciliation rows", k, want, perLine[k])
		}
		for k, got := range perLine {
			if _, ok := byLine[k]; !ok {
				d("reconciliation rows without an invoice line", k, money.Zero, got)
			}
		}
		// Statements: the bill-to partner's accounts cost what the invoice
		// bills them.
		if pt, ok := dir.Partners[id]; ok {
			stmts, err := s.periodStatements(ctx, q, st.finalized, dir, pt, period, invs)
			if err != nil {
				return err
			}
			rep.Statements += len(stmts)
			accounts := dir.accounts(pt)
			billed := money.Zero
			for _, sec := range inv.Sections {
				for _, l := range sec.Lines {
					acct := l.CustomerTenantID
					if pt.Type == directory.IndirectProvider {
						acct = l.ResellerID
					}
					if _, ok := accounts[acct]; ok {
						billed = billed.Add(l.Amount)
					}
				}
			}
			cost := money.Zero
			for _, stm := range stmts {
				cost = cost.Add(stm.Cost)
			}
			d("Σ statement costs = Σ invoice lines of the partner's accounts", id, billed, cost)
			// A provider's charge to each reseller is that reseller's cost.
			if pt.Type == directory.IndirectProvider {
				for _, stm := range stmts {
					rp, ok := dir.Partners[stm.Account]
					if !ok {
						continue
					}
					rs, err := s.periodStatements(ctx, q, st.finalized, dir, rp, period, invs)
					if err != nil {
						return err
					}
					rcost := money.Zero
					for _, x := range rs {
						rcost = rcost.Add(x.Cost)
					}
					d("a provider's charge to a reseller = the reseller's cost", rp.ID, stm.Amount, rcost)
				}
			}
		}
	}
	return s.verifyUsage(ctx, q, period, dir, rep)
}

// periodStatements reads an owner's statements: stored for a finalized
// period, priced now for an open one.
func (s *Service) periodStatements(ctx context.Context, q store.Querier, finalized bool, dir *dirSnapshot, op directory.Partner, period string, invs map[string]*Invoice) ([]Statement, error) {
	if finalized {
		out, ok, err := storedStatements(ctx, q, period, op.ID)
		if ok || err != nil {
			return out, err
		}
	}
	return s.statements(ctx, q, dir, op, period, invs)
}

func reconKey(sub, meter, kind, usagePeriod, price string) string {
	return strings.Join([]string{strings.ToLower(sub), strings.ToLower(meter), kind, usagePeriod, price}, "/")
}

// sumColumn sums a CSV's column, calling each (when not nil) per row.
func sumColumn(data []byte, column string, each func(row map[string]string, v money.Quantity)) (money.Quantity, int, error) {
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return money.Zero, 0, err
	}
	if len(records) == 0 {
		return money.Zero, 0, nil
	}
	col := -1
	for i, h := range records[0] {
		if h == column {
			col = i
		}
	}
	if col < 0 {
		return money.Zero, 0, fmt.Errorf("no column %s", column)
	}
	sum := money.Zero
	for _, r := range records[1:] {
		v, err := money.ParseStored(r[col])
		if err != nil {
			return money.Zero, 0, fmt.Errorf("column %s: %w", column, err)
		}
		sum = sum.Add(v)
		if each != nil {
			row := make(map[string]string, len(r))
			for i, h := range records[0] {
				row[h] = r[i]
			}
			each(row, v)
		}
	}
	return sum, len(records) - 1, nil
}

// storedInvoicesOn reads a finalized period's invoices on q.
func storedInvoicesOn(ctx context.Context, q store.Querier, period string) (map[string]*Invoice, error) {
	rows, err := q.QueryContext(ctx, `SELECT document FROM invoices WHERE period = ?`, period)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*Invoice{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		var inv Invoice
		if err := json.Unmarshal([]byte(doc), &inv); err != nil {
			return nil, err
		}
		out[inv.PartnerID] = &inv
	}
	return out, rows.Err()
}

// verifyUsage checks, per charged subscription, billing meter and usage
// period, that the usage forwarded equals what the invoices billed: for a
// finalized period P, usage of P and of earlier periods billed on P's
// invoice, against the lines of every invoice up to P; for an open period,
// its draft against the unbilled usage.
func (s *Service) verifyUsage(ctx context.Context, q store.Querier, period string, dir *dirSnapshot, rep *VerifyReport) error {
	st, err := s.periodState(ctx, q, period)
	if err != nil {
		return err
	}
	if !st.finalized {
		// A draft rates exactly its unbilled records; the invoice checks
		// above cover it.
		return nil
	}
	// The usage periods P's invoices billed.
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT usage_period FROM invoice_lines l JOIN invoices i ON i.number = l.invoice_number WHERE i.period = ?`, period)
	if err != nil {
		return err
	}
	var usagePeriods []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return err
		}
		usagePeriods = append(usagePeriods, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	sort.Strings(usagePeriods)
	for _, u := range usagePeriods {
		start, end, _ := clock.PeriodBounds(u)
		type key struct{ sub, meter string }
		forwarded := map[key]*money.Sum{}
		n := 0
		err := s.ledger.BilledIn(ctx, q, u, period, start, end, func(sub, mtr string, qty []byte) error {
			k := key{sub, mtr}
			if _, ok := dir.Account(k.sub); !ok {
				return nil // usage no CSP partner is billed for
			}
			if forwarded[k] == nil {
				forwarded[k] = &money.Sum{}
			}
			n++
			return forwarded[k].AddText(qty)
		})
		if err != nil {
			return err
		}
		billed := map[key]money.Quantity{}
		lines, err := q.QueryContext(ctx, `SELECT l.subscription_id, l.meter_id, l.quantity FROM invoice_lines l JOIN invoices i ON i.number = l.invoice_number
			WHERE l.usage_period = ? AND i.period <= ?`, u, period)
		if err != nil {
			return err
		}
		for lines.Next() {
			var k key
			var qty money.Quantity
			if err := lines.Scan(&k.sub, &k.meter, &qty); err != nil {
				lines.Close()
				return err
			}
			billed[k] = billed[k].Add(qty)
		}
		lines.Close()
		if err := lines.Err(); err != nil {
			return err
		}
		if n == 0 && len(billed) > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: the forwarded usage of %s was purged (--billed-usage-retention); its invoices stand alone", period, u))
			continue
		}
		for k, f := range forwarded {
			rep.Series++
			if got := billed[k]; !got.Equal(f.Quantity()) {
				rep.diff(Difference{Period: period, Check: "Σ forwarded usage = Σ billed quantity of its usage period", Key: k.sub + "/" + k.meter + "/" + u,
					Want: f.Quantity().String(), Got: got.String()})
			}
		}
		for k, got := range billed {
			if _, ok := forwarded[k]; !ok {
				rep.diff(Difference{Period: period, Check: "billed quantity without forwarded usage", Key: k.sub + "/" + k.meter + "/" + u, Want: "0", Got: got.String()})
			}
		}
	}
	return nil
}
