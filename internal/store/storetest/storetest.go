// Package storetest gives tests a fresh database on each backend, and holds the
// conformance suite that proves SQLite and PostgreSQL behave the same.
//
// PostgreSQL tests need STACKBILL_TEST_POSTGRES_URL (.ci/postgres.sh starts a
// throwaway cluster and prints it). Without it they skip on a developer's
// machine and fail under CI=true, so CI can never pass by skipping them.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/store"
)

// Backends lists the engines every storage-dependent test runs on.
var Backends = []string{"sqlite", "postgres"}

// DSN returns the DSN of a fresh, empty database on backend, removed when the
// test ends. On PostgreSQL each test gets its own schema.
func DSN(t testing.TB, backend string) string {
	t.Helper()
	switch backend {
	case "sqlite":
		return filepath.Join(t.TempDir(), "stackbill.db")
	case "postgres":
		base := os.Getenv("STACKBILL_TEST_POSTGRES_URL")
		if base == "" {
			if os.Getenv("CI") == "true" {
				t.Fatal("STACKBILL_TEST_POSTGRES_URL is not set; under CI=true the PostgreSQL tests must run (see .ci/postgres.sh)")
			}
			t.Skip("STACKBILL_TEST_POSTGRES_URL not set; run: eval \"$(.ci/postgres.sh)\"")
		}
		admin, err := sql.Open("pgx", base)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		schema := "t_" + hex.EncodeToString(b)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
			t.Fatalf("create schema on %s: %v", base, err)
		}
		t.Cleanup(func() {
			a, err := sql.Open("pgx", base)
			if err != nil {
				return
			}
			defer a.Close()
			_, _ = a.Exec("DROP SCHEMA " + schema + " CASCADE")
		})
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	t.Fatalf("unknown backend %q", backend)
	return ""
}

// Open returns a migrated database on backend.
func Open(t testing.TB, backend string) *store.DB {
	t.Helper()
	return OpenDSN(t, DSN(t, backend))
}

// OpenDSN opens and migrates the database at dsn, closed when the test
// ends: called twice on one DSN, it is two processes sharing a database.
func OpenDSN(t testing.TB, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dsn, Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

// WaitFor polls cond for up to 10 s: what it waits for happens in another
// goroutine or process, at a moment the test does not choose. It proves
// that something happens, never how fast.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("waited 10 s for %s", what)
}

// Logger discards logs, since tests assert on behaviour, not log lines,
// unless STACKBILL_TEST_LOG is set: then the services' logs go to stderr, which
// is how a 500 in a failing end-to-end test is explained.
func Logger() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("STACKBILL_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// Each runs fn once per backend as a subtest.
func Each(t *testing.T, fn func(t *testing.T, backend string)) {
	for _, b := range Backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}
