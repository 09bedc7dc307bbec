package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// CreditNote corrects a finalized invoice. Finalized invoices are never
// edited; a credit note is a separate document with its reason, author and
// time, and the invoice shows it and its balance.
type CreditNote struct {
	Number        string         `json:"creditNoteNumber"`
	InvoiceNumber string         `json:"invoiceNumber"`
	Reason        string         `json:"reason"`
	Lines         []CreditLine   `json:"lines"`
	Total         money.Quantity `json:"total"`
	Currency      string         `json:"currency"`
	CreatedAt     time.Time      `json:"createdAt"`
	CreatedBy     string         `json:"createdBy"`
}

// CreditLine credits part or all of one invoice line.
type CreditLine struct {
	Line        int            `json:"line"`
	Description string         `json:"description,omitempty"`
	Amount      money.Quantity `json:"amount"`
}

// CreditRequest asks for a credit note.
type CreditRequest struct {
	Reason string       `json:"reason"`
	Lines  []CreditLine `json:"lines"`
}

// isDraftNumber reports whether number names a bill-to partner's invoice of
// an open period: one that exists as a draft.
func (s *Service) isDraftNumber(ctx context.Context, number string) bool {
	rest, ok := strings.CutPrefix(number, "SB-")
	if !ok || len(rest) < 8 || rest[6] != '-' {
		return false
	}
	period, err := time.Parse("200601", rest[:6])
	if err != nil {
		return false
	}
	dir, err := s.loadDirectory(ctx, s.db)
	if err != nil {
		return false
	}
	pt, ok := dir.Partners[rest[7:]]
	return ok && pt.Type != directory.IndirectReseller && !period.After(s.clock.Now())
}

// CreateCreditNote issues a credit note against a finalized invoice. Each
// credited amount is positive, in the currency's minor unit, and no line can
// be credited beyond its amount across all its credit notes.
func (s *Service) CreateCreditNote(ctx context.Context, p auth.Principal, invoiceNumber string, req CreditRequest) (CreditNote, error) {
	if p.Role != auth.RoleOperator {
		return CreditNote{}, arm.Forbidden(p.Actor(), "creditNotes/write", "/v1/billing/invoices/"+invoiceNumber+"/credit-notes")
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Reason == "" {
		return CreditNote{}, arm.InvalidRequest("reason", "A credit note needs a reason; it is kept in the audit trail.")
	}
	if len(req.Lines) == 0 {
		return CreditNote{}, arm.InvalidRequest("lines", "A credit note credits at least one invoice line.")
	}
	var cn CreditNote
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		var doc string
		err := tx.QueryRowContext(ctx, `SELECT document FROM invoices WHERE number = ?`+s.db.ForUpdate(), invoiceNumber).Scan(&doc)
		if err != nil {
			if store.IsNoRows(err) {
				// Only finalized invoices are stored; a draft is computed.
				if s.isDraftNumber(ctx, invoiceNumber) {
					return arm.Errorf(arm.Invalid, "InvoiceNotFinal", "Invoice '%s' is not finalized; drafts change with usage and are not credited.", invoiceNumber)
				}
				return notFound("Invoice", invoiceNumber)
			}
			return err
		}
		var inv Invoice
		if err := json.Unmarshal([]byte(doc), &inv); err != nil {
			return err
		}
		minor, _ := MinorUnits(inv.Currency)
		lines := map[int]Line{}
		for _, sec := range inv.Sections {
			for _, l := range sec.Lines {
				lines[l.No] = l
			}
		}
		credited := map[int]money.Quantity{}
		prior, err := s.creditNotes(ctx, tx, invoiceNumber)
		if err != nil {
			return err
		}
		for _, c := range prior {
			for _, l := range c.Lines {
				credited[l.Line] = credited[l.Line].Add(l.Amount)
			}
		}
		cn = CreditNote{Number: fmt.Sprintf("CN-%s-%d", strings.TrimPrefix(invoiceNumber, "SB-"), len(prior)+1), InvoiceNumber: invoiceNumber,
			Reason: req.Reason, Currency: inv.Currency, CreatedAt: s.clock.Now(), CreatedBy: p.Actor()}
		for i, cl := range req.Lines {
			l, ok := lines[cl.Line]
			target := fmt.Sprintf("lines[%d]", i)
			switch {
			case !ok:
				return arm.InvalidRequest(target+".line", "Invoice %s has no line %d.", invoiceNumber, cl.Line)
			case cl.Amount.Sign() <= 0 || !cl.Amount.Equal(cl.Amount.Round(minor)):
				return arm.InvalidRequest(target+".amount", "A credited amount is positive with at most %d decimal places (%s); got %s.", minor, inv.Currency, cl.Amount)
			}
			credited[cl.Line] = credited[cl.Line].Add(cl.Amount)
			if credited[cl.Line].Cmp(l.Amount) > 0 {
				return arm.InvalidRequest(target+".amount", "Line %d is %s %s; with this note it would be credited %s.", cl.Line, l.Amount.StringFixed(minor), inv.Currency, credited[cl.Line].StringFixed(minor))
			}
			if cl.Description == "" {
				cl.Description = fmt.Sprintf("%s %s, subscription %s", l.MeterSubCategory, l.MeterName, l.SubscriptionID)
			}
			cn.Lines = append(cn.Lines, cl)
			cn.Total = cn.Total.Add(cl.Amount)
		}
		body, _ := json.Marshal(cn.Lines)
		_, err = tx.ExecContext(ctx, `INSERT INTO credit_notes (number, invoice_number, reason, lines, total, created_at_us, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			cn.Number, invoiceNumber, cn.Reason, string(body), cn.Total.String(), clock.Micros(cn.CreatedAt), cn.CreatedBy)
		if err != nil {
			return err
		}
		return audit.Append(ctx, tx, audit.Entry{At: cn.CreatedAt, Actor: p.Actor(), Action: "creditNote.create", Kind: "creditNote", ID: cn.Number, Scope: inv.PartnerID, After: audit.JSON(cn)})
	})
	if err != nil {
		return CreditNote{}, err
	}
	s.logger.Info("credit note issued", "number", cn.Number, "invoice", invoiceNumber, "total", cn.Total.String(), "actor", p.Actor())
	return cn, nil
}

func (s *Service) creditNotes(ctx context.Context, q store.Querier, invoiceNumber string) ([]CreditNote, error) {
	rows, err := q.QueryContext(ctx, `SELECT c.number, c.reason, c.lines, c.total, c.created_at_us, c.created_by, i.currency FROM credit_notes c JOIN invoices i ON i.number = c.invoice_number
		WHERE c.invoice_number = ?`, invoiceNumber)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []CreditNote{}
	for rows.Next() {
		c := CreditNote{InvoiceNumber: invoiceNumber}
		var lines string
		var at int64
		if err := rows.Scan(&c.Number, &c.Reason, &lines, &c.Total, &at, &c.CreatedBy, &c.Currency); err != nil {
			return nil, err
		}
		c.CreatedAt = clock.FromMicros(at)
		if err := json.Unmarshal([]byte(lines), &c.Lines); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].CreatedAt.Before(out[j].CreatedAt) || (out[i].CreatedAt.Equal(out[j].CreatedAt) && out[i].Number < out[j].Number)
	})
	return out, rows.Err()
}

func (s *Service) attachCredits(ctx context.Context, inv *Invoice) error {
	cns, err := s.creditNotes(ctx, s.db, inv.Number)
	if err != nil {
		return err
	}
	inv.CreditNotes, inv.Credited = cns, money.Zero
	for _, c := range cns {
		inv.Credited = inv.Credited.Add(c.Total)
	}
	inv.Balance = inv.Total.Sub(inv.Credited)
	return nil
}
