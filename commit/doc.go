// Package commit is connec's group commit: the one place a governed call's
// rows reach the database, durably (synchronous_commit on), before anything
// it allows happens.
//
// A call hands the Writer a Unit: its audit event (package audit's row),
// optionally the run record it starts or finishes, and optionally the Guard
// that must still hold for any of it to be written — the instance enabled,
// the credential the call used still active, unexpired and at that
// version, the policy at the version the call was decided under, the
// caller's token valid and its user there and enabled. The units that
// arrive while a commit is in flight share the next one: one pipeline of
// plain statements (statement.go), so one round trip and one durable
// commit, which checks every guard, writes the run records, moves the
// writer's audit chain head and appends the hash-chained audit rows. Either
// all of it commits or, if a guard refused, none does and the commit says
// which unit and why: a *Refused with a typed Refusal, which the caller
// turns into its own error (package core maps each to a fault in one place,
// core/guard.go). The
// other units are committed at once without them.
//
// Each Writer appends to an audit chain of its own (package audit,
// chain.go), so writers of different servers on one database never wait
// for each other; a writer's own units are ordered by its commit loop.
//
// What happens if a credential is revoked mid-send: a call's decision row
// (its Unit with Guard and Start) commits before the call may use the
// credential, and the guard reads the credential's row in that same
// transaction. If the revocation committed before the guard's statement
// began, the
// guard refuses (CredentialRevoked), nothing of the unit is written, the
// call records a refusal instead and nothing is sent. If it committed
// after, the decision row is in the trail before the revocation and the
// send goes ahead: it was allowed when it was decided. Either way the run's
// outcome is recorded after it (Finish, unguarded: what happened happened),
// and every later call sees the revocation: this server's next call at
// once, another server's at its commit even before it hears of it.
//
// Write appends an audit row in a transaction of the caller's (a change and
// its row commit together); Reserve commits a run start that claims an
// idempotency key, in a transaction of its own.
package commit
