package httpapi

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/stackbill/stackbill/internal/arm"
)

// limits bounds the work one server takes on: requests in flight across all
// callers, and requests per second per token. Unauthenticated work has
// budgets of its own (requests in flight, credential lookups in flight, and
// per-address rates of anonymous requests and failed sign-ins), so that no
// amount of it can take a slot from a caller who signed in. Each refusal is
// a 429 with a Retry-After the client can honour; the Azure SDKs retry 429s
// on their own.
type limits struct {
	inflight chan struct{} // nil: unlimited
	anon     chan struct{}
	authing  chan struct{}

	tokens    *buckets // per token (nil: unlimited)
	addresses *buckets // per address, anonymous requests and failed sign-ins
}

// buckets is a table of token buckets by key. maxBuckets bounds it: past
// it, idle buckets are dropped, so a flood of distinct keys (even invalid
// tokens) cannot grow memory without end.
type buckets struct {
	per   rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*bucket
	swept time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

const maxBuckets = 10000

func newBuckets(per float64, burst int) *buckets {
	if per <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = int(math.Max(1, 2*per))
	}
	return &buckets{per: rate.Limit(per), burst: burst, m: map[string]*bucket{}}
}

// take spends one of key's budget, or with peek only looks whether one is
// left; it returns how long until one would be.
func (t *buckets) take(key string, now time.Time, peek bool) time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.m[key]
	if b == nil {
		if len(t.m) >= maxBuckets && now.Sub(t.swept) > time.Second {
			for k, v := range t.m {
				if now.Sub(v.seen) > time.Minute {
					delete(t.m, k)
				}
			}
			t.swept = now
		}
		b = &bucket{lim: rate.NewLimiter(t.per, t.burst)}
		if len(t.m) < maxBuckets {
			t.m[key] = b
		}
	}
	b.seen = now
	if peek {
		if b.lim.TokensAt(now) >= 1 {
			return 0
		}
		return time.Second
	}
	r := b.lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay > 0 {
		r.CancelAt(now)
	}
	return delay
}

func newLimits(maxInflight int, perToken float64, burst int, maxAnon int, perAddress float64) *limits {
	l := &limits{anon: make(chan struct{}, maxAnon), authing: make(chan struct{}, maxAnon),
		tokens: newBuckets(perToken, burst), addresses: newBuckets(perAddress, 0)}
	if maxInflight > 0 {
		l.inflight = make(chan struct{}, maxInflight)
	}
	return l
}

func busy(what string, n int) *arm.Error {
	e := arm.Errorf(arm.Throttled, "TooManyRequests", "The server is handling its limit of %d %s at once; retry shortly.", n, what)
	e.RetryAfter = 1
	return e
}

func take(ch chan struct{}, what string) (func(), *arm.Error) {
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	default:
		return nil, busy(what, cap(ch))
	}
}

// enter takes an in-flight slot; the caller must call the returned release.
func (l *limits) enter() (release func(), err *arm.Error) {
	if l.inflight == nil {
		return func() {}, nil
	}
	return take(l.inflight, "requests")
}

// allow spends one request of token's budget.
func (l *limits) allow(token string, now time.Time) *arm.Error {
	delay := l.tokens.take(token, now, false)
	if delay <= 0 {
		return nil
	}
	e := arm.Errorf(arm.Throttled, "TooManyRequests", "This token's limit of %g requests per second (burst %d) is used up; retry after the delay in Retry-After.", float64(l.tokens.per), l.tokens.burst)
	e.RetryAfter = int(math.Ceil(delay.Seconds()))
	return e
}

func (l *limits) addressAllows(addr string, now time.Time, peek bool) *arm.Error {
	if l.addresses.take(addr, now, peek) <= 0 {
		return nil
	}
	e := arm.Errorf(arm.Throttled, "TooManyRequests", "Too many unauthenticated requests or failed sign-ins from this address; retry shortly.")
	e.RetryAfter = 1
	return e
}

// enterAnon takes one of the anonymous slots, within the address's rate.
func (l *limits) enterAnon(addr string, now time.Time) (func(), *arm.Error) {
	if e := l.addressAllows(addr, now, false); e != nil {
		return nil, e
	}
	return take(l.anon, "unauthenticated requests")
}

// enterAuth takes a slot to look a credential up, unless the address has
// used up its failures.
func (l *limits) enterAuth(addr string, now time.Time) (func(), *arm.Error) {
	if e := l.addressAllows(addr, now, true); e != nil {
		return nil, e
	}
	return take(l.authing, "credential lookups")
}

// failed spends one of the address's budget on a failed authentication.
func (l *limits) failed(addr string, now time.Time) { _ = l.addresses.take(addr, now, false) }
