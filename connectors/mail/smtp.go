package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
)

// SMTPTypeName is the smtp type's name.
const SMTPTypeName = "smtp"

const (
	smtpTimeout       = 30 * time.Second
	smtpReadBudget    = 1 << 20 // what the server may send us in one session
	maxRecipients     = 50
	maxTextBytes      = 512 << 10
	maxHTMLBytes      = 1 << 20
	maxServerMsgBytes = 300
	maxSubjectBytes   = 900 * 4 // UTF-8; folded by Q-encoding when not ASCII
)

// SMTP is the smtp connector type.
type SMTP struct{}

// NewSMTP returns the smtp driver.
func NewSMTP() SMTP { return SMTP{} }

var (
	_ connectors.Driver = SMTP{}
	_ egress.Scoped     = SMTP{}
)

const smtpConfigSchema = `{
  "type": "object",
  "description": "An SMTP submission server and the sender address.",
  "properties": {` + serverProps + `,
    "security": {"enum": ["starttls", "tls", "none"], "default": "starttls", "description": "starttls: plain connection upgraded with STARTTLS (required, never skipped; default port 587); tls: implicit TLS (port 465); none: plain text, only for a relay that takes no credential (port 25)."},
    "from": {"type": "string", "minLength": 3, "maxLength": 320, "description": "Sender: \"a@example.com\" or \"Name <a@example.com>\"."}
  },
  "required": ["host", "from"],
  "additionalProperties": false
}`

const sendInput = `{
  "type": "object",
  "properties": {
    "to": {"type": "array", "minItems": 1, "maxItems": 50, "items": {"type": "string", "minLength": 3, "maxLength": 320}, "description": "Recipients: \"a@example.com\" or \"Name <a@example.com>\"."},
    "cc": {"type": "array", "maxItems": 50, "items": {"type": "string", "minLength": 3, "maxLength": 320}, "description": "Copy recipients."},
    "subject": {"type": "string", "maxLength": 900, "pattern": "^[^\\r\\n]*$", "description": "Subject line (one line)."},
    "text": {"type": "string", "maxLength": 524288, "description": "Plain-text body."},
    "html": {"type": "string", "maxLength": 1048576, "description": "Optional HTML body, sent as an alternative to text."},
    "reply_to": {"type": "string", "minLength": 3, "maxLength": 320, "description": "Optional Reply-To address."}
  },
  "required": ["to", "subject", "text"],
  "additionalProperties": false
}`

const sendOutput = `{
  "type": "object",
  "properties": {
    "message_id": {"type": "string", "description": "The Message-ID header given to the message, without angle brackets."},
    "accepted": {"type": "array", "items": {"type": "string"}, "description": "Recipient addresses the server accepted."},
    "rejected": {
      "type": "array", "description": "Recipient addresses the server refused, with its reply.",
      "items": {
        "type": "object",
        "properties": {"address": {"type": "string"}, "code": {"type": "integer"}, "message": {"type": "string"}},
        "required": ["address", "code", "message"],
        "additionalProperties": false
      }
    }
  },
  "required": ["message_id", "accepted", "rejected"],
  "additionalProperties": false
}`

// Spec declares the smtp type.
func (SMTP) Spec() connectors.TypeSpec {
	return connectors.TypeSpec{
		Name:        SMTPTypeName,
		Version:     "1.0.0",
		Description: "Send e-mail through an SMTP submission server (STARTTLS or implicit TLS, AUTH PLAIN/LOGIN).",
		Operations: []connectors.Operation{
			{Name: "mail.send", Kind: connectors.KindSend, Description: "Send a plain-text (optionally also HTML) e-mail from the instance's sender address.",
				Input: json.RawMessage(sendInput), Output: json.RawMessage(sendOutput), Timeout: smtpTimeout},
		},
		ConfigSchema:    json.RawMessage(smtpConfigSchema),
		CredentialKinds: []string{"login"},
		EgressHosts:     []string{"*"},
	}
}

type smtpConfig struct {
	serverConfig
	From string `json:"from"`

	from *mail.Address
}

func parseSMTPConfig(raw json.RawMessage) (*smtpConfig, error) {
	var c smtpConfig
	if err := decodeStrict(raw, &c); err != nil {
		return nil, configError("not a valid smtp configuration")
	}
	if err := c.check("starttls", map[string]int{"starttls": 587, "tls": 465, "none": 25}); err != nil {
		return nil, err
	}
	from, err := parseAddress(c.From)
	if err != nil {
		return nil, configError("from is not a single ASCII e-mail address")
	}
	c.from = from
	return &c, nil
}

// EgressScope returns the server's host:port and whether the instance
// allows private networks.
func (SMTP) EgressScope(raw json.RawMessage) (egress.Scope, error) {
	c, err := parseSMTPConfig(raw)
	if err != nil {
		return egress.Scope{}, err
	}
	return c.scope(), nil
}

type sendArgs struct {
	To      []string `json:"to"`
	Cc      []string `json:"cc"`
	Subject string   `json:"subject"`
	Text    string   `json:"text"`
	HTML    string   `json:"html"`
	ReplyTo string   `json:"reply_to"`
}

type rejection struct {
	Address string `json:"address"`
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type sendResult struct {
	MessageID string      `json:"message_id"`
	Accepted  []string    `json:"accepted"`
	Rejected  []rejection `json:"rejected"`
}

// parseAddress parses one mailbox ("a@b" or "Name <a@b>"), refusing
// anything that could inject headers or SMTP commands.
func parseAddress(s string) (*mail.Address, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return nil, errors.New("address has a control character")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an e-mail address", s)
	}
	for _, r := range a.Address {
		if r > 0x7e || r < 0x21 || r == '<' || r == '>' {
			return nil, fmt.Errorf("%q: only ASCII addresses are supported", s)
		}
	}
	if !strings.Contains(a.Address, "@") {
		return nil, fmt.Errorf("%q has no domain", s)
	}
	return a, nil
}

// Invoke sends one message.
func (SMTP) Invoke(ctx context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	if inv.Operation != "mail.send" {
		return nil, fault.New(fault.InvalidArgument, "smtp has no operation %q", inv.Operation)
	}
	cfg, err := parseSMTPConfig(inv.Config)
	if err != nil {
		return nil, err
	}
	var a sendArgs
	if err := decodeStrict(inv.Args, &a); err != nil {
		return nil, fault.Invalid("", "arguments do not match mail.send's input schema")
	}
	msg, rcpts, msgID, err := buildMessage(cfg, a, time.Now())
	if err != nil {
		return nil, err
	}
	user, pass, hasCred, err := loginCredential(inv)
	if err != nil {
		return nil, err
	}
	red := driverkit.ForInvocation(inv)
	defer red.Wipe()
	defer func() {
		if red.Found() {
			inv.Findings.MarkRedacted()
		}
	}()
	if hasCred {
		red.Add([]byte("\x00" + user + "\x00" + pass)) // the AUTH PLAIN blob
		if cfg.Security == "none" {
			return nil, configError("security none sends the credential in clear text; use starttls or tls")
		}
	}

	conn, err := cfg.dial(ctx, inv, smtpReadBudget, red)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	fail := func(stage string, err error) *fault.Error { return smtpFault(ctx, conn, stage, err, red) }

	var c *smtp.Client
	switch cfg.Security {
	case "tls":
		tc := tls.Client(conn, cfg.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fail("tls", err)
		}
		c = smtp.NewClient(tc)
	case "starttls":
		c, err = smtp.NewClientStartTLS(conn, cfg.tlsConfig())
		if err != nil {
			return nil, fail("starttls", err)
		}
		// The TLS handshake happens with the next command: make it now, so
		// that a server that said yes to STARTTLS and stayed in plain text
		// is a TLS failure here, not a missing AUTH later.
		if err := c.Hello("localhost"); err != nil {
			c.Close()
			return nil, fail("starttls", err)
		}
		if _, ok := c.TLSConnectionState(); !ok {
			c.Close()
			return nil, fail("starttls", errors.New("the connection is not encrypted after STARTTLS"))
		}
	default:
		c = smtp.NewClient(conn)
	}
	defer c.Close()

	if hasCred {
		var mech sasl.Client
		switch {
		case c.SupportsAuth(sasl.Plain):
			mech = sasl.NewPlainClient("", user, pass)
		case c.SupportsAuth(sasl.Login):
			mech = sasl.NewLoginClient(user, pass)
		default:
			return nil, fault.New(fault.Permanent, "the mail server offers neither AUTH PLAIN nor AUTH LOGIN").WithDetails(map[string]any{"reason": driverkit.ReasonProtocol})
		}
		if err := c.Auth(mech); err != nil {
			return nil, fail("auth", err)
		}
	}
	if err := c.Mail(cfg.from.Address, nil); err != nil {
		return nil, fail("mail", err)
	}
	res := sendResult{MessageID: red.String(msgID), Accepted: []string{}, Rejected: []rejection{}}
	var lastRefusal error
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return nil, fail("rcpt", err)
			}
			lastRefusal = err
			res.Rejected = append(res.Rejected, rejection{Address: red.String(r), Code: se.Code, Message: serverText(se.Message, red)})
			continue
		}
		res.Accepted = append(res.Accepted, red.String(r))
	}
	if len(res.Accepted) == 0 {
		_ = c.Reset()
		fe := fail("rcpt", lastRefusal)
		d := map[string]any{"rejected": res.Rejected}
		for k, v := range fe.Details {
			d[k] = v
		}
		return nil, fe.WithDetails(d)
	}
	w, err := c.Data()
	if err != nil {
		return nil, fail("data", err)
	}
	if _, err := w.Write(msg); err != nil {
		return nil, fail("data", err)
	}
	if err := w.Close(); err != nil {
		return nil, fail("data", err)
	}
	_ = c.Quit()
	out, err := encodeResult(res)
	if err != nil {
		return nil, fmt.Errorf("smtp: encode result: %w", err)
	}
	return out, nil
}

// serverText is a server's reply text, made safe to return.
func serverText(s string, red *driverkit.Redactor) string {
	s = strings.ToValidUTF8(red.String(s), "\uFFFD")
	if len(s) > maxServerMsgBytes {
		s = strings.ToValidUTF8(s[:maxServerMsgBytes], "")
	}
	return s
}

// smtpFault maps an error at a stage of the SMTP session.
func smtpFault(ctx context.Context, conn *driverkit.Conn, stage string, err error, red *driverkit.Redactor) *fault.Error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		d := map[string]any{"smtp_code": se.Code, "stage": stage}
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			d["smtp_enhanced_code"] = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		text := serverText(se.Message, red)
		cause := red.Error(err)
		switch {
		case stage == "auth" && (se.Code == 535 || se.Code == 534 || se.EnhancedCode == (smtp.EnhancedCode{5, 7, 8})):
			d["reason"] = driverkit.ReasonBadCredential
			return fault.Wrap(fault.Permanent, cause, "the mail server rejected the credential (SMTP %d)", se.Code).WithDetails(d)
		case se.Code >= 400 && se.Code < 500:
			return fault.Wrap(fault.Transient, cause, "the mail server deferred %s (SMTP %d): %s", stage, se.Code, text).WithDetails(d)
		default:
			return fault.Wrap(fault.Permanent, cause, "the mail server refused %s (SMTP %d): %s", stage, se.Code, text).WithDetails(d)
		}
	}
	if errors.Is(err, smtp.ErrTooLongLine) || conn.Exceeded() {
		return fault.Wrap(fault.ResponseTooLarge, red.Error(err), "the mail server sent an over-long reply")
	}
	fe := driverkit.NetFault(ctx, err, red)
	if fe.Type == fault.Permanent && fe.Details == nil && (stage == "starttls" || stage == "tls") {
		// For example "server doesn't support STARTTLS": never fall back.
		return fault.Wrap(fault.Permanent, red.Error(err), "TLS with the mail server failed (%s)", stage).WithDetails(map[string]any{"reason": driverkit.ReasonTLS})
	}
	return fe
}

// buildMessage composes the RFC 5322 message and the envelope recipients.
func buildMessage(cfg *smtpConfig, a sendArgs, now time.Time) (msg []byte, rcpts []string, msgID string, err error) {
	if len(a.To) == 0 {
		return nil, nil, "", fault.Invalid("to", "at least one recipient is required")
	}
	if len(a.To) > maxRecipients || len(a.Cc) > maxRecipients {
		return nil, nil, "", fault.Invalid("to", "at most %d recipients in to and %d in cc", maxRecipients, maxRecipients)
	}
	if strings.ContainsAny(a.Subject, "\r\n\x00") || len(a.Subject) > maxSubjectBytes {
		return nil, nil, "", fault.Invalid("subject", "subject must be one line of at most %d bytes", maxSubjectBytes)
	}
	if len(a.Text) > maxTextBytes || len(a.HTML) > maxHTMLBytes {
		return nil, nil, "", fault.Invalid("text", "body is too large")
	}
	seen := map[string]bool{}
	parseList := func(field string, list []string) ([]string, error) {
		var out []string
		for _, s := range list {
			addr, err := parseAddress(s)
			if err != nil {
				return nil, fault.Invalid(field, "%v", err)
			}
			out = append(out, addr.String())
			if k := strings.ToLower(addr.Address); !seen[k] {
				seen[k] = true
				rcpts = append(rcpts, addr.Address)
			}
		}
		return out, nil
	}
	to, err := parseList("to", a.To)
	if err != nil {
		return nil, nil, "", err
	}
	cc, err := parseList("cc", a.Cc)
	if err != nil {
		return nil, nil, "", err
	}
	var replyTo string
	if a.ReplyTo != "" {
		r, err := parseAddress(a.ReplyTo)
		if err != nil {
			return nil, nil, "", fault.Invalid("reply_to", "%v", err)
		}
		replyTo = r.String()
	}
	domain := cfg.from.Address[strings.LastIndexByte(cfg.from.Address, '@')+1:]
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	msgID = hex.EncodeToString(rnd[:]) + "@" + domain

	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", cfg.from.String())
	hdr("To", strings.Join(to, ", "))
	if len(cc) > 0 {
		hdr("Cc", strings.Join(cc, ", "))
	}
	if replyTo != "" {
		hdr("Reply-To", replyTo)
	}
	// Encoded words go on folded lines of their own, within the 998-byte limit.
	hdr("Subject", strings.ReplaceAll(mime.QEncoding.Encode("utf-8", a.Subject), "?= =?", "?=\r\n =?"))
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+msgID+">")
	hdr("MIME-Version", "1.0")
	writePart := func(contentType, body string) {
		hdr("Content-Type", contentType+"; charset=utf-8")
		hdr("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		qp := quotedprintable.NewWriter(&b)
		_, _ = io.WriteString(qp, strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n"))
		_ = qp.Close()
		b.WriteString("\r\n")
	}
	if a.HTML == "" {
		writePart("text/plain", a.Text)
	} else {
		boundary := "=_" + hex.EncodeToString(rnd[:8])
		hdr("Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
		b.WriteString("\r\n")
		b.WriteString("--" + boundary + "\r\n")
		writePart("text/plain", a.Text)
		b.WriteString("--" + boundary + "\r\n")
		writePart("text/html", a.HTML)
		b.WriteString("--" + boundary + "--\r\n")
	}
	return b.Bytes(), rcpts, msgID, nil
}
