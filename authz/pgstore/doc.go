// Package pgstore keeps connec's policy in PostgreSQL, in Casbin's table
// layout (casbin_rule: ptype, v0..v5): it loads a whole version (Load),
// reads the current version, adds, removes and lists rules through the
// caller's transaction, and passes on the database's announcements of
// changes (Watcher, on channel connec_policy).
//
// Group membership rows (ptype g) are mirrored from group_members by a
// trigger, and every change to casbin_rule bumps policy_version and
// notifies: this package writes only p rules and announces nothing itself.
// It needs no Casbin: decisions come from authz/engine.
package pgstore
