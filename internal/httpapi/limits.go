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
// callers, and requests per second per token. Each refusal is a 429 with a
// Retry-After the client can honour; the Azure SDKs retry 429s on their own.
type limits struct {
	inflight chan struct{} // nil: unlimited

	perToken rate.Limit // 0: unlimited
	burst    int
	mu       sync.Mutex
	buckets  map[string]*bucket
	swept    time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxBuckets bounds the limiter table: past it, idle buckets are dropped, so
// a flood of distinct (even invalid) tokens cannot grow memory without end.
const maxBuckets = 10000

func newLimits(maxInflight int, perToken float64, burst int) *limits {
	l := &limits{perToken: rate.Limit(perToken), burst: burst, buckets: map[string]*bucket{}}
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
	select {
	case l.inflight <- struct{}{}:
		return func() { <-l.inflight }, nil
	default:
		e := arm.Errorf(http.StatusTooManyRequests, "TooManyRequests", "The server is handling its limit of %d requests at once; retry shortly.", cap(l.inflight))
		e.RetryAfter = 1
		return nil, e
	}
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
