package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
)

var operator = auth.Principal{Role: auth.RoleOperator, TokenID: "test"}

// RunConformance is the one suite both engines must pass. Each behaviour is a
// subtest on a fresh database.
func RunConformance(t *testing.T, backend string) {
	ctx := context.Background()
	t.Run("migrate is idempotent and versioned", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		n, err := db.Migrate(ctx)
		if err != nil || n != 0 {
			t.Fatalf("second Migrate applied %d, err %v", n, err)
		}
		migs, _ := store.Migrations(db.Dialect)
		if v, err := db.SchemaVersion(ctx); err != nil || v != len(migs) {
			t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(migs))
		}
	})
	t.Run("refuses a newer schema", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		if err := db.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, checksum, applied_at_us) VALUES (999, 'future', 'x', 0)`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Migrate(ctx); !errors.Is(err, store.ErrSchemaTooNew) {
			t.Fatalf("Migrate on a newer schema: %v, want ErrSchemaTooNew", err)
		}
	})
	t.Run("refuses an edited migration", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		if err := db.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE schema_migrations SET checksum = 'deadbeefdeadbeef' WHERE version = 1`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Migrate(ctx); err == nil {
			t.Fatal("Migrate accepted a changed migration")
		}
	})
	t.Run("decimal text survives exactly", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		for _, v := range []string{"0.10", "12345678901234567.123456", "-0.000000000001", "1e3"} {
			if err := db.SetSetting(ctx, "d", v); err != nil {
				t.Fatal(err)
			}
			got, err := db.Setting(ctx, "d", func() (string, error) { return "", errors.New("should exist") })
			if err != nil || got != v {
				t.Fatalf("stored %q, read %q (%v)", v, got, err)
			}
		}
	})
	t.Run("settings are created once; unique violations are recognised", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		a, _ := db.Setting(ctx, "id", func() (string, error) { return "first", nil })
		b, _ := db.Setting(ctx, "id", func() (string, error) { return "second", nil })
		if a != "first" || b != "first" {
			t.Fatalf("Setting = %q then %q", a, b)
		}
		err := db.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ('id', 'dup')`)
			return err
		})
		if !store.IsUniqueViolation(err) {
			t.Fatalf("duplicate insert: %v, want a unique violation", err)
		}
		var q string
		if err := db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ? AND '?' = '?'`, "id").Scan(&q); err != nil || q != "first" {
			t.Fatalf("rebind with a literal '?': %q %v", q, err)
		}
	})
	t.Run("failed transactions leave nothing", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		boom := errors.New("boom")
		err := db.Write(ctx, func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ('x', 'y')`); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		var n int
		_ = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM settings WHERE key = 'x'`).Scan(&n)
		if n != 0 {
			t.Fatal("rolled-back insert is visible")
		}
	})
	t.Run("work run alone is skipped by another instance meanwhile, and runs once the first is done", func(t *testing.T) {
		t.Parallel()
		dsn := DSN(t, backend)
		open := func() *store.DB { return OpenDSN(t, dsn) }
		db, other := open(), open()
		inside, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			_, err := db.TryAlone(ctx, 7_261_004_199, func() error { close(inside); <-release; return nil })
			done <- err
		}()
		<-inside
		ran, err := other.TryAlone(ctx, 7_261_004_199, func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if want := backend != "postgres"; ran != want {
			t.Fatalf("while the first ran, the second ran = %v, want %v", ran, want)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if ran, err := other.TryAlone(ctx, 7_261_004_199, func() error { return nil }); err != nil || !ran {
			t.Fatalf("after the first finished the second did not run: %v %v", ran, err)
		}
	})
	t.Run("queued writes run in order, fail the write with their own error, and leave no transaction open", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		count := func(key string) int {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM settings WHERE key = ?`, key).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		insert := `INSERT INTO settings (key, value) VALUES (?, ?)`
		// A later statement of the transaction sees what was queued before it.
		if err := db.Write(ctx, func(tx *store.Tx) error {
			if err := tx.Queue(ctx, insert, "q1", "a"); err != nil {
				return err
			}
			v, ok, err := tx.Setting(ctx, "q1")
			if err != nil || !ok || v != "a" {
				return fmt.Errorf("the transaction reads q1 = %q, %v, %v after queueing it", v, ok, err)
			}
			return tx.Queue(ctx, insert, "q2", "b")
		}); err != nil {
			t.Fatal(err)
		}
		if count("q1") != 1 || count("q2") != 1 {
			t.Fatal("queued writes were not committed")
		}
		// A queued write that fails at COMMIT fails Write with its own error,
		// and takes the writes queued with it along.
		err := db.Write(ctx, func(tx *store.Tx) error {
			if err := tx.Queue(ctx, insert, "q3", "c"); err != nil {
				return err
			}
			return tx.Queue(ctx, insert, "q1", "again")
		})
		if !store.IsUniqueViolation(err) {
			t.Fatalf("a duplicate queued key: Write returned %v, want a unique violation", err)
		}
		if count("q3") != 0 {
			t.Fatal("a write queued beside a failed one was committed")
		}
		// A failed queued write met by a later statement: Write still names it.
		err = db.Write(ctx, func(tx *store.Tx) error {
			if err := tx.Queue(ctx, insert, "q1", "again"); err != nil {
				return err
			}
			_, _, err := tx.Setting(ctx, "q2")
			return err
		})
		if !store.IsUniqueViolation(err) {
			t.Fatalf("a statement after a failed queued write: Write returned %v, want the unique violation", err)
		}
		// A write refused by its function commits nothing it queued.
		boom := errors.New("boom")
		if err := db.Write(ctx, func(tx *store.Tx) error {
			if err := tx.Queue(ctx, insert, "q4", "d"); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("got %v, want the function's error", err)
		}
		// Every connection went back to the pool outside a transaction: many
		// writes later, each still commits on its own.
		for i := range 40 {
			if err := db.SetSetting(ctx, fmt.Sprintf("after%d", i), "x"); err != nil {
				t.Fatal(err)
			}
		}
		if count("q4") != 0 || count("after39") != 1 {
			t.Fatal("a refused write's queued insert was committed, or a later write was lost")
		}
	})
	t.Run("a write's first statement goes with its BEGIN and behaves as any other", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		insert := `INSERT INTO settings (key, value) VALUES (?, ?)`
		// A first read that finds nothing says so and leaves the
		// transaction usable; integer flags scan into bools.
		if err := db.Write(ctx, func(tx *store.Tx) error {
			var v string
			if err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, "none").Scan(&v); !store.IsNoRows(err) {
				return fmt.Errorf("a first read of nothing: %v, want no rows", err)
			}
			var yes, no bool
			var n int64
			if err := tx.QueryRowContext(ctx, `SELECT 1, 0, 42`).Scan(&yes, &no, &n); err != nil || !yes || no || n != 42 {
				return fmt.Errorf("flags read as %v, %v, %d (%v)", yes, no, n, err)
			}
			_, err := tx.ExecContext(ctx, insert, "f1", "a")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// A first statement that writes reports the rows it touched.
		if err := db.SetSetting(ctx, "f2", "b"); err != nil {
			t.Fatal(err)
		}
		if err := db.Write(ctx, func(tx *store.Tx) error {
			res, err := tx.ExecContext(ctx, `UPDATE settings SET value = 'z' WHERE key IN ('f1', 'f2')`)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n != 2 {
				return fmt.Errorf("a first UPDATE of two rows reports %d (%v)", n, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// A first statement that fails fails the write with its own error;
		// a queued write waiting before it fails it the same way.
		if err := db.Write(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, insert, "f1", "again")
			return err
		}); !store.IsUniqueViolation(err) {
			t.Fatalf("a failing first statement: %v, want a unique violation", err)
		}
		if err := db.Write(ctx, func(tx *store.Tx) error {
			if err := tx.Queue(ctx, insert, "f1", "again"); err != nil {
				return err
			}
			var v string
			return tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, "f2").Scan(&v)
		}); !store.IsUniqueViolation(err) {
			t.Fatalf("a read after a failing queued write: %v, want the unique violation", err)
		}
		// Writes that run nothing, or give up before their first statement,
		// leave every connection outside a transaction.
		for i := range 40 {
			if err := db.Write(ctx, func(tx *store.Tx) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if err := db.Write(ctx, func(tx *store.Tx) error { return errors.New("no") }); err == nil {
				t.Fatal("a refused write succeeded")
			}
			if err := db.SetSetting(ctx, fmt.Sprintf("fafter%d", i), "x"); err != nil {
				t.Fatal(err)
			}
		}
		var v string
		if err := db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'f2'`).Scan(&v); err != nil || v != "z" {
			t.Fatalf("f2 = %q (%v), want z", v, err)
		}
	})
	t.Run("changes are announced once, after commit, and heard by another process on PostgreSQL", func(t *testing.T) {
		t.Parallel()
		dsn := DSN(t, backend)
		writer, other := OpenDSN(t, dsn), OpenDSN(t, dsn)
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		channel := "t_" + hex.EncodeToString(b) // channels are per database, not per schema
		var mu sync.Mutex
		var mine, theirs []bool
		var listenerPID int64
		writer.OnChange(channel, func(l bool) { mu.Lock(); mine = append(mine, l); mu.Unlock() })
		other.OnChange(channel, func(l bool) { mu.Lock(); theirs = append(theirs, l); mu.Unlock() })
		lctx, stop := context.WithCancel(ctx)
		defer stop()
		go other.ListenChanges(lctx)
		if backend == "postgres" {
			// Started when it says so to its hooks (after Listening turns true).
			WaitFor(t, "the listener to start", func() bool { mu.Lock(); defer mu.Unlock(); return len(theirs) > 0 })
			// Its connection, found while its last statement is still the
			// LISTEN (pings replace it after 10 s of silence).
			if err := writer.QueryRowContext(ctx, `SELECT pid FROM pg_stat_activity WHERE query = ? AND application_name = ?`, `LISTEN "`+channel+`"`, store.ListenerName).Scan(&listenerPID); err != nil {
				t.Fatalf("the listener's connection: %v", err)
			}
		}
		mu.Lock()
		theirs = nil // the start is announced too
		mu.Unlock()
		change := func(commit bool) {
			err := writer.Write(ctx, func(tx *store.Tx) error {
				for range 3 {
					if err := tx.Changed(ctx, channel); err != nil {
						return err
					}
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, 'x')`, channel+fmt.Sprint(commit)); err != nil {
					return err
				}
				if !commit {
					return errors.New("rolled back")
				}
				return nil
			})
			if commit != (err == nil) {
				t.Fatalf("write (commit %v): %v", commit, err)
			}
		}
		change(false)
		change(true)
		mu.Lock()
		got := slices.Clone(mine)
		mu.Unlock()
		if !slices.Equal(got, []bool{false}) {
			t.Fatalf("the writer's own hook ran %v, want once (after the commit, not listening)", got)
		}
		if backend == "postgres" {
			WaitFor(t, "the other process to hear the change", func() bool { mu.Lock(); defer mu.Unlock(); return len(theirs) > 0 })
			time.Sleep(200 * time.Millisecond) // a second NOTIFY would have come by now
			mu.Lock()
			got = slices.Clone(theirs)
			mu.Unlock()
			if !slices.Equal(got, []bool{true}) {
				t.Fatalf("the other process heard %v, want the committed change once, while listening", got)
			}
			// A listener whose connection is cut stops listening, says so,
			// and comes back.
			var cut bool
			if err := writer.QueryRowContext(ctx, `SELECT pg_terminate_backend(?)`, listenerPID).Scan(&cut); err != nil || !cut {
				t.Fatalf("cutting the listener's connection: %v %v", cut, err)
			}
			WaitFor(t, "the listener to notice its connection was cut", func() bool { mu.Lock(); defer mu.Unlock(); return slices.Contains(theirs, false) })
			WaitFor(t, "the listener to come back", func() bool { return other.Listening() })
		} else if other.Listening() || len(theirs) != 0 {
			t.Fatalf("SQLite: listening %v, heard %v; another process's writes are never heard on SQLite", other.Listening(), theirs)
		}
	})
	t.Run("directory import is idempotent and keeps history", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		clk := clock.Manual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		dir := directory.NewService(db, clk)
		rep, err := dir.Import(ctx, "test", WorldJSON())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Partners[directory.Created] != 5 || rep.Customers[directory.Created] != 5 || rep.Subscriptions[directory.Created] != 10 {
			t.Fatalf("first import: %+v", rep)
		}
		clk.Advance(time.Hour)
		rep, err = dir.Import(ctx, "test", WorldJSON())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Partners[directory.Unchanged] != 5 || rep.Customers[directory.Unchanged] != 5 || rep.Subscriptions[directory.Unchanged] != 10 {
			t.Fatalf("second import changed something: %+v", rep)
		}
		// The history, as its owner reports it: one change per object.
		changes := 0
		partners, err := dir.ListPartners(ctx, operator)
		if err != nil {
			t.Fatal(err)
		}
		customers, err := dir.ListCustomers(ctx, operator, "")
		if err != nil {
			t.Fatal(err)
		}
		subs, err := dir.ListSubscriptions(ctx, operator)
		if err != nil {
			t.Fatal(err)
		}
		var objects [][2]string
		for _, p := range partners {
			objects = append(objects, [2]string{"partner", p.ID})
		}
		for _, c := range customers {
			objects = append(objects, [2]string{"customer", c.TenantID})
		}
		for _, s := range subs {
			objects = append(objects, [2]string{"subscription", s.ID})
		}
		for _, o := range objects {
			h, err := dir.History(ctx, operator, o[0], o[1])
			if err != nil {
				t.Fatal(err)
			}
			changes += len(h)
		}
		if changes != 20 {
			t.Fatalf("history has %d changes, want 20", changes)
		}
		// An edit at 02:00 is visible as of 02:00 and not as of 01:00.
		clk.Advance(time.Hour)
		if _, _, err := dir.PutSubscription(ctx, operator, directory.Subscription{ID: World.ContosoPAYG, Offer: directory.OfferEA, Partner: "contoso"}); err != nil {
			t.Fatal(err)
		}
		before, err := dir.SubscriptionAsOf(ctx, World.ContosoPAYG, clk.Now().Add(-time.Minute))
		if err != nil || before.Offer != directory.OfferPAYG {
			t.Fatalf("as of before the edit: %+v %v", before, err)
		}
		after, err := dir.SubscriptionAsOf(ctx, World.ContosoPAYG, clk.Now())
		if err != nil || after.Offer != directory.OfferEA {
			t.Fatalf("as of the edit: %+v %v", after, err)
		}
	})
	t.Run("directory scope", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		dir := directory.NewService(db, clock.Real())
		if _, err := dir.Import(ctx, "test", WorldJSON()); err != nil {
			t.Fatal(err)
		}
		count := func(p auth.Principal) (int, int) {
			cs, err := dir.ListCustomers(ctx, p, "")
			if err != nil {
				t.Fatal(err)
			}
			ss, err := dir.ListSubscriptions(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			return len(cs), len(ss)
		}
		for _, tc := range []struct {
			p          auth.Principal
			cust, subs int
		}{
			{operator, 5, 10},
			{auth.Principal{Role: auth.RolePartner, PartnerID: "contoso"}, 2, 4},
			{auth.Principal{Role: auth.RolePartner, PartnerID: "fabrikam"}, 2, 3},
			{auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin"}, 1, 1},
		} {
			c, s := count(tc.p)
			if c != tc.cust || s != tc.subs {
				t.Errorf("%s sees %d customers and %d subscriptions, want %d and %d", tc.p.Actor(), c, s, tc.cust, tc.subs)
			}
		}
		if _, err := dir.GetCustomer(ctx, auth.Principal{Role: auth.RoleReseller, PartnerID: "tailspin"}, World.Relecloud.Tenant); err == nil {
			t.Error("tailspin can read wingtip's customer")
		}
	})
	t.Run("mapping history answers as of any hour", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		clk := clock.Manual(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
		dir := directory.NewService(db, clk)
		if _, err := dir.Import(ctx, "test", WorldJSON()); err != nil {
			t.Fatal(err)
		}
		regs := registration.NewService(db, dir, clk)
		k := registration.Key{SubscriptionID: World.ContosoDefault, ResourceGroup: "azurestack", Name: "stamp1"}
		tok := SignedToken(registration.Token{CloudID: "0f000000-0000-4000-8000-000000000001", ObjectID: "0f000000-0000-4000-8000-000000000002", BillingModel: registration.PayAsYouUse})
		loc := "global"
		reg, created, err := regs.Put(ctx, operator, k, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{})
		if err != nil || !created {
			t.Fatalf("Put: %v created=%v", err, created)
		}
		if _, err := regs.Approve(ctx, operator, k, true); err != nil {
			t.Fatal(err)
		}
		clk.Set(time.Date(2026, 3, 10, 5, 0, 0, 0, time.UTC))
		if _, err := regs.PutCustomerSubscription(ctx, operator, k, World.Adatum.Subscription, World.Adatum.Tenant, registration.Precondition{}); err != nil {
			t.Fatal(err)
		}
		clk.Set(time.Date(2026, 3, 20, 7, 0, 0, 0, time.UTC))
		if _, err := regs.DeleteCustomerSubscription(ctx, operator, k, World.Adatum.Subscription, registration.Precondition{}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			at   time.Time
			want bool
		}{
			{time.Date(2026, 3, 10, 4, 0, 0, 0, time.UTC), false},
			{time.Date(2026, 3, 10, 5, 0, 0, 0, time.UTC), true},
			{time.Date(2026, 3, 20, 6, 0, 0, 0, time.UTC), true},
			{time.Date(2026, 3, 20, 7, 0, 0, 0, time.UTC), false},
		} {
			cs, ok, err := regs.MappingAt(ctx, reg.UID, World.Adatum.Tenant, tc.at)
			if err != nil || ok != tc.want || (ok && cs != World.Adatum.Subscription) {
				t.Errorf("MappingAt(%s) = %q %v %v, want mapped=%v", tc.at, cs, ok, err, tc.want)
			}
		}
		events, err := regs.History(ctx, operator, k)
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range events {
			actions = append(actions, e.Action)
		}
		if fmt.Sprint(actions) != "[created approved mapping_added mapping_removed]" {
			t.Fatalf("history actions = %v", actions)
		}
	})
	t.Run("concurrent mapping PUTs stay consistent", func(t *testing.T) {
		t.Parallel()
		db := Open(t, backend)
		dir := directory.NewService(db, clock.Real())
		if _, err := dir.Import(ctx, "test", WorldJSON()); err != nil {
			t.Fatal(err)
		}
		regs := registration.NewService(db, dir, clock.Real())
		k := registration.Key{SubscriptionID: World.ContosoDefault, ResourceGroup: "rg", Name: "stamp"}
		tok := SignedToken(registration.Token{CloudID: "0f000000-0000-4000-8000-000000000003", ObjectID: "0f000000-0000-4000-8000-000000000004", BillingModel: registration.PayAsYouUse})
		loc := "global"
		if _, _, err := regs.Put(ctx, operator, k, registration.PutInput{Location: &loc, Token: &tok}, registration.Precondition{}); err != nil {
			t.Fatal(err)
		}
		if _, err := regs.Approve(ctx, operator, k, true); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c := World.Adatum
				if i%2 == 1 {
					c = World.Litware
				}
				if _, err := regs.PutCustomerSubscription(ctx, operator, k, c.Subscription, c.Tenant, registration.Precondition{}); err != nil {
					errs <- err
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent PUT failed: %v", err)
		}
		reg, err := regs.Get(ctx, operator, k)
		if err != nil {
			t.Fatal(err)
		}
		intervals, err := regs.Mappings(ctx, reg.UID)
		if err != nil {
			t.Fatal(err)
		}
		live, total := 0, len(intervals)
		for _, m := range intervals {
			if m.To.IsZero() {
				live++
			}
		}
		if live != 2 || total != 2 {
			t.Fatalf("after 50 concurrent PUTs of 2 mappings: %d live, %d rows; want 2 and 2", live, total)
		}
	})
}
