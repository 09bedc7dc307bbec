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

// periodFile stores a file in chunks inside the finalization's transaction,
// so that a period is finalized with all of its files or none. An empty file
// is stored as one empty chunk, so that it is told apart from a file that
// was never stored.
func periodFile(ctx context.Context, tx *store.Tx, period, kind, owner string) *chunkWriter {
	return &chunkWriter{keepEmpty: true, put: func(seq int, data []byte) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO period_files (period, kind, owner_id, seq, data) VALUES (?, ?, ?, ?, ?)`, period, kind, owner, seq, data)
		return err
	}}
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
