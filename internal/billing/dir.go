package billing

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
)

// dirSnapshot is the directory as one billing run sees it: the directory's
// snapshot (who is billed for what is its rule, Snapshot.Account), the
// billing agreements' currencies and the registrations' names.
type dirSnapshot struct {
	*directory.Snapshot
	currencies map[string]string
	regs       map[string]registration.Label
}

// loadDirectory reads the directory a run bills with. The currencies are
// billing's own table, read in q.
func (s *Service) loadDirectory(ctx context.Context, q store.Querier) (*dirSnapshot, error) {
	snap, err := s.dir.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	regs, err := s.regs.Labels(ctx)
	if err != nil {
		return nil, err
	}
	d := &dirSnapshot{Snapshot: snap, currencies: map[string]string{}, regs: regs}
	rows, err := q.QueryContext(ctx, `SELECT partner_id, currency FROM billing_agreements`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, c string
		if err := rows.Scan(&id, &c); err != nil {
			return nil, err
		}
		d.currencies[id] = c
	}
	return d, rows.Err()
}

func (d *dirSnapshot) currency(partnerID string) string {
	if c, ok := d.currencies[partnerID]; ok {
		return c
	}
	return DefaultCurrency
}

// dirJSON is a dirSnapshot as stored with a finalized period.
type dirJSON struct {
	directory.Snapshot
	Currencies    map[string]string             `json:"currencies"`
	Registrations map[string]registration.Label `json:"registrations"`
}

// saveDirectory stores the directory a period was finalized with.
func saveDirectory(ctx context.Context, tx *store.Tx, period string, d *dirSnapshot) error {
	b, err := json.Marshal(dirJSON{Snapshot: *d.Snapshot, Currencies: d.currencies, Registrations: d.regs})
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO period_directories (period, snapshot) VALUES (?, ?)`, period, string(b))
	return err
}

// periodDirectory is the directory a finalized period was finalized with,
// or the current one for periods finalized before snapshots were kept.
func (s *Service) periodDirectory(ctx context.Context, q store.Querier, period string) (*dirSnapshot, error) {
	var doc string
	err := q.QueryRowContext(ctx, `SELECT snapshot FROM period_directories WHERE period = ?`, period).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return s.loadDirectory(ctx, q)
	}
	if err != nil {
		return nil, err
	}
	var j dirJSON
	if err := json.Unmarshal([]byte(doc), &j); err != nil {
		return nil, fmt.Errorf("period %s directory snapshot: %w", period, err)
	}
	d := &dirSnapshot{Snapshot: &j.Snapshot, currencies: j.Currencies, regs: j.Registrations}
	if d.currencies == nil {
		d.currencies = map[string]string{}
	}
	if d.regs == nil {
		d.regs = map[string]registration.Label{}
	}
	return d, nil
}
