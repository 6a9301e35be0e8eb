package driverkit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
)

// Reasons put in fault details under "reason", so callers can tell failures
// of the same type apart.
const (
	ReasonBadCredential = "bad_credential" // the service rejected the credential
	ReasonNoCredential  = "no_credential"  // the instance needs a credential and has none
	ReasonEgress        = "egress_refused" // the egress guard refused the destination
	ReasonHostNotFound  = "host_not_found" // DNS has no such host
	ReasonDNS           = "dns"            // DNS failed otherwise
	ReasonTLS           = "tls"            // TLS handshake or certificate verification failed
	ReasonConnection    = "connection"     // refused, reset or closed connection
	ReasonCanceled      = "canceled"       // the caller gave up
	ReasonStatus        = "http_status"    // an HTTP status the driver treats as an error
	ReasonNotFound      = "not_found"      // the service has no such object
	ReasonForbidden     = "forbidden"      // the credential works but may not do this
	ReasonRateLimited   = "rate_limited"   // the service asks to slow down
	ReasonProtocol      = "protocol"       // the service broke its protocol
	ReasonConfig        = "config"         // the instance configuration is unusable
)

// NetFault maps an error from a connection or request made through egress
// to a fault.Error. Its cause is err with credential values redacted, so the
// error's text is safe to log. ctx is the invocation's context.
//
//	refused by the egress guard          → permanent (egress_refused)
//	read budget exceeded                 → response_too_large
//	deadline (context or socket timeout) → timeout
//	context canceled                     → transient (canceled)
//	DNS: no such host                    → permanent (host_not_found); other DNS → transient
//	TLS / certificate failure            → permanent (tls)
//	refused, reset, closed, EOF          → transient (connection)
//	any other network error              → transient
//	anything else                        → permanent
func NetFault(ctx context.Context, err error, r *Redactor) *fault.Error {
	if err == nil {
		return nil
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		return fe
	}
	cause := r.Error(err)
	var refused *egress.RefusedError
	if errors.As(err, &refused) {
		d := map[string]any{"reason": ReasonEgress, "host": refused.Host}
		if refused.Addr != "" {
			d["address"] = refused.Addr
		}
		return fault.Wrap(fault.Permanent, cause, "destination %s refused by the egress policy: %s", refused.Host, refused.Reason).WithDetails(d)
	}
	if errors.Is(err, ErrReadBudget) {
		return fault.Wrap(fault.ResponseTooLarge, cause, "the service sent more data than the connector accepts")
	}
	var ne net.Error
	// The connection's deadline is the context's: a library that flattens
	// the socket's timeout into text still lands here once it has passed.
	deadline, hasDeadline := ctx.Deadline()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || (hasDeadline && !time.Now().Before(deadline)) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fault.Wrap(fault.Timeout, cause, "the service did not answer in time")
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return fault.Wrap(fault.Transient, cause, "the operation was canceled").WithDetails(map[string]any{"reason": ReasonCanceled})
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return fault.Wrap(fault.Permanent, cause, "host %s not found", dnsErr.Name).WithDetails(map[string]any{"reason": ReasonHostNotFound, "host": dnsErr.Name})
		}
		return fault.Wrap(fault.Transient, cause, "could not resolve host %s", dnsErr.Name).WithDetails(map[string]any{"reason": ReasonDNS, "host": dnsErr.Name})
	}
	if isTLS(err) {
		return fault.Wrap(fault.Permanent, cause, "TLS with the service failed (certificate or protocol)").WithDetails(map[string]any{"reason": ReasonTLS})
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return fault.Wrap(fault.Transient, cause, "the connection to the service failed").WithDetails(map[string]any{"reason": ReasonConnection})
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fault.Wrap(fault.Transient, cause, "network error talking to the service").WithDetails(map[string]any{"reason": ReasonConnection})
	}
	return fault.Wrap(fault.Permanent, cause, "the request to the service failed")
}

func isTLS(err error) bool {
	var (
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		record      tls.RecordHeaderError
		alert       tls.AlertError
	)
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" { // a TLS alert from the peer
		return true
	}
	return errors.As(err, &unknownAuth) || errors.As(err, &hostErr) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &alert)
}

// BadCredential is the error for a service rejecting the credential. The
// message must not quote the service (it may echo what it was sent).
func BadCredential(cause error, r *Redactor, format string, args ...any) *fault.Error {
	return fault.Wrap(fault.Permanent, r.Error(cause), format, args...).WithDetails(map[string]any{"reason": ReasonBadCredential})
}

// NoCredential is the error for an instance that needs a credential and has
// none of the right kind.
func NoCredential(format string, args ...any) *fault.Error {
	return fault.New(fault.Permanent, format, args...).WithDetails(map[string]any{"reason": ReasonNoCredential})
}

// NoEgress is the error for an invocation that came without an Egress.
func NoEgress() *fault.Error {
	return fault.New(fault.Permanent, "the connector was given no network egress").WithDetails(map[string]any{"reason": ReasonConfig})
}
