// Package faults holds connec's fault tests: the whole core under load while
// PostgreSQL stops and returns, several servers sharing one database, and
// connectors that hang, reset or never stop sending. It has no code of its
// own; `make test` runs short versions, `make soak` longer ones
// (CONNEC_SOAK=1).
package faults
