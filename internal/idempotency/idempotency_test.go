package idempotency_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/idempotency"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

const far = int64(1) << 60

// TestAClaimThatDidNotCommitIsNeverSeen: a request whose client went away
// mid-transaction is rolled back by database/sql as soon as its context
// ends, which hands the writer to the next request while the first is still
// unwinding. If that next request carries the same keys (the client's
// re-send), it must find them fresh: finding them taken would acknowledge
// them as duplicates of something that was never stored, and lose them.
func TestAClaimThatDidNotCommitIsNeverSeen(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		db := storetest.Open(t, backend)
		ks := idempotency.New(db, "commerce_dedup")
		ctx := t.Context()
		keys := [][16]byte{{1}, {2}, {3}}

		ctxA, cancelA := context.WithCancel(ctx)
		defer cancelA()
		claimed, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		aDone := make(chan error, 1)
		go func() {
			aDone <- db.Write(ctxA, func(tx *store.Tx) error {
				if _, err := ks.Claim(ctxA, tx, keys, far); err != nil {
					return err
				}
				once.Do(func() { close(claimed) })
				<-release
				_, err := tx.ExecContext(ctxA, `DELETE FROM commerce_dedup_blocks WHERE id < 0`)
				return err
			})
		}()
		<-claimed
		cancelA() // the client hangs up: database/sql rolls A back now

		bDone := make(chan []bool, 1)
		go func() {
			var fresh []bool
			err := db.Write(ctx, func(tx *store.Tx) error {
				var err error
				fresh, err = ks.Claim(ctx, tx, keys, far)
				return err
			})
			if err != nil {
				t.Error(err)
			}
			bDone <- fresh
		}()
		// Give the re-send every chance to claim while A unwinds; the test
		// passes or fails on what it finds, not on how long it took.
		var fresh []bool
		select {
		case fresh = <-bDone:
		case <-time.After(300 * time.Millisecond):
		}
		close(release)
		if err := <-aDone; err == nil {
			t.Fatal("the cancelled transaction committed")
		}
		if fresh == nil {
			fresh = <-bDone
		}
		for i, f := range fresh {
			if !f {
				t.Errorf("key %d was taken by a transaction that rolled back", i)
			}
		}
		// And a claim now sees them taken, by the re-send that committed.
		if err := db.Write(ctx, func(tx *store.Tx) error {
			again, err := ks.Claim(ctx, tx, keys, far)
			for i, f := range again {
				if f {
					t.Errorf("key %d is fresh after a committed claim", i)
				}
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestFrozenKeysStaySeen: keys moved out of memory (SQLite's Freeze) are
// still found, by the store that froze them, by a store opened afterwards
// (a restart) and by one that was open before (another process on the same
// file); a rolled-back claim leaves nothing behind; Purge forgets exactly
// the keys that expired, wherever they are. On PostgreSQL Freeze moves
// nothing and every answer is the same.
func TestFrozenKeysStaySeen(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		db := storetest.Open(t, backend)
		ctx := t.Context()
		const hot = 500
		ks := idempotency.NewHot(db, "usage_dedup", hot)
		other := idempotency.NewHot(db, "usage_dedup", hot)
		rng := rand.New(rand.NewPCG(1, 2))
		newKeys := func(n int) [][16]byte {
			out := make([][16]byte, n)
			for i := range out {
				binary.BigEndian.PutUint64(out[i][:8], rng.Uint64())
				binary.BigEndian.PutUint64(out[i][8:], rng.Uint64())
			}
			return out
		}
		claim := func(s idempotency.Keys, keys [][16]byte, expires int64) []bool {
			t.Helper()
			var fresh []bool
			if err := db.Write(ctx, func(tx *store.Tx) error {
				var err error
				fresh, err = s.Claim(ctx, tx, keys, expires)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return fresh
		}
		count := func(fresh []bool) (n int) {
			for _, f := range fresh {
				if f {
					n++
				}
			}
			return n
		}
		// The other store loads (empty) before anything is claimed.
		if got := count(claim(other, nil, far)); got != 0 {
			t.Fatal(got)
		}
		// Two generations' worth, expiring at 1,000 and at 2,000, then
		// some left in memory.
		early, late, recent := newKeys(1500), newKeys(1500), newKeys(200)
		for i := 0; i < len(early); i += 100 {
			if got := count(claim(ks, early[i:i+100], 1000)); got != 100 {
				t.Fatalf("fresh keys: %d of 100 fresh", got)
			}
		}
		moved, err := ks.Freeze(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		// Generations of at least 500 keys, oldest blocks first, until no
		// more than 500 are left in memory.
		if backend == "sqlite" {
			var gens int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(DISTINCT gen) FROM usage_dedup_pages`).Scan(&gens); err != nil {
				t.Fatal(err)
			}
			if moved != 1000 || gens != 2 {
				t.Fatalf("Freeze moved %d keys into %d generations, want 1000 into 2", moved, gens)
			}
		}
		for i := 0; i < len(late); i += 100 {
			claim(ks, late[i:i+100], 2000)
		}
		if _, err := ks.Freeze(ctx, db); err != nil {
			t.Fatal(err)
		}
		claim(ks, recent, 3000)
		if _, err := ks.Freeze(ctx, db); err != nil {
			t.Fatal(err)
		}
		// What is left in memory is under the limit: nothing more moves.
		if moved, err := ks.Freeze(ctx, db); err != nil || moved != 0 {
			t.Fatalf("Freeze under the limit moved %d (%v)", moved, err)
		}
		// A batch mixing every kind: half seen, half new.
		all := slices.Concat(early, late, recent)
		fresh := newKeys(len(all))
		mixed := make([][16]byte, 0, 2*len(all))
		for i := range all {
			mixed = append(mixed, all[i], fresh[i])
		}
		restarted := idempotency.NewHot(db, "usage_dedup", hot)
		for name, s := range map[string]idempotency.Keys{"the freezing store": ks, "a store opened before": other, "a store opened after": restarted} {
			// A rolled-back claim of the mixed batch changes nothing.
			boom := errors.New("boom")
			if err := db.Write(ctx, func(tx *store.Tx) error {
				got, err := s.Claim(ctx, tx, mixed, 4000)
				if err != nil {
					return err
				}
				for i, f := range got {
					if f != (i%2 == 1) {
						t.Errorf("%s: key %d fresh = %v", name, i, f)
						break
					}
				}
				return boom
			}); !errors.Is(err, boom) {
				t.Fatal(err)
			}
		}
		got := claim(restarted, mixed, 4000)
		for i, f := range got {
			if f != (i%2 == 1) {
				t.Fatalf("key %d fresh = %v", i, f)
			}
		}
		if got := count(claim(ks, mixed, 4000)); got != 0 {
			t.Fatalf("the freezing store found %d of the claimed keys fresh", got)
		}
		// Purge at 1,500: exactly the early keys expired.
		if _, err := restarted.Purge(ctx, db, 1500); err != nil {
			t.Fatal(err)
		}
		got = claim(restarted, all, 5000)
		for i, f := range got {
			if want := i < len(early); f != want {
				t.Fatalf("after the purge, key %d fresh = %v, want %v", i, f, want)
			}
		}
		// Everything expires; keys claimed afterwards are still seen by a
		// store that read the old blocks (block IDs are not reused).
		if _, err := restarted.Purge(ctx, db, 10000); err != nil {
			t.Fatal(err)
		}
		if got := count(claim(restarted, all, 20000)); got != len(all) {
			t.Fatalf("after every key expired, %d of %d are fresh", got, len(all))
		}
		if got := count(claim(other, all, 20000)); got != 0 {
			t.Fatalf("a store opened before found %d keys claimed after the purge fresh", got)
		}
	})
}

// BenchmarkClaim claims batches of 1,000 new keys on SQLite with every key
// so far in memory (gens=0, the baseline), and with the same keys frozen
// into ten generations on disk: the cost of the filters' probes per key.
func BenchmarkClaim(b *testing.B) {
	for _, gens := range []int{0, 10} {
		b.Run(fmt.Sprintf("gens=%d", gens), func(b *testing.B) {
			db := storetest.Open(b, "sqlite")
			ctx := b.Context()
			const perGen = 20000
			hot := 1 << 30
			if gens > 0 {
				hot = perGen - 1
			}
			ks := idempotency.NewHot(db, "usage_dedup", hot)
			rng := rand.New(rand.NewPCG(3, 4))
			batch := func() [][16]byte {
				out := make([][16]byte, 1000)
				for i := range out {
					binary.BigEndian.PutUint64(out[i][:8], rng.Uint64())
					binary.BigEndian.PutUint64(out[i][8:], rng.Uint64())
				}
				return out
			}
			claim := func(keys [][16]byte) {
				if err := db.Write(ctx, func(tx *store.Tx) error {
					_, err := ks.Claim(ctx, tx, keys, far)
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
			for range 10 {
				for range perGen / 1000 {
					claim(batch())
				}
				if _, err := ks.Freeze(ctx, db); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				claim(batch())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/key")
		})
	}
}
