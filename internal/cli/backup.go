package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/bridge"
	"github.com/stackbill/stackbill/internal/store"
)

// runBackup writes a consistent copy of a running installation's database.
// SQLite: VACUUM INTO, a transactionally consistent snapshot taken beside
// live writers. PostgreSQL: pg_dump's custom format (pg_dump must be on PATH;
// it is the standard tool and the only one that keeps every type, index and
// sequence exactly).
func runBackup(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "backup")
	dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN")
	out := fs.String("out", "", "the backup file to write (must not exist)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out FILE is required")
	}
	if _, err := os.Stat(*out); err == nil {
		return usagef("%s exists; backups never overwrite", *out)
	}
	if store.IsPostgresDSN(*dbFlag) {
		dsn, schema := splitSearchPath(*dbFlag)
		pgArgs := []string{"--format=custom", "--no-owner", "--file", *out}
		if schema != "" {
			pgArgs = append(pgArgs, "--schema="+schema)
		}
		cmd := exec.CommandContext(ctx, "pg_dump", append(pgArgs, dsn)...)
		cmd.Stderr = env.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("pg_dump: %w", err)
		}
		fmt.Fprintf(env.Stdout, "backed up %s to %s (pg_dump custom format)\n", redacted(*dbFlag), *out)
		return nil
	}
	app, err := Build(ctx, Options{DB: *dbFlag})
	if err != nil {
		return err
	}
	defer app.Close()
	abs, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	// VACUUM cannot run inside a transaction: a connection of its own.
	conn, err := app.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `VACUUM INTO ?`, abs); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	fmt.Fprintf(env.Stdout, "backed up %s to %s (SQLite snapshot)\n", *dbFlag, *out)
	return nil
}

// runRestore puts a backup in place of a database, then proves it: the schema
// migrates to this version and the audit chain verifies.
func runRestore(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "restore")
	dbFlag := fs.String("db", defaultDB(env), "SQLite file path or postgres:// DSN to restore into")
	in := fs.String("from", "", "the backup file")
	force := fs.Bool("force", false, "replace an existing database (stop stackbill first)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *in == "" {
		return usagef("--from FILE is required")
	}
	if _, err := os.Stat(*in); err != nil {
		return usagef("--from: %v", err)
	}
	if store.IsPostgresDSN(*dbFlag) {
		// The dump names its schema itself; the connection needs none.
		dsn, _ := splitSearchPath(*dbFlag)
		cmdArgs := []string{"--no-owner", "--single-transaction", "--exit-on-error", "--dbname", dsn}
		if *force {
			cmdArgs = append(cmdArgs, "--clean", "--if-exists")
		}
		cmd := exec.CommandContext(ctx, "pg_restore", append(cmdArgs, *in)...)
		cmd.Stderr = env.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("pg_restore (into an empty database, or with --force): %w", err)
		}
	} else {
		if _, err := os.Stat(*dbFlag); err == nil && !*force {
			return usagef("%s exists; pass --force to replace it (stop stackbill first)", *dbFlag)
		}
		if err := checkSQLiteBackup(ctx, *in); err != nil {
			return err
		}
		// Copy beside the target and rename over it, so the target is
		// either the old database or the whole backup, never half of one.
		data, err := os.ReadFile(*in)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(*dbFlag), 0o755); err != nil {
			return err
		}
		tmp := *dbFlag + ".restoring"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		f, err := os.Open(tmp)
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err != nil {
			return err
		}
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := os.Remove(*dbFlag + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if err := os.Rename(tmp, *dbFlag); err != nil {
			return err
		}
	}
	app, err := Build(ctx, Options{DB: *dbFlag})
	if err != nil {
		return fmt.Errorf("the restored database does not open: %w", err)
	}
	defer app.Close()
	keys, err := checkpointKeys(ctx, app, "")
	if err != nil {
		return err
	}
	rep, err := audit.NewLog(app.DB).Verify(ctx, nil, bridge.CheckpointVerifier(keys))
	if err != nil {
		return fmt.Errorf("the restored database's audit chain does not verify: %w", err)
	}
	fmt.Fprintf(env.Stdout, "restored %s from %s; schema migrated, audit chain of %d records intact\n", redacted(*dbFlag), *in, rep.Records)
	return nil
}

// checkSQLiteBackup refuses a file that is not a sound SQLite database.
func checkSQLiteBackup(ctx context.Context, path string) error {
	db, err := store.Open(ctx, "file:"+path+"?mode=ro", nil)
	if err != nil {
		return fmt.Errorf("%s is not a SQLite database: %w", path, err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
		return fmt.Errorf("%s fails SQLite's integrity check: %v %s", path, err, res)
	}
	return nil
}

func redacted(dsn string) string {
	if i := strings.Index(dsn, "@"); i > 0 && strings.Contains(dsn[:i], ":") {
		if j := strings.Index(dsn, "://"); j >= 0 {
			return dsn[:j+3] + "…" + dsn[i:]
		}
	}
	return dsn
}

// splitSearchPath takes a pgx search_path parameter (stackbill's way to keep
// an installation in its own schema) out of a DSN, which libpq's tools do not
// accept, and returns the schema for pg_dump --schema.
func splitSearchPath(dsn string) (string, string) {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn, ""
	}
	q := u.Query()
	schema := q.Get("search_path")
	if schema == "" {
		return dsn, ""
	}
	q.Del("search_path")
	u.RawQuery = q.Encode()
	return u.String(), schema
}
