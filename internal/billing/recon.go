package billing

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/stackbill/stackbill/internal/csvexport"
	"github.com/stackbill/stackbill/internal/ledger"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// ReconColumns are the daily rated-usage reconciliation columns, named as
// Partner Center names them (reference §6.3).
func ReconColumns() []string {
	return []string{"PartnerId", "PartnerName", "MpnId", "CustomerId", "CustomerName", "ResellerMpnId", "InvoiceNumber", "SubscriptionId",
		"ChargeStartDate", "ChargeEndDate", "UsageDate", "MeterCategory", "MeterSubCategory", "MeterId", "MeterName", "MeterRegion",
		"UnitOfMeasure", "ResourceLocation", "ResourceUri", "Tags", "AdditionalInfo", "ChargeType", "UnitPrice", "Quantity",
		"BillingPreTaxTotal", "BillingCurrency"}
}

// canExport allows the operator and the bill-to partner. Resellers never see
// the provider's price, and end customers never see CSP billing.
func (s *Service) canExport(ctx context.Context, p auth.Principal, partner string) error {
	sc, err := s.scope(ctx, p)
	if err != nil {
		return err
	}
	if sc.reseller {
		return arm.Errorf(arm.Denied, "AuthorizationFailed", "Reconciliation files carry the provider's prices; reseller '%s' reads its customers through statements.", sc.partner)
	}
	if !sc.billTo(partner) {
		return notFound("Partner", partner)
	}
	if sc.all {
		// Even the operator gets a 404 for a partner that does not exist,
		// rather than an empty file that looks like a month without usage.
		dir, err := s.loadDirectory(ctx, s.db)
		if err != nil {
			return err
		}
		if _, ok := dir.Partners[partner]; !ok {
			return notFound("Partner", partner)
		}
	}
	return nil
}

// Reconciliation writes a partner's daily rated usage for a period as CSV,
// streaming: records are read in rating order and rated on the fly, so memory
// holds the open lines, not the rows. Rows are per resource and day (split
// where a tier boundary falls), and their BillingPreTaxTotal values are
// rounded with a running remainder so that they sum to their invoice line
// exactly. progress, when not nil, is told what the export is doing (an
// Export phase) and how many records were read.
func (s *Service) Reconciliation(ctx context.Context, p auth.Principal, partner, period string, w io.Writer, progress func(phase string, records int64)) error {
	if err := s.canExport(ctx, p, partner); err != nil {
		return err
	}
	return s.reconFile(ctx, partner, period, w, progress)
}

// reconFile writes a partner's reconciliation file: for a finalized period
// the file finalization stored, which never changes; for an open period the
// file rated now. (Periods finalized before files were stored are rated
// from their stamped usage and stored directory.)
func (s *Service) reconFile(ctx context.Context, partner, period string, w io.Writer, progress func(string, int64)) error {
	if _, err := clock.ParsePeriod(period); err != nil {
		return badPeriod(err)
	}
	if err := s.settle(ctx); err != nil {
		return err
	}
	st, err := s.periodState(ctx, s.db, period)
	if err != nil {
		return err
	}
	if st.finalized {
		if progress != nil {
			progress(PhaseCopying, 0)
		}
		if ok, err := copyPeriodFile(ctx, s.db, period, fileReconciliation, partner, w); ok || err != nil {
			return err
		}
	}
	return s.writeRecon(ctx, s.db, partner, period, w, progress)
}

func (s *Service) reconSet(ctx context.Context, q store.Querier, partner, period string) (rateSet, *dirSnapshot, error) {
	start, end, err := clock.PeriodBounds(period)
	if err != nil {
		return rateSet{}, nil, badPeriod(err)
	}
	st, err := s.periodState(ctx, q, period)
	if err != nil {
		return rateSet{}, nil, err
	}
	// A finalized period is reconciled against the directory it was
	// finalized with, so its file never changes; a draft's against today's.
	var dir *dirSnapshot
	if st.finalized {
		dir, err = s.periodDirectory(ctx, q, period)
	} else {
		dir, err = s.loadDirectory(ctx, q)
	}
	if err != nil {
		return rateSet{}, nil, err
	}
	return s.rateSetFor(period, start, end, st.finalized, st, dir.subsBilledTo(partner)), dir, nil
}

func (s *Service) countRecon(ctx context.Context, partner, period string) (int64, error) {
	if err := s.settle(ctx); err != nil {
		return 0, err
	}
	rs, _, err := s.reconSet(ctx, s.db, partner, period)
	if err != nil {
		return 0, err
	}
	return s.ledger.Count(ctx, s.db, rs.selection())
}

// writeRecon rates a partner's period record by record, on q (the reader
// pool, or the finalization's transaction), and writes its file.
func (s *Service) writeRecon(ctx context.Context, q store.Querier, partner, period string, w io.Writer, progress func(string, int64)) error {
	if progress != nil {
		// Until the first record arrives: loading earlier periods' tier
		// quantities and the catalog, and the database ordering the records.
		progress(PhaseReading, 0)
	}
	rs, dir, err := s.reconSet(ctx, q, partner, period)
	if err != nil {
		return err
	}
	prior := map[priorKey]money.Quantity{}
	all := rs
	all.subs = nil // the bound holds for the partner's records too, and is one index probe
	earliest, found, err := s.ledger.EarliestDay(ctx, q, all.selection())
	if err != nil {
		return err
	}
	if found && earliest.Before(rs.start) {
		if prior, err = loadPrior(ctx, q, earliest, period); err != nil {
			return err
		}
	}
	cat, err := newCatalog(ctx, q)
	if err != nil {
		return err
	}
	if err := cat.preload(ctx); err != nil {
		return err
	}
	r := newRater(cat, dir, prior)
	pt := dir.Partners[partner]
	cur := dir.currency(partner)
	minor, _ := MinorUnits(cur)
	number := invoiceNumber(partner, period)
	bw := bufio.NewWriterSize(w, 1<<16)
	cw := csvexport.NewWriter(bw)
	if err := cw.Write(ReconColumns()); err != nil {
		return err
	}
	type group struct {
		reg, sub, meter, uri, local, localSub, loc, tags string
		day                                              int64
		qty                                              money.Sum
	}
	emitted := map[lineKey]money.Quantity{}
	var g *group
	rec := make([]string, len(ReconColumns()))
	flush := func() error {
		if g == nil {
			return nil
		}
		day := clock.FromMicros(g.day * int64(24*time.Hour/time.Microsecond))
		acct, _ := dir.Account(g.sub)
		var werr error
		err := r.feed(ctx, g.reg, g.sub, g.meter, day, g.qty.Quantity(), func(l *lineAcc, qty money.Quantity) {
			after := amountOf(l.numer, l.sched.div, minor)
			amt := after.Sub(emitted[l.key])
			emitted[l.key] = after
			ustart, uend, _ := clock.PeriodBounds(l.key.usagePeriod)
			chargeType := "Usage"
			if l.key.usagePeriod < period {
				chargeType = "LateUsage"
			}
			info, _ := json.Marshal(map[string]string{
				"azureStack.MeterId": guidOf(g.local), "azureStack.SubscriptionId": g.localSub, "azureStack.Location": g.loc,
				"azureStack.EventDateTime": day.Format("01/02/2006 15:04:05"), "azureStack.CloudId": dir.regs[g.reg].CloudID,
				"azureStack.Registration": dir.regs[g.reg].Name,
			})
			st := l.sched.steps[l.key.step]
			cust := dir.Customers[acct.Customer]
			resellerMpn := ""
			if rp, ok := dir.Partners[acct.Reseller]; ok {
				resellerMpn = rp.MpnID
				if resellerMpn == "" {
					resellerMpn = rp.ID
				}
			}
			tags := g.tags
			if tags == "null" {
				tags = ""
			}
			copy(rec, []string{partner, pt.Name, pt.MpnID, acct.Customer, cust.Name, resellerMpn, number, g.sub,
				ustart.Format(time.RFC3339), clock.ChargeEnd(uend.Add(-24 * time.Hour)).Format(time.RFC3339), day.Format("2006-01-02"),
				l.sched.price.Category, l.sched.price.SubCategory, l.key.meter, l.sched.price.MeterName, l.sched.price.Region,
				l.sched.price.Unit, g.loc, g.uri, tags, string(info), chargeType, st.price.String(), quantityIn(qty, l.sched.div).String(),
				amt.StringFixed(minor), cur})
			if err := cw.Write(rec); err != nil && werr == nil {
				werr = err
			}
		})
		if err != nil {
			return err
		}
		return werr
	}
	var n int64
	const dayUS = int64(24 * time.Hour / time.Microsecond)
	err = s.ledger.Rows(ctx, q, rs.selection(), func(r *ledger.Row) error {
		d := r.HourUs / dayUS
		if g == nil || g.day != d || g.sub != string(r.Subscription) || g.meter != string(r.Meter) || g.reg != string(r.Registration) || g.uri != string(r.ResourceURI) ||
			g.local != string(r.LocalMeter) || g.localSub != string(r.LocalSub) {
			if err := flush(); err != nil {
				return err
			}
			g = &group{reg: string(r.Registration), sub: string(r.Subscription), meter: string(r.Meter), uri: string(r.ResourceURI), local: string(r.LocalMeter),
				localSub: string(r.LocalSub), loc: string(r.Location), tags: string(r.Tags), day: d}
		}
		if err := g.qty.AddText(r.Quantity); err != nil {
			return err
		}
		n++
		if progress != nil && (n == 1 || n%10000 == 0) {
			progress(PhaseWriting, n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if progress != nil {
		progress(PhaseWriting, n)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// guidOf formats a normalized meter key (32 hex digits) as a GUID.
func guidOf(key string) string {
	if len(key) != 32 {
		return key
	}
	return fmt.Sprintf("%s-%s-%s-%s-%s", key[0:8], key[8:12], key[12:16], key[16:20], key[20:32])
}

// ExportJob is a background reconciliation export.
type ExportJob struct {
	ID        string `json:"id"`
	PartnerID string `json:"partnerId"`
	Period    string `json:"period"`
	Status    string `json:"status"` // queued, running, succeeded, failed
	// Phase is what a running export is doing: PhaseReading, PhaseWriting
	// (RowsDone counts) or PhaseCopying.
	Phase       string    `json:"phase,omitempty"`
	RowsDone    int64     `json:"recordsRead"`
	RowsTotal   int64     `json:"recordsTotal"`
	Error       string    `json:"error,omitempty"`
	RequestedBy string    `json:"requestedBy"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Export phases.
const (
	PhaseReading = "reading"
	PhaseWriting = "writing"
	PhaseCopying = "copying"
)

// StartExport queues a reconciliation export. Any commerce instance's export
// runner picks it up; the file is kept in the database in chunks, so any
// instance can serve it.
func (s *Service) StartExport(ctx context.Context, p auth.Principal, partner, period string) (ExportJob, error) {
	if err := s.canExport(ctx, p, partner); err != nil {
		return ExportJob{}, err
	}
	if _, err := clock.ParsePeriod(period); err != nil {
		return ExportJob{}, badPeriod(err)
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	now := s.clock.Now()
	j := ExportJob{ID: hex.EncodeToString(b[:]), PartnerID: partner, Period: period, Status: "queued", RequestedBy: p.Actor(), CreatedAt: now, UpdatedAt: now}
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO export_jobs (id, partner_id, period, requested_by, status, rows_done, rows_total, error, created_at_us, updated_at_us)
			VALUES (?, ?, ?, ?, 'queued', 0, 0, '', ?, ?)`, j.ID, partner, period, j.RequestedBy, clock.Micros(now), clock.Micros(now))
		return err
	})
	return j, err
}

// Export returns a job's state to whoever may export that partner's files.
func (s *Service) Export(ctx context.Context, p auth.Principal, id string) (ExportJob, error) {
	j, err := s.exportJob(ctx, id)
	if err != nil {
		return ExportJob{}, err
	}
	if err := s.canExport(ctx, p, j.PartnerID); err != nil {
		return ExportJob{}, notFound("Export", id)
	}
	return j, nil
}

func (s *Service) exportJob(ctx context.Context, id string) (ExportJob, error) {
	var j ExportJob
	var c, u int64
	err := s.db.QueryRowContext(ctx, `SELECT id, partner_id, period, status, phase, rows_done, rows_total, error, requested_by, created_at_us, updated_at_us FROM export_jobs WHERE id = ?`, id).
		Scan(&j.ID, &j.PartnerID, &j.Period, &j.Status, &j.Phase, &j.RowsDone, &j.RowsTotal, &j.Error, &j.RequestedBy, &c, &u)
	if store.IsNoRows(err) {
		return ExportJob{}, notFound("Export", id)
	}
	j.CreatedAt, j.UpdatedAt = clock.FromMicros(c), clock.FromMicros(u)
	return j, err
}

// ExportFile streams a finished export's CSV.
func (s *Service) ExportFile(ctx context.Context, p auth.Principal, id string, w io.Writer) error {
	j, err := s.Export(ctx, p, id)
	if err != nil {
		return err
	}
	if j.Status != "succeeded" {
		return arm.Errorf(arm.Invalid, "ExportNotReady", "Export %s is %s; its file is available once it has succeeded.", id, j.Status)
	}
	for seq := 0; ; seq++ {
		var data []byte
		err := s.db.QueryRowContext(ctx, `SELECT data FROM export_chunks WHERE job_id = ? AND seq = ?`, id, seq).Scan(&data)
		if store.IsNoRows(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
}

// chunkWriter cuts a file into 1 MiB chunks as it is written and hands each
// to put, so that a file of any size is kept in rows of a bounded size.
type chunkWriter struct {
	put       func(seq int, data []byte) error
	keepEmpty bool // store an empty file as one empty chunk
	seq       int
	buf       bytes.Buffer
}

const chunkSize = 1 << 20

func (c *chunkWriter) Write(p []byte) (int, error) {
	c.buf.Write(p)
	for c.buf.Len() >= chunkSize {
		if err := c.store(c.buf.Next(chunkSize)); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *chunkWriter) store(b []byte) error {
	err := c.put(c.seq, bytes.Clone(b))
	c.seq++
	return err
}

// close stores what is left.
func (c *chunkWriter) close() error {
	if c.buf.Len() > 0 || (c.keepEmpty && c.seq == 0) {
		return c.store(c.buf.Next(c.buf.Len()))
	}
	return nil
}

// RunExports claims and runs queued exports until none is left. A claim is
// a compare-and-set UPDATE, so across instances sharing a database each job
// has one runner; a job whose runner stopped reporting progress for
// ExportStale (its process died) is claimed again and restarted from scratch.
func (s *Service) RunExports(ctx context.Context) error {
	for {
		now := s.clock.Now()
		var id string
		err := s.db.QueryRowContext(ctx, `SELECT id FROM export_jobs WHERE status = 'queued' OR (status = 'running' AND updated_at_us < ?) ORDER BY created_at_us LIMIT 1`,
			clock.Micros(now.Add(-s.ExportStale))).Scan(&id)
		if store.IsNoRows(err) {
			return nil
		}
		if err != nil {
			return err
		}
		claimed := false
		err = s.db.Write(ctx, func(tx *store.Tx) error {
			res, err := tx.ExecContext(ctx, `UPDATE export_jobs SET status = 'running', rows_done = 0, updated_at_us = ? WHERE id = ? AND (status = 'queued' OR (status = 'running' AND updated_at_us < ?))`,
				clock.Micros(now), id, clock.Micros(now.Add(-s.ExportStale)))
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			claimed = n == 1
			if claimed {
				_, err = tx.ExecContext(ctx, `DELETE FROM export_chunks WHERE job_id = ?`, id)
			}
			return err
		})
		if err != nil {
			return err
		}
		if claimed {
			s.runExport(ctx, id)
		}
	}
}

func (s *Service) runExport(ctx context.Context, id string) {
	j, err := s.exportJob(ctx, id)
	if err != nil {
		return
	}
	update := func(status, phase string, done, total int64, msg string) {
		_ = s.db.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE export_jobs SET status = ?, phase = ?, rows_done = ?, rows_total = ?, error = ?, updated_at_us = ? WHERE id = ?`,
				status, phase, done, total, msg, clock.Micros(s.clock.Now()), id)
			return err
		})
	}
	total, err := s.countRecon(ctx, j.PartnerID, j.Period)
	if err != nil {
		update("failed", "", 0, 0, err.Error())
		return
	}
	update("running", PhaseReading, 0, total, "")
	cw := &chunkWriter{put: func(seq int, data []byte) error {
		return s.db.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO export_chunks (job_id, seq, data) VALUES (?, ?, ?)`, id, seq, data)
			return err
		})
	}}
	last, phase := time.Now(), PhaseReading
	err = s.reconFile(ctx, j.PartnerID, j.Period, cw, func(p string, n int64) {
		// A change of phase is written at once; counts at most twice a second.
		if p != phase || time.Since(last) > 500*time.Millisecond {
			last, phase = time.Now(), p
			update("running", p, n, total, "")
		}
	})
	if err == nil {
		err = cw.close()
	}
	if err != nil {
		s.logger.Error("reconciliation export failed", "id", id, "err", err)
		update("failed", "", 0, total, err.Error())
		return
	}
	update("succeeded", "", total, total, "")
	s.logger.Info("reconciliation export done", slog.String("id", id), slog.String("partner", j.PartnerID), slog.String("period", j.Period), slog.Int64("records", total))
}
