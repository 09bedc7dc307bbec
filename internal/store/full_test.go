package store

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestFullDatabaseRefusesWritesAndRecovers fills a size-capped SQLite
// database: the write that does not fit fails with IsFull and rolls back
// whole, what was stored stays intact, and without the cap writes resume.
func TestFullDatabaseRefusesWritesAndRecovers(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "full.db")
	db, err := Open(ctx, path, nil, MaxSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); err != nil && !IsFull(err) {
		t.Fatal(err)
	}
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	blob := strings.Repeat("x", 8000)
	stored, full := 0, false
	for i := 0; i < 1000 && !full; i++ {
		err := db.Write(ctx, func(tx *Tx) error {
			for j := 0; j < 5; j++ {
				if _, err := tx.ExecContext(ctx, `INSERT INTO filler (body) VALUES (?)`, blob); err != nil {
					return err
				}
			}
			return nil
		})
		switch {
		case err == nil:
			stored += 5
		case IsFull(err):
			full = true
		default:
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("a 256 KiB database never filled")
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM filler`).Scan(&n); err != nil || n != stored {
		t.Fatalf("after the full write: %d rows (%v), want the %d committed ones (the failed batch rolls back whole)", n, err, stored)
	}
	db.Close()
	db, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity after filling: %q %v", check, err)
	}
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO filler (body) VALUES (?)`, blob)
		return err
	}); err != nil {
		t.Fatalf("space returned, but writes still fail: %v", err)
	}
}
