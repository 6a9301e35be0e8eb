package core

import "time"

// CachedInstances reports how many entries s's invocation cache holds.
func CachedInstances(s *Service) int {
	if s.instances == nil {
		return 0
	}
	return s.instances.Len()
}

// WithoutConfigValues is withoutConfigValues, for tests.
var WithoutConfigValues = withoutConfigValues

// SetRoundClaimWait sets how long s's relayed rounds wait to be claimed.
func SetRoundClaimWait(s *Service, d time.Duration) {
	s.rounds.mu.Lock()
	defer s.rounds.mu.Unlock()
	s.rounds.claimWait = d
}
