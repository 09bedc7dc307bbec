package store

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations
var migrationFS embed.FS

// Migration is one numbered, embedded schema change.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string
}

// ErrSchemaTooNew is returned when the database was migrated by a newer
// stackbill than this binary: running against it could corrupt data the
// binary does not understand.
var ErrSchemaTooNew = errors.New("database schema is newer than this stackbill")

// Migrations returns the embedded migrations for a dialect in order.
func Migrations(d Dialect) ([]Migration, error) {
	dir := path.Join("migrations", string(d))
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", e.Name())
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		b, err := migrationFS.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations for %s are not numbered 1..n: found %d at position %d", d, m.Version, i+1)
		}
	}
	return out, nil
}

// Migrate applies every embedded migration the database lacks, each in its own
// transaction so that a crash mid-migration leaves the previous version intact.
// It refuses a database whose schema is newer than the binary, and one whose
// applied migrations differ from the embedded ones.
func (db *DB) Migrate(ctx context.Context) (applied int, err error) {
	return db.MigrateTo(ctx, 0)
}

// MigrateTo is Migrate stopping at version upTo (0: the newest). Tests use it
// to store data as an older schema held it and prove that a later migration
// carries that data forward.
func (db *DB) MigrateTo(ctx context.Context, upTo int) (applied int, err error) {
	migs, err := Migrations(db.Dialect)
	if err != nil {
		return 0, err
	}
	unlock, err := db.migrationLock(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()

	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		checksum TEXT NOT NULL,
		applied_at_us BIGINT NOT NULL)`); err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	done := map[int]string{}
	rows, err := db.write.QueryContext(ctx, `SELECT version, checksum FROM schema_migrations`)
	if err != nil {
		return 0, fmt.Errorf("read schema_migrations: %w", err)
	}
	maxApplied := 0
	for rows.Next() {
		var v int
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			rows.Close()
			return 0, err
		}
		done[v] = sum
		maxApplied = max(maxApplied, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if maxApplied > len(migs) {
		return 0, fmt.Errorf("%w: database is at version %d, this binary knows up to %d; upgrade stackbill", ErrSchemaTooNew, maxApplied, len(migs))
	}
	for _, m := range migs {
		if upTo > 0 && m.Version > upTo {
			break
		}
		if sum, ok := done[m.Version]; ok {
			if sum != m.Checksum {
				return applied, fmt.Errorf("migration %s was changed after it was applied (checksum %s, database has %s)", m.Name, m.Checksum[:12], sum[:min(12, len(sum))])
			}
			continue
		}
		err := db.Write(ctx, func(tx *Tx) error {
			// Statements go straight to the session, unrebound and
			// unprepared, once the transaction has begun.
			if err := tx.flush(ctx, false); err != nil {
				return err
			}
			for _, stmt := range splitStatements(m.SQL) {
				if _, err := tx.on.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w\n%s", m.Name, err, stmt)
				}
			}
			db.FailPoint("migrate-mid:" + strconv.Itoa(m.Version))
			_, err := tx.on.ExecContext(ctx, db.Rebind(`INSERT INTO schema_migrations (version, name, checksum, applied_at_us) VALUES (?, ?, ?, ?)`),
				m.Version, m.Name, m.Checksum, time.Now().UnixMicro())
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("apply migration: %w", err)
		}
		applied++
		db.logger.Info("applied migration", "version", m.Version, "name", m.Name, "db", db.Dialect)
	}
	return applied, nil
}

// SchemaVersion returns the highest applied migration version.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := db.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// migrationLock keeps two PostgreSQL instances starting together from
// migrating at once. SQLite needs nothing: its single writer serialises it.
func (db *DB) migrationLock(ctx context.Context) (func(), error) {
	if db.Dialect != Postgres {
		return func() {}, nil
	}
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return nil, err
	}
	const key = 7_261_004_112 // "stackbill migrations"
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		conn.Close()
		return nil, fmt.Errorf("take migration lock: %w", err)
	}
	return func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
		conn.Close()
	}, nil
}

// TryAlone runs fn unless another instance on this PostgreSQL database runs
// work under the same key now, and reports whether it ran: for background
// rounds that every instance would otherwise repeat whole. The lock is the
// session's, so an instance that dies releases it with its connection. On
// SQLite, one process's, fn always runs.
func (db *DB) TryAlone(ctx context.Context, key int64, fn func() error) (bool, error) {
	if db.Dialect != Postgres {
		return true, fn()
	}
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		return false, err
	}
	if !got {
		return false, nil
	}
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key) }()
	return true, fn()
}

// splitStatements splits a migration file on semicolons at line ends. The
// migrations are plain DDL written for this splitter: no semicolons inside
// string literals or function bodies.
func splitStatements(sqlText string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sqlText, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			if s := strings.TrimSpace(cur.String()); s != ";" {
				out = append(out, s)
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// Setting returns the value stored under key, creating it with make() the first
// time. It is how per-installation identities (a stack's cloud ID, provider
// subscription, signing keys) are generated once and kept.
func (db *DB) Setting(ctx context.Context, key string, make func() (string, error)) (string, error) {
	var v string
	err := db.read.QueryRowContext(ctx, db.Rebind(`SELECT value FROM settings WHERE key = ?`), key).Scan(&v)
	if err == nil {
		return v, nil
	}
	fresh, err := make()
	if err != nil {
		return "", err
	}
	err = db.Write(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, fresh); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	})
	return v, err
}

// SetSetting stores value under key, replacing any previous value.
func (db *DB) SetSetting(ctx context.Context, key, value string) error {
	return db.Write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	})
}

// Setting reads key inside tx; ok is false when it was never set.
func (tx *Tx) Setting(ctx context.Context, key string) (value string, ok bool, err error) {
	err = tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&value)
	if IsNoRows(err) {
		return "", false, nil
	}
	return value, err == nil, err
}

// PutSetting stores value under key inside tx.
func (tx *Tx) PutSetting(ctx context.Context, key, value string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// SwapSetting replaces key's value with value only while it is still was:
// a compare-and-set, so of two writers that read the same value one wins.
func (tx *Tx) SwapSetting(ctx context.Context, key, was, value string) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE settings SET value = ? WHERE key = ? AND value = ?`, value, key, was)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// LookupSetting reads key outside a transaction; ok is false when it was
// never set.
func (db *DB) LookupSetting(ctx context.Context, key string) (value string, ok bool, err error) {
	err = db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&value)
	if IsNoRows(err) {
		return "", false, nil
	}
	return value, err == nil, err
}
