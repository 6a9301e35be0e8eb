// Package engine is connec's policy engine, pure: no database, no clock, no
// Casbin at run time. It holds the policy's vocabulary (actions, resource
// names and patterns, rules, task-context conditions, the rule grammar that
// validates them) and decides requests against one version of the policy.
//
// NewSnapshot indexes a Policy (the rules and group links as casbin_rule
// stores them); Snapshot.Decide answers a request with the answer, and the
// cited rule, that a Casbin enforcer over ModelConf gives for the whole
// policy, evaluating only the caller's and its groups' rules, compiled once
// per caller. Casbin is this package's test oracle: the differential tests
// compare every decision, cited rule and error with Casbin's on randomized
// policies.
//
// Package authz puts it to work: it loads snapshots (through authz/pgstore),
// keeps them fresh and caches decisions.
package engine
