package core

// CachedInstances reports how many entries s's invocation cache holds.
func CachedInstances(s *Service) int {
	if s.instances == nil {
		return 0
	}
	return s.instances.Len()
}

// WithoutConfigValues is withoutConfigValues, for tests.
var WithoutConfigValues = withoutConfigValues
