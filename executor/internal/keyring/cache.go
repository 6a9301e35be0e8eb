package keyring

import (
	"container/list"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/vault"
)

// cacheKey names one DEK: a credential's version under one KEK.
type cacheKey struct {
	cred    uuid.UUID // by value, so "ABC…" and "abc…" are the same credential
	version int
	keyID   string
}

type cacheEntry struct {
	key     cacheKey
	dek     [vault.DEKSize]byte
	fp      [32]byte // SHA-256 of the wrapped DEK the key came from
	expires time.Time
	timer   *time.Timer
}

// dekCache is an LRU of DEKs with a fixed time to live. An entry is wiped
// when it leaves, whether by LRU eviction, expiry (checked on use, and by a
// timer so an idle DEK does not outlive its TTL in memory), Forget or
// ForgetAll. Callers get a copy of the DEK, never the entry's own array.
type dekCache struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	now   func() time.Time
	lru   *list.List // of *cacheEntry, most recently used first
	items map[cacheKey]*list.Element
}

func newDEKCache(size int, ttl time.Duration, now func() time.Time) *dekCache {
	return &dekCache{size: size, ttl: ttl, now: now, lru: list.New(), items: make(map[cacheKey]*list.Element)}
}

// get copies the DEK cached for k into dst if there is a live one that came
// from the wrapped DEK whose SHA-256 is fp.
func (c *dekCache) get(k cacheKey, fp [32]byte, dst *[vault.DEKSize]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) || e.fp != fp {
		// Expired, or the row now holds another wrapped DEK: stale.
		c.removeLocked(el)
		return false
	}
	c.lru.MoveToFront(el)
	*dst = e.dek
	return true
}

// put caches a copy of dek for k.
func (c *dekCache) put(k cacheKey, fp [32]byte, dek *[vault.DEKSize]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.removeLocked(el)
	}
	e := &cacheEntry{key: k, dek: *dek, fp: fp, expires: c.now().Add(c.ttl)}
	el := c.lru.PushFront(e)
	c.items[k] = el
	e.timer = time.AfterFunc(c.ttl, func() { c.expire(el) })
	for c.lru.Len() > c.size {
		c.removeLocked(c.lru.Back())
	}
}

// expire removes el if it is still cached (the timer may lose a race with
// eviction or replacement).
func (c *dekCache) expire(el *list.Element) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := el.Value.(*cacheEntry)
	if cur, ok := c.items[e.key]; ok && cur == el {
		c.removeLocked(el)
	}
}

func (c *dekCache) forget(credentialID string) {
	cred, err := uuid.Parse(credentialID)
	if err != nil {
		return // no such key was ever cached: AD ids are UUIDs
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.items {
		if k.cred == cred {
			c.removeLocked(el)
		}
	}
}

func (c *dekCache) forgetAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, el := range c.items {
		c.removeLocked(el)
	}
}

func (c *dekCache) removeLocked(el *list.Element) {
	e := el.Value.(*cacheEntry)
	clear(e.dek[:])
	if e.timer != nil {
		e.timer.Stop()
	}
	c.lru.Remove(el)
	delete(c.items, e.key)
}

func (c *dekCache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
