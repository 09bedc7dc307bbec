package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"io"

	"github.com/stackbill/stackbill/internal/store"
)

// The kinds of file finalization stores for a period.
const (
	fileReconciliation = "reconciliation" // one per bill-to partner
	fileStatements     = "statements"     // one per owner: []Statement as JSON
)

// periodFileWriter stores a file in 1 MiB chunks inside the finalization's
// transaction, so that a period is finalized with all of its files or none.
type periodFileWriter struct {
	ctx                 context.Context
	tx                  *store.Tx
	period, kind, owner string
	seq                 int
	buf                 bytes.Buffer
}

func (w *periodFileWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for w.buf.Len() >= chunkSize {
		if err := w.store(w.buf.Next(chunkSize)); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *periodFileWriter) store(b []byte) error {
	_, err := w.tx.ExecContext(w.ctx, `INSERT INTO period_files (period, kind, owner_id, seq, data) VALUES (?, ?, ?, ?, ?)`,
		w.period, w.kind, w.owner, w.seq, bytes.Clone(b))
	w.seq++
	return err
}

// close stores what is left; an empty file is stored as one empty chunk, so
// that it is told apart from a file that was never stored.
func (w *periodFileWriter) close() error {
	if w.buf.Len() > 0 || w.seq == 0 {
		return w.store(w.buf.Next(w.buf.Len()))
	}
	return nil
}

// copyPeriodFile writes a stored file to out and reports whether there was
// one: periods finalized before files were stored have none.
func copyPeriodFile(ctx context.Context, q store.Querier, period, kind, owner string, out io.Writer) (bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT data FROM period_files WHERE period = ? AND kind = ? AND owner_id = ? ORDER BY seq`, period, kind, owner)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return found, err
		}
		found = true
		if _, err := out.Write(data); err != nil {
			return found, err
		}
	}
	return found, rows.Err()
}

// storedStatements reads an owner's statements as finalization stored them.
func storedStatements(ctx context.Context, q store.Querier, period, owner string) ([]Statement, bool, error) {
	var buf bytes.Buffer
	ok, err := copyPeriodFile(ctx, q, period, fileStatements, owner, &buf)
	if err != nil || !ok {
		return nil, false, err
	}
	var out []Statement
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		return nil, false, err
	}
	return out, true, nil
}
