// Package leaks checks, end to end, that a credential never leaves connec.
// Its tests drive a generated corpus of the encodings an upstream may echo
// a credential back in through the real MCP invoke path against a real
// HTTP upstream, and scan the responses, run rows, audit rows, logs and a
// database dump with an Oracle: a decoder that shares no code with
// connec's redaction. The Oracle and the corpus's Encodings are exported
// so that the redaction's unit tests use the same corpus.
package leaks
