package directory

import (
	"sync"
	"sync/atomic"
)

// changesChannel is the store channel every directory change is announced on.
const changesChannel = "stackbill_directory"

// maxCached bounds the answers kept: past it the cache starts again empty,
// so no stream of distinct subscriptions can grow it.
const maxCached = 100_000

// resolveCache keeps Resolve's answers between directory changes, so a
// registration request on PostgreSQL does not spend a round trip (a fifth of
// a PUT's and half of a GET's) asking again what has not changed. It serves
// only while the store hears every process's changes (store.OnChange); any
// change, here or elsewhere, empties it. Only found subscriptions are kept.
type resolveCache struct {
	mu        sync.Mutex
	gen       uint64 // bumped by every change heard
	listening bool
	m         map[string]ResolvedSubscription
	hits      atomic.Int64
	misses    atomic.Int64
}

// changed is the store's OnChange hook.
func (c *resolveCache) changed(listening bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.listening = listening
	c.m = nil
}

// get answers id from memory, and otherwise the generation a fill must carry.
func (c *resolveCache) get(id string) (ResolvedSubscription, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.listening {
		return ResolvedSubscription{}, false, c.gen
	}
	r, ok := c.m[id]
	return r, ok, c.gen
}

// put keeps answers read at generation gen, unless a change was heard since:
// the read may have seen the directory before that change.
func (c *resolveCache) put(gen uint64, rs []ResolvedSubscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || !c.listening {
		return
	}
	if c.m == nil || len(c.m)+len(rs) > maxCached {
		c.m = make(map[string]ResolvedSubscription, len(rs))
	}
	for _, r := range rs {
		c.m[r.ID] = r
	}
}

// CacheStats is how often Resolve answered from memory since the start.
func (s *Service) CacheStats() (hits, misses int64) {
	return s.cache.hits.Load(), s.cache.misses.Load()
}
