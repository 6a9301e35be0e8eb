// Package connectors is the connector framework drivers build on, as
// database/sql/driver is for database drivers: the types a driver
// implements and receives (Driver, TypeSpec, Operation, Invocation, Egress,
// Findings), the registry that compiles declared types once, and the
// request the executor runs (ExecRequest, Runner). It imports nothing of
// the core: the drivers are its subpackages (echo, httpapi, mail,
// mattermost, openclaw), driverkit and driverkit/drivertest help write and
// test them, and egress is the network guard drivers and the executor both
// reach. WRITING.md in this directory walks through a new connector type.
package connectors
