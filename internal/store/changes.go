package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// changes lets a package keep in memory what it would otherwise read on
// every request, and forget it when the tables behind it change: in this
// process (after the changing transaction commits) or, on PostgreSQL, in
// any process sharing the database (LISTEN/NOTIFY). It only promises
// "something changed", never what.
type changes struct {
	mu    sync.Mutex
	hooks map[string][]func(listening bool)
	// listening is whether ListenChanges holds a connection that hears other
	// processes' changes. While it is false, memory kept under a channel
	// cannot be trusted beyond this process's own writes.
	listening atomic.Bool
}

// OnChange calls fn after every change announced on channel, by this process
// (once its transaction committed) or by another (PostgreSQL, while
// ListenChanges runs), and whenever ListenChanges connects or loses its
// connection. listening says whether other processes' changes are heard at
// that moment: a cache may serve from memory only while it is true. On
// SQLite it is always false, since another process (the CLI) may write the
// same file unannounced.
func (db *DB) OnChange(channel string, fn func(listening bool)) {
	db.changes.mu.Lock()
	defer db.changes.mu.Unlock()
	if db.changes.hooks == nil {
		db.changes.hooks = map[string][]func(bool){}
	}
	db.changes.hooks[channel] = append(db.changes.hooks[channel], fn)
}

// ListenerName is the application_name of ListenChanges's connection, unless
// the DSN names one.
const ListenerName = "stackbill listener"

// Listening says whether ListenChanges hears other processes' changes now.
func (db *DB) Listening() bool { return db.changes.listening.Load() }

func (db *DB) fire(channel string) {
	db.changes.mu.Lock()
	hooks := db.changes.hooks[channel]
	db.changes.mu.Unlock()
	listening := db.changes.listening.Load()
	for _, fn := range hooks {
		fn(listening)
	}
}

// channels are those with hooks.
func (db *DB) channels() []string {
	db.changes.mu.Lock()
	defer db.changes.mu.Unlock()
	var out []string
	for ch := range db.changes.hooks {
		out = append(out, ch)
	}
	return out
}

func (db *DB) fireAll() {
	for _, ch := range db.channels() {
		db.fire(ch)
	}
}

// Changed announces that this write transaction changed what channel's
// listeners keep in memory. Announced once per transaction however often
// it is called; on PostgreSQL a NOTIFY goes with the transaction's next
// pipeline, and PostgreSQL delivers it to other processes only when the
// transaction commits.
func (tx *Tx) Changed(ctx context.Context, channel string) error {
	if tx.announced[channel] {
		return nil
	}
	if tx.announced == nil {
		tx.announced = map[string]bool{}
	}
	tx.announced[channel] = true
	tx.AfterEnd(func(committed bool) {
		if committed {
			tx.db.fire(channel)
		}
	})
	if tx.db.Dialect != Postgres {
		return nil
	}
	return tx.Queue(ctx, `SELECT pg_notify(?, '')`, channel)
}

// ListenChanges keeps one connection LISTENing on every channel registered
// with OnChange until ctx ends, reconnecting when it is lost (after a
// second, doubling to 30 s while the database stays away).
// A connection that hears nothing for 10 s is pinged, so one lost without a
// word is noticed within about 15 s; every hook is told when listening
// starts and stops (memory kept while nobody listened may be stale). On
// SQLite it returns at once.
func (db *DB) ListenChanges(ctx context.Context) {
	if db.Dialect != Postgres {
		return
	}
	wait := time.Second
	for ctx.Err() == nil {
		err := db.listenOnce(ctx)
		if db.changes.listening.Swap(false) {
			db.fireAll()
			wait = time.Second // it had listened: try again soon
		}
		if ctx.Err() != nil {
			return
		}
		db.logger.Warn("listening for changes stopped; caches read the database until it resumes", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (db *DB) listenOnce(ctx context.Context) error {
	channels := db.channels()
	cfg, err := pgx.ParseConfig(db.connDSN)
	if err != nil {
		return err
	}
	if cfg.RuntimeParams["application_name"] == "" {
		// So an operator can tell it apart in pg_stat_activity.
		cfg.RuntimeParams["application_name"] = ListenerName
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return err
		}
	}
	db.changes.listening.Store(true)
	db.fireAll() // what was kept before may have missed changes
	for {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			db.fire(n.Channel)
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			// A wait that timed out leaves the connection usable; a ping
			// tells a quiet database from a vanished one.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}
