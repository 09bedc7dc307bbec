package store

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

// TestAfterEndHooksSeeTheOutcome: hooks run once per attempt, last added
// first, after the transaction ended, and are told whether it committed.
func TestAfterEndHooksSeeTheOutcome(t *testing.T) {
	ctx := t.Context()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "tx.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got []string
	hook := func(name string) func(bool) {
		return func(committed bool) {
			if committed {
				got = append(got, name+":commit")
			} else {
				got = append(got, name+":rollback")
			}
		}
	}
	if err := db.Write(ctx, func(tx *Tx) error {
		tx.AfterEnd(hook("a"))
		tx.AfterEnd(hook("b"))
		_, err := tx.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	failure := errors.New("refused")
	if err := db.Write(ctx, func(tx *Tx) error {
		tx.AfterEnd(hook("c"))
		if _, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (1)`); err != nil {
			return err
		}
		return failure
	}); !errors.Is(err, failure) {
		t.Fatalf("got %v, want the function's error", err)
	}
	if want := []string{"b:commit", "a:commit", "c:rollback"}; !slices.Equal(got, want) {
		t.Fatalf("hooks ran as %v, want %v", got, want)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the failed write left %d rows (%v)", n, err)
	}
}
