package identity

// CachedTokens reports how many tokens s remembers (0 before Follow).
func CachedTokens(s *Store) int {
	if c := s.cache.Load(); c != nil {
		return c.Len()
	}
	return 0
}
