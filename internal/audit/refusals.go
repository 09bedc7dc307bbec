package audit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// Refusal is a change that was refused: who asked, what for, and why not.
type Refusal struct {
	Actor   string `json:"-"`
	Scope   string `json:"-"`
	Route   string `json:"route"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Suppressed counts this actor's refusals since its last record that
	// were not recorded one by one.
	Suppressed int64 `json:"suppressed,omitempty"`
}

// Refusals records refused changes in the audit log. An attacker probing
// for what it may change leaves a trail; one that keeps trying is recorded
// a few times a second at most (each record counting the ones left out), so
// refusals cannot flood the chain that every audited change waits on.
type Refusals struct {
	db    *store.DB
	clock *clock.Clock

	mu         sync.Mutex
	actors     map[string]*refusalBucket
	suppressed map[string]int64
}

type refusalBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewRefusals builds a recorder.
func NewRefusals(db *store.DB, c *clock.Clock) *Refusals {
	return &Refusals{db: db, clock: c, actors: map[string]*refusalBucket{}, suppressed: map[string]int64{}}
}

// refusalsPerSecond and refusalBurst bound one actor's records.
const (
	refusalsPerSecond = 2
	refusalBurst      = 20
	maxActors         = 10000
)

// Record writes f to the log in a transaction of its own, unless its actor
// is over its budget.
func (r *Refusals) Record(ctx context.Context, f Refusal) error {
	now := time.Now()
	r.mu.Lock()
	b := r.actors[f.Actor]
	if b == nil {
		if len(r.actors) >= maxActors {
			for k, v := range r.actors {
				if now.Sub(v.seen) > time.Minute {
					delete(r.actors, k)
					delete(r.suppressed, k)
				}
			}
		}
		b = &refusalBucket{lim: rate.NewLimiter(refusalsPerSecond, refusalBurst)}
		if len(r.actors) < maxActors {
			r.actors[f.Actor] = b
		}
	}
	b.seen = now
	if !b.lim.AllowN(now, 1) {
		r.suppressed[f.Actor]++
		r.mu.Unlock()
		return nil
	}
	f.Suppressed = r.suppressed[f.Actor]
	delete(r.suppressed, f.Actor)
	r.mu.Unlock()
	if len(f.Message) > 2000 {
		f.Message = f.Message[:2000] + "…"
	}
	// The refusal is recorded even if the client has gone away.
	ctx = context.WithoutCancel(ctx)
	return r.db.Write(ctx, func(tx *store.Tx) error {
		return Append(ctx, tx, Entry{At: r.clock.Now(), Actor: f.Actor, Action: "request.refused", Kind: "refusal", ID: f.Route, Scope: f.Scope, Before: JSON(nil), After: JSON(f)})
	})
}
