package pgnotify

import (
	"context"
	"sync"
)

// Cache holds values read from the database, kept true by the hub's
// notifications: handlers call Invalidate or InvalidateAll, and the hub's
// resets empty it. It answers from memory only while the hub is live.
//
// A load that raced with an invalidation is not stored: every invalidation
// moves the cache's generation, and Load stores what it read only if the
// generation it saw before reading is still current. So a value read before
// a change was committed can never be kept after the change was announced.
type Cache[K comparable, V any] struct {
	hub *Hub
	max int

	mu  sync.RWMutex
	gen uint64
	m   map[K]V
}

// NewCache returns a cache of at most max entries (it empties itself when
// full) tied to hub: registered for the hub's resets, used only while the
// hub is live. Create caches before hub.Start.
func NewCache[K comparable, V any](hub *Hub, max int) (*Cache[K, V], error) {
	c := &Cache[K, V]{hub: hub, max: max, m: map[K]V{}}
	if err := hub.OnReset(c.InvalidateAll); err != nil {
		return nil, err
	}
	return c, nil
}

// Load returns k's value from memory if the hub is live and it is there,
// else calls load and keeps its value (on success, if nothing was
// invalidated meanwhile and the hub is still live).
func (c *Cache[K, V]) Load(ctx context.Context, k K, load func(ctx context.Context) (V, error)) (V, error) {
	live := c.hub.Live()
	c.mu.RLock()
	v, ok := c.m[k]
	gen := c.gen
	c.mu.RUnlock()
	if ok && live {
		return v, nil
	}
	v, err := load(ctx)
	if err != nil || !live {
		return v, err
	}
	c.mu.Lock()
	if c.gen == gen && c.hub.Live() {
		if len(c.m) >= c.max {
			clear(c.m)
		}
		c.m[k] = v
	}
	c.mu.Unlock()
	return v, nil
}

// Peek returns k's value from memory only, if the hub is live and it is
// there: no load, no database work.
func (c *Cache[K, V]) Peek(k K) (V, bool) {
	if !c.hub.Live() {
		var zero V
		return zero, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[k]
	return v, ok
}

// Invalidate drops k, and makes loads in flight not store what they read.
func (c *Cache[K, V]) Invalidate(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.gen++
	c.mu.Unlock()
}

// InvalidateAll drops everything, and makes loads in flight not store what
// they read.
func (c *Cache[K, V]) InvalidateAll() {
	c.mu.Lock()
	clear(c.m)
	c.gen++
	c.mu.Unlock()
}

// Len reports how many entries the cache holds.
func (c *Cache[K, V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
