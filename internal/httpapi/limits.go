package httpapi

import (
	"math"
	"net/http"
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

	perToken rate.Limit // 0: unlimited
	burst    int
	mu       sync.Mutex
	buckets  map[string]*bucket
	swept    time.Time

	// perAddress bounds each address's anonymous requests and failed
	// authentications per second (0: unlimited).
	perAddress rate.Limit
	anonMu     sync.Mutex
	addresses  map[string]*bucket
	anonSwept  time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxBuckets bounds the limiter table: past it, idle buckets are dropped, so
// a flood of distinct (even invalid) tokens cannot grow memory without end.
const maxBuckets = 10000

func newLimits(maxInflight int, perToken float64, burst int, maxAnon int, perAddress float64) *limits {
	l := &limits{perToken: rate.Limit(perToken), burst: burst, buckets: map[string]*bucket{},
		anon: make(chan struct{}, maxAnon), authing: make(chan struct{}, maxAnon),
		perAddress: rate.Limit(perAddress), addresses: map[string]*bucket{}}
	if maxInflight > 0 {
		l.inflight = make(chan struct{}, maxInflight)
	}
	if l.burst <= 0 {
		l.burst = int(math.Max(1, 2*perToken))
	}
	return l
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
	if l.perToken <= 0 {
		return nil
	}
	l.mu.Lock()
	b := l.buckets[token]
	if b == nil {
		if len(l.buckets) >= maxBuckets && now.Sub(l.swept) > time.Second {
			for k, v := range l.buckets {
				if now.Sub(v.seen) > time.Minute {
					delete(l.buckets, k)
				}
			}
			l.swept = now
		}
		b = &bucket{lim: rate.NewLimiter(l.perToken, l.burst)}
		if len(l.buckets) < maxBuckets {
			l.buckets[token] = b
		}
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay > 0 {
		r.CancelAt(now)
	}
	l.mu.Unlock()
	if delay <= 0 {
		return nil
	}
	e := arm.Errorf(http.StatusTooManyRequests, "TooManyRequests", "This token's limit of %g requests per second (burst %d) is used up; retry after the delay in Retry-After.", float64(l.perToken), l.burst)
	e.RetryAfter = int(math.Ceil(delay.Seconds()))
	return e
}

func busy(what string, n int) *arm.Error {
	e := arm.Errorf(http.StatusTooManyRequests, "TooManyRequests", "The server is handling its limit of %d %s at once; retry shortly.", n, what)
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

// addressAllows spends one of an address's anonymous budget.
func (l *limits) addressAllows(addr string, now time.Time, spend bool) *arm.Error {
	if l.perAddress <= 0 {
		return nil
	}
	l.anonMu.Lock()
	b := l.addresses[addr]
	if b == nil {
		if len(l.addresses) >= maxBuckets && now.Sub(l.anonSwept) > time.Second {
			for k, v := range l.addresses {
				if now.Sub(v.seen) > time.Minute {
					delete(l.addresses, k)
				}
			}
			l.anonSwept = now
		}
		b = &bucket{lim: rate.NewLimiter(l.perAddress, int(math.Max(1, 2*float64(l.perAddress))))}
		if len(l.addresses) < maxBuckets {
			l.addresses[addr] = b
		}
	}
	b.seen = now
	ok := true
	if spend {
		ok = b.lim.AllowN(now, 1)
	} else {
		ok = b.lim.TokensAt(now) >= 1
	}
	l.anonMu.Unlock()
	if ok {
		return nil
	}
	e := arm.Errorf(http.StatusTooManyRequests, "TooManyRequests", "Too many unauthenticated requests or failed sign-ins from this address; retry shortly.")
	e.RetryAfter = 1
	return e
}

// enterAnon takes one of the anonymous slots, within the address's rate.
func (l *limits) enterAnon(addr string, now time.Time) (func(), *arm.Error) {
	if e := l.addressAllows(addr, now, true); e != nil {
		return nil, e
	}
	return take(l.anon, "unauthenticated requests")
}

// enterAuth takes a slot to look a credential up, unless the address has
// used up its failures.
func (l *limits) enterAuth(addr string, now time.Time) (func(), *arm.Error) {
	if e := l.addressAllows(addr, now, false); e != nil {
		return nil, e
	}
	return take(l.authing, "credential lookups")
}

// failed spends one of the address's budget on a failed authentication.
func (l *limits) failed(addr string, now time.Time) { _ = l.addressAllows(addr, now, true) }
