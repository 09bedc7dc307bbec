package idempotency_test

import (
	"context"
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
