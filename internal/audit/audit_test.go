package audit_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/store/storetest"
)

// TestSealKeepsOneChain: writers append concurrently while sealers run; the
// chain that results verifies, holds every committed record once and no
// rolled-back one, keeps each entity's records in the order they were
// written, and fills each Before with the entity's previous After.
func TestSealKeepsOneChain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		db := storetest.Open(t, backend)
		const writers, each = 6, 40
		at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		var wg sync.WaitGroup
		errs := make(chan error, writers+2)
		done := make(chan struct{})
		for s := 0; s < 2; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if _, err := audit.Seal(ctx, db); err != nil {
						errs <- err
						return
					}
					select {
					case <-done:
						return
					default:
					}
				}
			}()
		}
		var writing sync.WaitGroup
		boom := errors.New("boom")
		for w := 0; w < writers; w++ {
			writing.Add(1)
			go func() {
				defer writing.Done()
				for i := 0; i < each; i++ {
					err := db.Write(ctx, func(tx *store.Tx) error {
						e := audit.Entry{At: at, Actor: "test", Action: "thing.put", Kind: "thing", ID: fmt.Sprintf("e%d", w), After: audit.JSON(map[string]int{"n": i})}
						if err := audit.Append(ctx, tx, e); err != nil {
							return err
						}
						if i%10 == 9 {
							// A change that fails leaves no record.
							e.Action = "thing.rolledback"
							if err := audit.Append(ctx, tx, e); err != nil {
								return err
							}
							return boom
						}
						return nil
					})
					if err != nil && !errors.Is(err, boom) {
						errs <- err
						return
					}
				}
			}()
		}
		writing.Wait()
		close(done)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// An explicit Before is kept as given.
		if err := db.Write(ctx, func(tx *store.Tx) error {
			return audit.Append(ctx, tx, audit.Entry{At: at, Actor: "test", Action: "thing.put", Kind: "thing", ID: "e0",
				Before: json.RawMessage(`{"given":true}`), After: audit.JSON(map[string]int{"n": 99})})
		}); err != nil {
			t.Fatal(err)
		}
		rep, err := audit.Verify(ctx, db, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		committed := writers*(each-each/10) + 1
		if rep.Records != int64(committed) {
			t.Fatalf("the chain holds %d records, want the %d committed", rep.Records, committed)
		}
		var all []audit.Entry
		for after := int64(0); ; {
			page, err := audit.List(ctx, db, audit.Query{After: after, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			all = append(all, page...)
			after = page[len(page)-1].Seq
		}
		last := map[string]json.RawMessage{}
		next := map[string]int{}
		for _, e := range all {
			if e.Action == "thing.rolledback" {
				t.Fatalf("record %d is from a rolled-back change", e.Seq)
			}
			var got struct{ N int }
			if err := json.Unmarshal(e.After, &got); err != nil {
				t.Fatal(err)
			}
			want := next[e.ID]
			for want%10 == 9 {
				want++
			}
			if got.N == 99 {
				if string(e.Before) != `{"given":true}` {
					t.Fatalf("an explicit Before became %s", e.Before)
				}
				continue
			}
			if got.N != want {
				t.Fatalf("%s: record %d has n=%d, want %d (entity order lost)", e.ID, e.Seq, got.N, want)
			}
			wantBefore := "null"
			if b, ok := last[e.ID]; ok {
				wantBefore = string(b)
			}
			if string(e.Before) != wantBefore {
				t.Fatalf("%s: record %d has Before %s, want %s", e.ID, e.Seq, e.Before, wantBefore)
			}
			last[e.ID], next[e.ID] = e.After, got.N+1
		}
		if n, _ := audit.Seal(ctx, db); n != 0 {
			t.Fatalf("a second Seal sealed %d records", n)
		}
	})
}
