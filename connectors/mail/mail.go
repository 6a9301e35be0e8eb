// Package mail holds connec's e-mail connector types: "smtp" sends mail
// and "imap" reads a mailbox. Both reach their server only through the
// invocation's egress (Invocation.Egress.DialContext), doing TLS
// themselves, and both send the credential only over TLS.
//
// # Type smtp
//
// Configuration (config_schema):
//
//	host                   SMTP server name or IP literal (required)
//	port                   default 587 (starttls), 465 (tls), 25 (none)
//	security               starttls (default) | tls (implicit TLS) | none
//	                       none is plain text and only for a relay that needs no
//	                       credential: an instance with a credential and security
//	                       none fails before connecting
//	from                   sender address, "a@example.com" or "Name <a@example.com>" (required)
//	tls_server_name        name to verify the certificate against (default host)
//	ca_pem                 PEM CA certificates to trust instead of the system roots
//	allow_private_network  let host reach loopback/private/link-local addresses (default false)
//
// Credential kind: login {username, password}, sent with AUTH PLAIN (or
// AUTH LOGIN when the server offers only that). Without a credential no
// AUTH is attempted.
//
// Operation (timeout 30s):
//
//	mail.send  send  {to[1-50], cc[0-50]?, subject, text, html?, reply_to?}
//	           → {message_id, accepted[], rejected[{address, code, message}]}
//	           A text/plain message, or multipart/alternative with html, UTF-8,
//	           quoted-printable. Recipients the server refuses are listed in
//	           rejected and the message goes to the others; if it refuses them
//	           all, the operation fails (permanent, or transient for 4xx).
//
// # Type imap
//
// Configuration (config_schema):
//
//	host                   IMAP server name or IP literal (required)
//	port                   default 993 (tls), 143 (starttls)
//	security               tls (default) | starttls
//	tls_server_name        name to verify the certificate against (default host)
//	ca_pem                 PEM CA certificates to trust instead of the system roots
//	allow_private_network  let host reach loopback/private/link-local addresses (default false)
//
// Credential kind: login {username, password} (IMAP LOGIN, over TLS).
//
// Operations (timeout 30s each; mailboxes are opened read-only, with
// EXAMINE and BODY.PEEK, so reading marks nothing \Seen):
//
//	mail.list  read  {mailbox? (INBOX), limit? (1-100, default 20), since?, unseen_only?}
//	           → {messages: [{uid, from, subject, date, size, flags}]}, newest (highest UID) first.
//	           since is a date (YYYY-MM-DD) or an RFC 3339 date-time; IMAP
//	           searches by date, and a date-time is then applied to the
//	           messages' internal dates.
//	mail.get   read  {mailbox? (INBOX), uid, max_bytes? (1 KiB-1 MiB, default 64 KiB)}
//	           → {uid, from, to[], subject, date, text, truncated}
//	           text is the first text/plain part that is not an attachment
//	           (else the first text/html part with tags stripped), decoded to
//	           UTF-8 and cut at max_bytes (truncated: true).
//
// # Egress and errors
//
// Both types declare egress ["*"]: an instance reaches only its host:port
// (EgressScope). Errors:
//
//	authentication refused (SMTP 535, IMAP NO to LOGIN)  permanent, details.reason "bad_credential"
//	SMTP 4xx                                        transient, details.smtp_code
//	SMTP 5xx (other than 535)                       permanent, details.smtp_code
//	no such mailbox or UID                          permanent, details.reason "not_found"
//	deadline                                        timeout
//	refused/reset connection                        transient
//	certificate or TLS failure, no STARTTLS,        permanent, details.reason "tls"
//	  STARTTLS accepted but no TLS follows            (no AUTH is sent)
//	destination refused by egress                   permanent, details.reason "egress_refused"
//	server sends more than the read budget or an
//	  over-long line                                response_too_large
//
// The credential's values (and their base64 forms, including the AUTH
// PLAIN blob) are replaced by [REDACTED] in outputs and error texts. Since
// the username is a credential field, a mailbox address equal to the
// username is redacted too.
package mail

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"strconv"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
)

const (
	maxCAPEMBytes = 64 << 10
)

// serverConfig is what both types configure about their server.
type serverConfig struct {
	Host                string `json:"host"`
	Port                int    `json:"port,omitempty"`
	Security            string `json:"security,omitempty"`
	TLSServerName       string `json:"tls_server_name,omitempty"`
	CAPEM               string `json:"ca_pem,omitempty"`
	AllowPrivateNetwork bool   `json:"allow_private_network,omitempty"`

	addr string // host:port, normalized
}

// serverProps are the config schema properties both types share; security
// and port differ.
const serverProps = `
    "host": {"type": "string", "minLength": 1, "maxLength": 253, "description": "Server host name or IP literal."},
    "tls_server_name": {"type": "string", "maxLength": 253, "description": "Name the server's certificate must match (default: host)."},
    "ca_pem": {"type": "string", "maxLength": 65536, "description": "PEM-encoded CA certificates to trust instead of the system roots (a private CA or a self-signed server)."},
    "allow_private_network": {"type": "boolean", "default": false, "description": "Allow host to resolve to loopback, private or link-local addresses. Off by default."},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "Server port (default by security)."}`

func configError(format string, args ...any) *fault.Error {
	return fault.New(fault.Permanent, "instance configuration: "+format, args...).WithDetails(map[string]any{"reason": driverkit.ReasonConfig})
}

func decodeStrict(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// check validates the server settings and fills addr. ports maps each
// supported security mode to its default port.
func (s *serverConfig) check(defaultSecurity string, ports map[string]int) error {
	if s.Security == "" {
		s.Security = defaultSecurity
	}
	def, ok := ports[s.Security]
	if !ok {
		return configError("security is not one this type supports")
	}
	if s.Port == 0 {
		s.Port = def
	}
	addr, err := egress.HostPattern(s.Host, s.Port)
	if err != nil {
		return configError("host or port is not usable (a DNS name or an IP literal, port 1 to 65535)")
	}
	s.addr = addr
	if len(s.CAPEM) > maxCAPEMBytes {
		return configError("ca_pem is too large")
	}
	if s.CAPEM != "" {
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(s.CAPEM)) {
			return configError("ca_pem holds no PEM certificate")
		}
	}
	return nil
}

func (s *serverConfig) scope() egress.Scope {
	return egress.Scope{Hosts: []string{s.addr}, AllowPrivate: s.AllowPrivateNetwork}
}

func (s *serverConfig) tlsConfig(nextProtos ...string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.TLSServerName, NextProtos: nextProtos}
	if cfg.ServerName == "" {
		h, _, err := splitHostPort(s.addr)
		if err == nil {
			cfg.ServerName = h
		}
	}
	if s.CAPEM != "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(s.CAPEM))
		cfg.RootCAs = pool
	}
	return cfg
}

// dial connects through egress and binds the connection to ctx.
func (s *serverConfig) dial(ctx context.Context, inv connectors.Invocation, readBudget int64, red *driverkit.Redactor) (*driverkit.Conn, error) {
	if inv.Egress == nil {
		return nil, driverkit.NoEgress()
	}
	conn, err := inv.Egress.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, driverkit.NetFault(ctx, err, red)
	}
	return driverkit.Bind(ctx, conn, readBudget), nil
}

// loginCredential returns the login credential's username and password,
// or ok false when the invocation has none.
func loginCredential(inv connectors.Invocation) (user, pass string, ok bool, err error) {
	if inv.CredentialKind == "" && len(inv.Credential) == 0 {
		return "", "", false, nil
	}
	if inv.CredentialKind != "login" {
		return "", "", false, driverkit.NoCredential("the instance's credential is of kind %q; this type takes login", inv.CredentialKind)
	}
	u, p := inv.Credential["username"].Expose(), inv.Credential["password"].Expose()
	if len(u) == 0 || len(p) == 0 {
		return "", "", false, driverkit.NoCredential("the login credential needs a username and a password")
	}
	if bytes.ContainsAny(u, "\r\n\x00") || bytes.ContainsAny(p, "\r\n\x00") {
		return "", "", false, driverkit.NoCredential("the login credential has a control character")
	}
	return string(u), string(p), true, nil
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	return h, n, err
}

func encodeResult(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}
