package authz

import (
	"sync"

	"github.com/connec/connec/authz/engine"
)

// version is one loaded policy version with the caches that belong to it:
// they are dropped with it, so no cached answer outlives its policy.
type version struct {
	*engine.Snapshot
	decisions *boundedCache[engine.Key, Decision]
	attempts  *boundedCache[string, bool]
}

func newVersion(s *engine.Snapshot, cfg config) *version {
	return &version{
		Snapshot:  s,
		decisions: newBoundedCache[engine.Key, Decision](cfg.cacheSize),
		attempts:  newBoundedCache[string, bool](cfg.cacheSize),
	}
}

// boundedCache is a map that starts over when full. Entries never go stale:
// each cache belongs to one immutable version.
type boundedCache[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V
	max int
}

func newBoundedCache[K comparable, V any](max int) *boundedCache[K, V] {
	return &boundedCache[K, V]{m: make(map[K]V), max: max}
}

func (c *boundedCache[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *boundedCache[K, V]) put(k K, v V) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
	c.mu.Unlock()
}

func (c *boundedCache[K, V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
