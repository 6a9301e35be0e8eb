// Package core is connec's application core: the use cases every transport
// calls (instances, credentials, invoke, runs, policy, audit views, tokens),
// the catalog of connector types as users see it, the in-memory caches kept
// true by PostgreSQL notifications, leases and limits. Each use case
// authenticates nothing itself (transports put the principal on the
// context), asks authz for a decision, writes one audit row, and commits
// changes together with that row; operations run through connectors.Runner
// (the executor), the only component that opens credentials.
//
// An operation's rows reach the database as units of package commit's group
// commit: its decision row and run start under the guard of what it was
// decided with (guard.go, which also turns the commit's refusals into
// faults), then its outcome.
package core
