// Package authz decides whether a subject may perform an action on a
// resource: default deny, against the policy stored in PostgreSQL.
//
// The pieces, one floor each:
//
//   - authz/engine, pure: the vocabulary (actions, resource names and
//     patterns, rules, conditions), the rule grammar, and decisions
//     against one immutable policy version (Snapshot), with Casbin's
//     semantics for ModelConf and Casbin as its test oracle only.
//   - authz/pgstore: the policy in casbin_rule (load a version, add, remove
//     and list rules) and the watcher of channel connec_policy.
//   - this package, the Authorizer the rest of connec calls: it holds the
//     current snapshot, replaced whenever the database's policy_version
//     moves — after a local change (Refresh) or when another server's
//     change is announced (the watcher) — fails closed when it cannot
//     confirm its policy is current (freshness), and caches decisions per
//     snapshot, so no cached decision outlives the policy it was made
//     under.
//
// The engine's vocabulary is re-exported here (names.go), so callers import
// one package.
package authz
