// Package store opens stackbill's database, on SQLite (the embedded default)
// or PostgreSQL (through pgx), applies the embedded numbered migrations, runs
// transactions, and tells the processes sharing a database when a package's
// in-memory copy of its tables is out of date (changes.go).
//
// Domain packages keep their own SQL next to the code that runs it and talk to
// the database only through *DB and *Tx. Queries are written once with `?`
// placeholders; *DB rebinds them to `$n` for PostgreSQL. Where the engines
// really differ (schema types, row locks) the difference is spelled out here or
// in the per-engine migration files, so the SQL stays visible.
//
// Conventions shared by both engines, chosen so that one query text serves
// both:
//   - instants are BIGINT Unix microseconds in UTC (see clock.Micros);
//   - decimals are TEXT in SQLite (NUMERIC affinity would silently turn them
//     into floats) and TEXT in PostgreSQL too, parsed by the money package;
//   - JSON documents are TEXT.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names a database engine.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is an open stackbill database.
type DB struct {
	Dialect Dialect
	// write serialises writers on SQLite (one connection, BEGIN IMMEDIATE) so
	// that concurrent requests queue instead of failing with SQLITE_BUSY. On
	// PostgreSQL write and read are the same pool.
	write  *sql.DB
	read   *sql.DB
	logger *slog.Logger
	dsn    string
	// connDSN is the PostgreSQL DSN as given, credentials included, for the
	// connection ListenChanges holds apart from the pool.
	connDSN string
	changes changes

	rebound   sync.Map // query text -> rebound query text (PostgreSQL only)
	closeOnce sync.Once
	// failPoints are named places where the process kills itself with
	// SIGKILL, for crash-recovery tests (see FailPoint).
	failPoints map[string]bool

	// SQLite re-parses every statement database/sql hands it, which cost
	// over a third of the CPU of a registration PUT; prepared statements
	// are cached per pool (database/sql then keeps one per connection).
	// pgx caches statements per connection by itself.
	stmtMu    sync.Mutex
	readStmt  map[string]*sql.Stmt
	writeStmt map[string]*sql.Stmt
	// pending holds write statements seen inside a transaction. They are
	// prepared after it ends: preparing on the one-connection write pool
	// while the transaction holds that connection would deadlock.
	pending map[string]bool

	stop, stopped chan struct{} // the SQLite checkpoint loop
}

// Settle brings a database to rest after a bulk load, doing now what the
// engine would do by itself a moment later: SQLite copies its whole WAL into
// the database file; PostgreSQL vacuums and analyzes (autovacuum's work
// after a large insert), which sets the visibility map that index-only scans
// rely on and gives the planner its statistics. Benchmarks call it after
// loading so that this work is not timed as the work that follows.
func (db *DB) Settle(ctx context.Context) error {
	q := `PRAGMA wal_checkpoint(TRUNCATE)`
	if db.Dialect == Postgres {
		q = `VACUUM (ANALYZE)`
	}
	_, err := db.read.ExecContext(ctx, q)
	return err
}

// checkpointLoop copies the SQLite WAL into the database file every 250 ms
// from a reader connection, so writers never pay for it. PASSIVE never
// blocks readers or the writer; a TRUNCATE now and then keeps the WAL file
// from growing without bound under constant load.
func (db *DB) checkpointLoop() {
	defer close(db.stopped)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-db.stop:
			_, _ = db.read.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
			return
		case <-t.C:
		}
		mode := "PASSIVE"
		if i%240 == 0 {
			mode = "TRUNCATE"
		}
		if _, err := db.read.Exec(`PRAGMA wal_checkpoint(` + mode + `)`); err != nil && db.logger != nil {
			db.logger.Warn("sqlite checkpoint", "err", err)
		}
	}
}

// maxCachedStatements bounds the cache: queries built with variable IN lists
// could otherwise grow it without limit.
const maxCachedStatements = 512

// prepared returns a cached prepared statement for q on pool, or nil when the
// engine or the cache size says not to cache.
func (db *DB) prepared(ctx context.Context, write bool, q string) *sql.Stmt {
	if db.Dialect != SQLite {
		return nil
	}
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	cache, pool := db.readStmt, db.read
	if write {
		cache, pool = db.writeStmt, db.write
	}
	if st, ok := cache[q]; ok {
		return st
	}
	if len(cache) >= maxCachedStatements {
		return nil
	}
	if write {
		db.pending[q] = true
		return nil
	}
	st, err := pool.PrepareContext(ctx, q)
	if err != nil {
		return nil // let the unprepared path report the error
	}
	cache[q] = st
	return st
}

// IsPostgresDSN reports whether dsn names a PostgreSQL database rather than a
// SQLite file.
func IsPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open connects to the database named by dsn: a postgres:// URL, a SQLite
// file path (created with its folder if missing), or a SQLite "file:" URI used
// as given. It does not migrate; call Migrate.
func Open(ctx context.Context, dsn string, logger *slog.Logger, opts ...Option) (*DB, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if IsPostgresDSN(dsn) {
		pool, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		pool.SetMaxOpenConns(32)
		pool.SetMaxIdleConns(32)
		pool.SetConnMaxIdleTime(5 * time.Minute)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := pool.PingContext(pctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("connect to postgres: %w", err)
		}
		return &DB{Dialect: Postgres, write: pool, read: pool, logger: logger, dsn: redactDSN(dsn), connDSN: dsn}, nil
	}
	writeDSN, readDSN, err := sqliteDSNs(dsn)
	if err != nil {
		return nil, err
	}
	if o.maxBytes > 0 {
		// A size cap is a full disk that arrives on purpose: writes fail
		// with SQLITE_FULL, reads and existing data are untouched.
		writeDSN += "&_pragma=" + url.QueryEscape(fmt.Sprintf("max_page_count(%d)", max(1, o.maxBytes/4096)))
	}
	w, err := sql.Open("sqlite", writeDSN)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", dsn, err)
	}
	r, err := sql.Open("sqlite", readDSN)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	db := &DB{Dialect: SQLite, write: w, read: r, logger: logger, dsn: dsn,
		readStmt: map[string]*sql.Stmt{}, writeStmt: map[string]*sql.Stmt{}, pending: map[string]bool{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	go db.checkpointLoop()
	return db, nil
}

// sqliteDSNs builds the writer and reader DSNs. WAL lets readers run beside
// the single writer; synchronous(NORMAL) in WAL mode keeps every committed
// transaction across a process crash (kill -9), and only an OS crash can lose
// the last commits. Pass a "file:" URI to choose other pragmas.
func sqliteDSNs(dsn string) (string, string, error) {
	if strings.HasPrefix(dsn, "file:") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return dsn + sep + "_txlock=immediate", dsn, nil
	}
	if dsn == "" {
		return "", "", errors.New("empty database path")
	}
	if dir := filepath.Dir(dsn); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return "", "", fmt.Errorf("create data folder: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// Usage intake dirties pages all over the record and idempotency
	// indexes; the default 2 MB cache spills them to the WAL mid-transaction.
	q.Add("_pragma", "cache_size(-65536)")
	// A multi-row INSERT ... ON CONFLICT inside a transaction keeps a
	// statement journal of every page it touches; in a temporary file that
	// was a pwrite per page, a sixth of aggregation's time.
	q.Add("_pragma", "temp_store(MEMORY)")
	// Checkpoints run in the background (see checkpointLoop), not inside
	// the commit that happens to cross the WAL size threshold.
	q.Add("_pragma", "wal_autocheckpoint(0)")
	base := "file:" + dsn + "?" + q.Encode()
	return base + "&_txlock=immediate", base, nil
}

func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres"
	}
	return u.Redacted()
}

// String describes the database for logs without credentials.
func (db *DB) String() string { return string(db.Dialect) + ":" + db.dsn }

// Close closes every pool. Closing twice is harmless.
func (db *DB) Close() error {
	var err error
	db.closeOnce.Do(func() { err = db.close() })
	return err
}

func (db *DB) close() error {
	if db.stop != nil {
		close(db.stop)
		<-db.stopped
	}
	db.stmtMu.Lock()
	for _, m := range []map[string]*sql.Stmt{db.readStmt, db.writeStmt} {
		for _, st := range m {
			st.Close()
		}
	}
	db.stmtMu.Unlock()
	err := db.write.Close()
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.read.PingContext(ctx) }

// Rebind turns `?` placeholders into `$1…$n` for PostgreSQL. Question marks
// inside string literals are left alone.
func (db *DB) Rebind(q string) string {
	if db.Dialect != Postgres {
		return q
	}
	if v, ok := db.rebound.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	inStr := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			inStr = !inStr
			b.WriteByte(c)
		case c == '?' && !inStr:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	db.rebound.Store(q, out)
	return out
}

// ForUpdate is the row-lock suffix for SELECTs that precede a write in the
// same transaction. SQLite has no row locks and needs none: its transactions
// are serialised by BEGIN IMMEDIATE on the single writer connection.
func (db *DB) ForUpdate() string {
	if db.Dialect == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// ForShare is the shared row-lock suffix: writers that only need a row to
// stay as it is (a registration while its mappings change) share it, and a
// writer that changes the row waits for them.
func (db *DB) ForShare() string {
	if db.Dialect == Postgres {
		return " FOR SHARE"
	}
	return ""
}

// Scanner is one row: *sql.Row or *sql.Rows.
type Scanner interface{ Scan(dest ...any) error }

// Collect reads every row of a query with scan and closes the rows; a
// query that failed (err) returns its error. The result is never nil, so
// an empty list encodes as [].
func Collect[T any](rows *sql.Rows, err error, scan func(Scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Querier runs read queries; both *DB (reader pool) and *Tx satisfy it.
type Querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) Row
}

// QueryContext runs a read query on the reader pool.
func (db *DB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = db.Rebind(q)
	if st := db.prepared(ctx, false, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.read.QueryContext(ctx, q, args...)
}

// QueryRowContext runs a single-row read query on the reader pool.
func (db *DB) QueryRowContext(ctx context.Context, q string, args ...any) Row {
	q = db.Rebind(q)
	if st := db.prepared(ctx, false, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.read.QueryRowContext(ctx, q, args...)
}

// Tx is a transaction: a write transaction from Write, or a read-only one
// on the reader pool from Read.
type Tx struct {
	// tx is the database/sql transaction of SQLite's writes and of every
	// read transaction; nil for a PostgreSQL write transaction.
	tx   *sql.Tx
	db   *DB
	read bool
	ends []func(committed bool)
	// conn is the connection a PostgreSQL write transaction runs on. The
	// transaction is an explicit BEGIN on it rather than a *sql.Tx, so that
	// queued writes (Queue) and COMMIT can be sent to PostgreSQL in one
	// pipeline, and CopyFrom can reach it (database/sql reaches neither).
	conn *sql.Conn
	// on is what statements run on: tx, or conn.
	on session
	// queued are writes waiting for the next statement or COMMIT, and
	// queueErr the first error one of them met (PostgreSQL only).
	queued   []queuedStmt
	queueErr error
	// announced are the channels Changed announced in this transaction.
	announced map[string]bool
	// begun is whether the PostgreSQL write transaction's BEGIN was sent.
	begun bool
}

// session is what a transaction's statements run on: a *sql.Tx, or the
// *sql.Conn that holds a PostgreSQL write transaction.
type session interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

type queuedStmt struct {
	q    string
	args []any
}

// Queue runs a write whose only result is its error, such as the INSERT of
// an event or an audit record. On PostgreSQL it is held and sent with the
// transaction's next statement's predecessors in one pipeline, or with
// COMMIT: a PUT's three INSERTs and its COMMIT cost one round trip instead
// of four. Its error then surfaces from that statement, or from Write. On
// SQLite, where a statement costs no round trip, it runs at once.
func (tx *Tx) Queue(ctx context.Context, q string, args ...any) error {
	if tx.conn == nil {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	if tx.queueErr != nil {
		return tx.queueErr
	}
	tx.queued = append(tx.queued, queuedStmt{q: tx.db.Rebind(q), args: args})
	return nil
}

// flush sends the queued writes, in one pipeline, followed by COMMIT when
// commit is set. The first error is kept: a failed statement aborts a
// PostgreSQL transaction, so every later statement fails for that reason,
// and the caller should see the cause.
func (tx *Tx) flush(ctx context.Context, commit bool) error {
	if tx.queueErr != nil {
		return tx.queueErr
	}
	if len(tx.queued) == 0 && !commit {
		return nil
	}
	if commit {
		tx.queued = append(tx.queued, queuedStmt{q: "COMMIT"})
	}
	return tx.pipeline(ctx, nil, nil)
}

// pipeline sends the queued statements (BEGIN first, when the transaction
// has not begun) and then last, when it is not nil, in one round trip, and
// reads last's result with read. A queued statement's failure is kept as
// the transaction's queueErr.
func (tx *Tx) pipeline(ctx context.Context, last *queuedStmt, read func(pgx.BatchResults) error) error {
	b := &pgx.Batch{}
	for _, s := range tx.queued {
		b.Queue(s.q, s.args...)
	}
	n := len(tx.queued)
	if last != nil {
		b.Queue(last.q, last.args...)
	}
	tx.queued = tx.queued[:0]
	tx.begun = true
	return tx.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("a PostgreSQL write transaction needs a pgx connection")
		}
		br := c.Conn().SendBatch(ctx, b)
		for i := 0; i < n; i++ {
			if _, err := br.Exec(); err != nil {
				tx.queueErr = err
				br.Close()
				return err
			}
		}
		var err error
		if read != nil {
			err = read(br)
		}
		if cerr := br.Close(); err == nil && cerr != nil {
			err = cerr
			if read == nil {
				tx.queueErr = err
			}
		}
		return err
	})
}

// Row is one row of QueryRowContext: database/sql's, or one read in the
// pipeline of a PostgreSQL write transaction's waiting statements.
type Row interface {
	Scan(dest ...any) error
	Err() error
}

// pipelinedRow is a row read with the statements sent before it. Its
// values are kept as PostgreSQL sent them and decoded by Scan with the
// connection's type map, as pgx decodes any row.
type pipelinedRow struct {
	err    error
	types  *pgtype.Map
	fields []pgconn.FieldDescription
	values [][]byte
}

func (r *pipelinedRow) Err() error { return r.err }

func (r *pipelinedRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	// database/sql turns the integer flags of both engines' schemas into
	// bool; pgx's own decoding does not, so flags take database/sql's road.
	for i, d := range dest {
		if b, ok := d.(*bool); ok {
			dest[i] = (*intBool)(b)
		}
	}
	return pgx.ScanRow(r.types, r.fields, r.values, dest...)
}

// intBool scans an integer flag (or a boolean) into a bool, as database/sql
// would.
type intBool bool

func (b *intBool) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		*b = v != 0
	case bool:
		*b = intBool(v)
	default:
		return fmt.Errorf("cannot scan %T into a bool", src)
	}
	return nil
}

// AfterEnd runs fn once the write transaction has committed (committed is
// true) or rolled back, and before Write returns or retries. It is for
// memory that mirrors what the transaction wrote: database/sql hands the
// connection to the next transaction the moment this one ends (and rolls
// back at once when ctx ends, even while fn is still running), so state
// kept in memory must be settled by a hook that the next transaction can
// wait for, never by the caller after Write returns. Hooks run last added
// first.
func (tx *Tx) AfterEnd(fn func(committed bool)) { tx.ends = append(tx.ends, fn) }

// CopyFrom bulk-loads rows into table's columns with PostgreSQL's COPY,
// inside the write transaction: for a few thousand rows it costs a fraction
// of a multi-row INSERT, whose thousands of parameters PostgreSQL parses and
// binds one by one. next answers each row in turn and nil at the end. It is
// for PostgreSQL write transactions only; SQLite's multi-row INSERT binds
// parameters in-process and needs no such path.
func (tx *Tx) CopyFrom(ctx context.Context, table string, columns []string, next func() ([]any, error)) (int64, error) {
	if tx.conn == nil {
		return 0, fmt.Errorf("copy into %s: COPY needs a PostgreSQL write transaction", table)
	}
	if err := tx.flush(ctx, false); err != nil {
		return 0, err
	}
	var n int64
	err := tx.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("copy into %s: not a pgx connection", table)
		}
		var err error
		n, err = c.Conn().CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromFunc(next))
		return err
	})
	return n, err
}

// Staged copies rows into a session-local staging table shaped as columns
// of table (named table_stage), runs move, which takes them from there
// (INSERT … SELECT with whatever conflict handling the caller needs: COPY
// itself cannot skip or merge conflicts), and empties it. It is the bulk
// path of PostgreSQL write transactions: COPY costs a fraction of a
// multi-row INSERT, whose parameters PostgreSQL parses and binds one by one.
func (tx *Tx) Staged(ctx context.Context, table string, columns []string, next func() ([]any, error), move func(stage string) error) error {
	stage := table + "_stage"
	cols := strings.Join(columns, ", ")
	// ON COMMIT DELETE ROWS empties it at every commit; IF NOT EXISTS makes
	// this a no-op after a connection's first use. WITH NO DATA and no
	// defaults: a staged row draws nothing from the table's sequences.
	if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS `+stage+` ON COMMIT DELETE ROWS AS SELECT `+cols+` FROM `+table+` WITH NO DATA`); err != nil {
		return fmt.Errorf("stage %s: %w", table, err)
	}
	if _, err := tx.CopyFrom(ctx, stage, columns, next); err != nil {
		return fmt.Errorf("stage %s: %w", table, err)
	}
	if err := move(stage); err != nil {
		return err
	}
	// Emptied now rather than at commit: one transaction may stage several
	// times.
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+stage); err != nil {
		return fmt.Errorf("stage %s: %w", table, err)
	}
	return nil
}

// DB returns the database the transaction belongs to.
func (tx *Tx) DB() *DB { return tx.db }

// ExecContext runs a statement inside the transaction. On PostgreSQL it
// goes in one round trip with the statements waiting to be sent (BEGIN
// and queued writes).
func (tx *Tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	q = tx.db.Rebind(q)
	if st := tx.db.prepared(ctx, !tx.read, q); st != nil {
		return tx.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	if tx.queueErr != nil {
		return nil, tx.queueErr
	}
	if tx.conn != nil && len(tx.queued) > 0 {
		var res driver.RowsAffected
		err := tx.pipeline(ctx, &queuedStmt{q: q, args: args}, func(br pgx.BatchResults) error {
			tag, err := br.Exec()
			res = driver.RowsAffected(tag.RowsAffected())
			return err
		})
		if err != nil {
			return nil, err
		}
		return res, nil
	}
	return tx.on.ExecContext(ctx, q, args...)
}

// QueryContext runs a query inside the transaction.
func (tx *Tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = tx.db.Rebind(q)
	if st := tx.db.prepared(ctx, !tx.read, q); st != nil {
		return tx.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	if err := tx.flush(ctx, false); err != nil {
		return nil, err
	}
	return tx.on.QueryContext(ctx, q, args...)
}

// QueryRowContext runs a single-row query inside the transaction. When a
// queued write failed, the query fails too (the transaction is aborted) and
// Write returns the queued write's error.
func (tx *Tx) QueryRowContext(ctx context.Context, q string, args ...any) Row {
	q = tx.db.Rebind(q)
	if st := tx.db.prepared(ctx, !tx.read, q); st != nil {
		return tx.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	if tx.queueErr != nil {
		return &pipelinedRow{err: tx.queueErr}
	}
	if tx.conn != nil && len(tx.queued) > 0 {
		// The row goes in one round trip with the statements waiting:
		// the transaction's BEGIN, for its first read.
		r := &pipelinedRow{}
		err := tx.pipeline(ctx, &queuedStmt{q: q, args: args}, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			defer rows.Close()
			if !rows.Next() {
				if err := rows.Err(); err != nil {
					return err
				}
				return sql.ErrNoRows
			}
			r.types, r.fields = rows.Conn().TypeMap(), rows.FieldDescriptions()
			for _, v := range rows.RawValues() {
				if v != nil {
					v = append([]byte{}, v...) // RawValues are reused by the next read
				}
				r.values = append(r.values, v)
			}
			return rows.Err()
		})
		if err != nil {
			r.err = err
		}
		return r
	}
	return tx.on.QueryRowContext(ctx, q, args...)
}

// Write runs fn in a write transaction and commits it if fn returns nil.
// PostgreSQL serialization failures and deadlocks are retried a few times,
// because they say nothing about the request and everything about timing.
func (db *DB) Write(ctx context.Context, fn func(tx *Tx) error) error {
	const attempts = 5
	var err error
	for i := 0; i < attempts; i++ {
		err = db.writeOnce(ctx, fn)
		if err == nil || !isRetryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(i+1) * 5 * time.Millisecond):
		}
	}
	return err
}

// Read runs fn in a read-only transaction on the reader pool, so that its
// queries see one snapshot and may change session settings for themselves
// (SET LOCAL on PostgreSQL) without touching the pool's other users.
func (db *DB) Read(ctx context.Context, fn func(tx *Tx) error) error {
	sqlTx, err := db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer sqlTx.Rollback() //nolint:errcheck // read-only: nothing to keep
	return fn(&Tx{tx: sqlTx, on: sqlTx, db: db, read: true})
}

// preparePending prepares the write statements first seen in a transaction
// that has ended, so the next transactions reuse them.
func (db *DB) preparePending(ctx context.Context) {
	if db.Dialect != SQLite {
		return
	}
	db.stmtMu.Lock()
	qs := make([]string, 0, len(db.pending))
	for q := range db.pending {
		qs = append(qs, q)
	}
	clear(db.pending)
	db.stmtMu.Unlock()
	for _, q := range qs {
		st, err := db.write.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		db.stmtMu.Lock()
		if _, ok := db.writeStmt[q]; ok || len(db.writeStmt) >= maxCachedStatements {
			st.Close()
		} else {
			db.writeStmt[q] = st
		}
		db.stmtMu.Unlock()
	}
}

func (db *DB) writeOnce(ctx context.Context, fn func(tx *Tx) error) error {
	defer db.preparePending(context.WithoutCancel(ctx))
	if db.Dialect == Postgres {
		return db.writeOncePostgres(ctx, fn)
	}
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	tx := &Tx{tx: sqlTx, on: sqlTx, db: db}
	committed := false
	defer func() {
		if !committed {
			_ = sqlTx.Rollback() // ErrTxDone when it already ended
		}
		tx.ended(committed)
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	committed = true
	return nil
}

// writeOncePostgres runs fn between an explicit BEGIN and COMMIT on one
// connection held for the transaction; COMMIT goes in one pipeline with the
// writes still queued. A connection whose transaction could not be rolled
// back is closed, never returned to the pool mid-transaction.
func (db *DB) writeOncePostgres(ctx context.Context, fn func(tx *Tx) error) error {
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer conn.Close()
	// BEGIN waits to go in one round trip with the first statement.
	tx := &Tx{db: db, conn: conn, on: conn, queued: []queuedStmt{{q: "BEGIN"}}}
	// committed: COMMIT succeeded. Otherwise ROLLBACK, which also ends a
	// transaction that a failed COMMIT left aborted (and only warns when
	// COMMIT had ended it).
	committed := false
	defer func() {
		if !committed && tx.begun {
			// The caller's ctx may be what ended the transaction.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if _, err := conn.ExecContext(rctx, "ROLLBACK"); err != nil {
				discard(conn)
			}
			cancel()
		}
		tx.ended(committed)
	}()
	if err := fn(tx); err != nil {
		if tx.queueErr != nil {
			return tx.queueErr // the cause, not "transaction is aborted"
		}
		return err
	}
	if err := tx.flush(ctx, true); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	committed = true
	return nil
}

// discard closes a connection instead of returning it to the pool.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// ended runs the AfterEnd hooks, last added first.
func (tx *Tx) ended(committed bool) {
	for i := len(tx.ends) - 1; i >= 0; i-- {
		tx.ends[i](committed)
	}
}

func isRetryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		c := sqErr.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

// Option configures Open.
type Option func(*options)

type options struct{ maxBytes int64 }

// MaxSize caps a SQLite database at about n bytes (4 KiB pages); past it,
// writes fail as they would on a full disk (see IsFull). PostgreSQL ignores
// it: its operators cap storage with the file system or quotas.
func MaxSize(n int64) Option { return func(o *options) { o.maxBytes = n } }

// IsFull reports whether err means storage is full: SQLite's SQLITE_FULL
// (a full disk or the MaxSize cap) or PostgreSQL's disk_full (53100).
func IsFull(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "53100"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code()&0xff == sqlite3.SQLITE_FULL
	}
	return false
}

// IsUniqueViolation reports whether err is a unique-constraint violation in
// either engine.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// Placeholders returns "?, ?, …" with n marks, for IN lists.
func Placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// Bool binds a Go bool to the INTEGER 0/1 columns both engines use for flags;
// pgx refuses to encode a bool into an integer column.
func Bool(b bool) int {
	if b {
		return 1
	}
	return 0
}

// IsNoRows reports whether err is sql.ErrNoRows.
func IsNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// Conn reserves one connection of the write pool, for bulk work that needs
// the driver itself (PostgreSQL COPY in benchmarks). Queries on it are not
// rebound: write them in the engine's own placeholder syntax.
func (db *DB) Conn(ctx context.Context) (*sql.Conn, error) { return db.write.Conn(ctx) }

// SetFailPoints arms crash points by name (stackbill reads them from
// STACKBILL_FAILPOINTS). Only tests arm them: they prove that a process killed
// mid-migration or mid-finalization recovers on restart.
func (db *DB) SetFailPoints(names []string) {
	db.failPoints = map[string]bool{}
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" {
			db.failPoints[n] = true
		}
	}
}

// FailPoint kills the process with SIGKILL, exactly as kill -9 would, when
// the named point is armed; it does nothing otherwise.
func (db *DB) FailPoint(name string) {
	if !db.failPoints[name] {
		return
	}
	if db.logger != nil {
		db.logger.Warn("fail point reached: killing the process", "point", name)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// DeleteInBatches runs q, a DELETE … WHERE key IN (SELECT key … LIMIT n),
// until it deletes nothing, one short transaction per batch, so that purging
// a large table never holds the writer or long row locks. It returns the
// rows deleted.
func (db *DB) DeleteInBatches(ctx context.Context, q string, args ...any) (int64, error) {
	var total int64
	for {
		var n int64
		err := db.Write(ctx, func(tx *Tx) error {
			res, err := tx.ExecContext(ctx, q, args...)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n == 0 || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}
