package mail

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"mime/quotedprintable"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
)

// IMAPTypeName is the imap type's name.
const IMAPTypeName = "imap"

const (
	imapTimeout         = 30 * time.Second
	defaultListLimit    = 20
	maxListLimit        = 100
	defaultGetBytes     = 64 << 10
	maxGetBytes         = 1 << 20
	listReadBudget      = 8 << 20
	getReadOverhead     = 2 << 20 // envelope, body structure, protocol
	maxMailboxNameBytes = 256
)

// IMAP is the imap connector type.
type IMAP struct{}

// NewIMAP returns the imap driver.
func NewIMAP() IMAP { return IMAP{} }

var (
	_ connectors.Driver = IMAP{}
	_ egress.Scoped     = IMAP{}
)

const imapConfigSchema = `{
  "type": "object",
  "description": "An IMAP server (the mailbox is the credential's).",
  "properties": {` + serverProps + `,
    "security": {"enum": ["tls", "starttls"], "default": "tls", "description": "tls: implicit TLS (default port 993); starttls: plain connection upgraded with STARTTLS, never skipped (port 143)."}
  },
  "required": ["host"],
  "additionalProperties": false
}`

const mailboxProp = `"mailbox": {"type": "string", "minLength": 1, "maxLength": 256, "default": "INBOX", "description": "Mailbox name (default INBOX)."}`

const listInput = `{
  "type": "object",
  "properties": {
    ` + mailboxProp + `,
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20, "description": "Most messages to return, newest first."},
    "since": {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}], "description": "Only messages received on or after this date (YYYY-MM-DD) or after this RFC 3339 date-time."},
    "unseen_only": {"type": "boolean", "default": false, "description": "Only messages without the \\Seen flag."}
  },
  "additionalProperties": false
}`

const listOutput = `{
  "type": "object",
  "properties": {
    "messages": {
      "type": "array", "maxItems": 100, "description": "Messages, newest (highest UID) first.",
      "items": {
        "type": "object",
        "properties": {
          "uid": {"type": "integer", "description": "The message's UID in the mailbox (for mail.get)."},
          "from": {"type": "string", "description": "First From address, \"Name <a@b>\" or \"a@b\"."},
          "subject": {"type": "string"},
          "date": {"type": "string", "description": "Date header (else arrival time), RFC 3339."},
          "size": {"type": "integer", "description": "Message size in bytes."},
          "flags": {"type": "array", "items": {"type": "string"}, "description": "IMAP flags, e.g. \\Seen, \\Flagged."}
        },
        "required": ["uid", "from", "subject", "date", "size", "flags"],
        "additionalProperties": false
      }
    }
  },
  "required": ["messages"],
  "additionalProperties": false
}`

const getInput = `{
  "type": "object",
  "properties": {
    ` + mailboxProp + `,
    "uid": {"type": "integer", "minimum": 1, "maximum": 4294967295, "description": "The message's UID (from mail.list)."},
    "max_bytes": {"type": "integer", "minimum": 1024, "maximum": 1048576, "default": 65536, "description": "Cap on the returned text, in bytes."}
  },
  "required": ["uid"],
  "additionalProperties": false
}`

const getOutput = `{
  "type": "object",
  "properties": {
    "uid": {"type": "integer"},
    "from": {"type": "string"},
    "to": {"type": "array", "items": {"type": "string"}},
    "subject": {"type": "string"},
    "date": {"type": "string", "description": "RFC 3339."},
    "text": {"type": "string", "description": "The plain-text body (or the HTML body with tags stripped), UTF-8."},
    "truncated": {"type": "boolean", "description": "True when text was cut at max_bytes."}
  },
  "required": ["uid", "from", "to", "subject", "date", "text", "truncated"],
  "additionalProperties": false
}`

// Spec declares the imap type.
func (IMAP) Spec() connectors.TypeSpec {
	return connectors.TypeSpec{
		Name:        IMAPTypeName,
		Version:     "1.0.0",
		Description: "Read a mailbox over IMAP (TLS or STARTTLS): list recent messages and fetch one's text. Read-only: nothing is marked seen.",
		Operations: []connectors.Operation{
			{Name: "mail.list", Kind: connectors.KindRead, Description: "List a mailbox's newest messages (optionally unseen only, or since a date).",
				Input: json.RawMessage(listInput), Output: json.RawMessage(listOutput), Timeout: imapTimeout},
			{Name: "mail.get", Kind: connectors.KindRead, Description: "Fetch one message's headers and plain-text body, size-capped.",
				Input: json.RawMessage(getInput), Output: json.RawMessage(getOutput), Timeout: imapTimeout},
		},
		ConfigSchema:    json.RawMessage(imapConfigSchema),
		CredentialKinds: []string{"login"},
		EgressHosts:     []string{"*"},
	}
}

func parseIMAPConfig(raw json.RawMessage) (*serverConfig, error) {
	var c serverConfig
	if err := decodeStrict(raw, &c); err != nil {
		return nil, configError("not a valid imap configuration")
	}
	if err := c.check("tls", map[string]int{"tls": 993, "starttls": 143}); err != nil {
		return nil, err
	}
	return &c, nil
}

// EgressScope returns the server's host:port and whether the instance
// allows private networks.
func (IMAP) EgressScope(raw json.RawMessage) (egress.Scope, error) {
	c, err := parseIMAPConfig(raw)
	if err != nil {
		return egress.Scope{}, err
	}
	return c.scope(), nil
}

type listArgs struct {
	Mailbox    string `json:"mailbox"`
	Limit      int    `json:"limit"`
	Since      string `json:"since"`
	UnseenOnly bool   `json:"unseen_only"`
}

type getArgs struct {
	Mailbox  string `json:"mailbox"`
	UID      int64  `json:"uid"`
	MaxBytes int64  `json:"max_bytes"`
}

type listItem struct {
	UID     uint32   `json:"uid"`
	From    string   `json:"from"`
	Subject string   `json:"subject"`
	Date    string   `json:"date"`
	Size    int64    `json:"size"`
	Flags   []string `json:"flags"`
}

type getResult struct {
	UID       uint32   `json:"uid"`
	From      string   `json:"from"`
	To        []string `json:"to"`
	Subject   string   `json:"subject"`
	Date      string   `json:"date"`
	Text      string   `json:"text"`
	Truncated bool     `json:"truncated"`
}

// session is one logged-in IMAP connection.
type session struct {
	c    *imapclient.Client
	conn *driverkit.Conn
	red  *driverkit.Redactor
}

// Invoke runs one operation.
func (IMAP) Invoke(ctx context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	cfg, err := parseIMAPConfig(inv.Config)
	if err != nil {
		return nil, err
	}
	var (
		list   listArgs
		get    getArgs
		budget int64
	)
	switch inv.Operation {
	case "mail.list":
		if err := decodeStrict(inv.Args, &list); err != nil {
			return nil, fault.Invalid("", "arguments do not match mail.list's input schema")
		}
		budget = listReadBudget
	case "mail.get":
		if err := decodeStrict(inv.Args, &get); err != nil {
			return nil, fault.Invalid("", "arguments do not match mail.get's input schema")
		}
		if get.MaxBytes == 0 {
			get.MaxBytes = defaultGetBytes
		}
		if get.MaxBytes < 1 || get.MaxBytes > maxGetBytes {
			return nil, fault.Invalid("max_bytes", "max_bytes must be at most %d", maxGetBytes)
		}
		if get.UID < 1 || get.UID > 1<<32-1 {
			return nil, fault.Invalid("uid", "uid must be from 1 to 4294967295")
		}
		budget = rawCap(get.MaxBytes) + getReadOverhead
	default:
		return nil, fault.New(fault.InvalidArgument, "imap has no operation %q", inv.Operation)
	}
	user, pass, ok, err := loginCredential(inv)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, driverkit.NoCredential("the instance needs a login credential to read a mailbox")
	}
	red := driverkit.ForInvocation(inv)
	defer red.Wipe()
	defer func() {
		if red.Found() {
			inv.Findings.MarkRedacted()
		}
	}()

	s, err := openSession(ctx, cfg, inv, budget, red, user, pass)
	if err != nil {
		return nil, err
	}
	defer s.close()

	var out any
	switch inv.Operation {
	case "mail.list":
		out, err = s.list(ctx, list)
	default:
		out, err = s.get(ctx, get)
	}
	if err != nil {
		return nil, err
	}
	res, err := encodeResult(out)
	if err != nil {
		return nil, fmt.Errorf("imap: encode result: %w", err)
	}
	return res, nil
}

func openSession(ctx context.Context, cfg *serverConfig, inv connectors.Invocation, budget int64, red *driverkit.Redactor, user, pass string) (*session, error) {
	conn, err := cfg.dial(ctx, inv, budget, red)
	if err != nil {
		return nil, err
	}
	s := &session{conn: conn, red: red}
	opts := &imapclient.Options{}
	switch cfg.Security {
	case "tls":
		tc := tls.Client(conn, cfg.tlsConfig("imap"))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, s.fault(ctx, "tls", err)
		}
		s.c = imapclient.New(tc, opts)
	default: // starttls
		opts.TLSConfig = cfg.tlsConfig()
		c, err := imapclient.NewStartTLS(conn, opts)
		if err != nil {
			conn.Close()
			return nil, s.fault(ctx, "starttls", err)
		}
		s.c = c
	}
	if err := s.c.Login(user, pass).Wait(); err != nil {
		s.close()
		var ie *imap.Error
		if errors.As(err, &ie) {
			return nil, driverkit.BadCredential(err, red, "the mail server rejected the credential (IMAP %s)", ie.Type)
		}
		return nil, s.fault(ctx, "login", err)
	}
	return s, nil
}

func (s *session) close() {
	if s.c != nil {
		_ = s.c.Logout() // sent, not awaited: a hung server must not hold us
		_ = s.c.Close()
	}
	_ = s.conn.Close()
}

// fault maps an error at a stage of the session.
func (s *session) fault(ctx context.Context, stage string, err error) *fault.Error {
	if s.conn.Exceeded() || errors.Is(err, driverkit.ErrReadBudget) {
		return fault.Wrap(fault.ResponseTooLarge, s.red.Error(err), "the mail server sent more than the connector accepts")
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		d := map[string]any{"stage": stage, "imap_status": string(ie.Type)}
		if ie.Code != "" {
			d["imap_code"] = string(ie.Code)
		}
		if stage == "starttls" {
			d["reason"] = driverkit.ReasonTLS
			return fault.Wrap(fault.Permanent, s.red.Error(err), "the mail server refused STARTTLS").WithDetails(d)
		}
		if ie.Code == imap.ResponseCodeUnavailable || ie.Code == imap.ResponseCodeInUse || ie.Code == imap.ResponseCodeLimit {
			return fault.Wrap(fault.Transient, s.red.Error(err), "the mail server is busy (%s): %s", stage, serverText(ie.Text, s.red)).WithDetails(d)
		}
		return fault.Wrap(fault.Permanent, s.red.Error(err), "the mail server refused %s: %s", stage, serverText(ie.Text, s.red)).WithDetails(d)
	}
	fe := driverkit.NetFault(ctx, err, s.red)
	if fe.Type == fault.Permanent && fe.Details == nil && (stage == "tls" || stage == "starttls") {
		return fault.Wrap(fault.Permanent, s.red.Error(err), "TLS with the mail server failed (%s)", stage).WithDetails(map[string]any{"reason": driverkit.ReasonTLS})
	}
	return fe
}

func checkMailbox(name string) (string, error) {
	if name == "" {
		return "INBOX", nil
	}
	if len(name) > maxMailboxNameBytes || !utf8.ValidString(name) || strings.ContainsAny(name, "\r\n\x00") {
		return "", fault.Invalid("mailbox", "mailbox must be one line of UTF-8, at most %d bytes", maxMailboxNameBytes)
	}
	return name, nil
}

// selectMailbox opens a mailbox read-only (EXAMINE).
func (s *session) selectMailbox(ctx context.Context, name string) error {
	if _, err := s.c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			return fault.Wrap(fault.Permanent, s.red.Error(err), "mailbox %q does not exist or cannot be read", s.red.String(name)).
				WithDetails(map[string]any{"reason": driverkit.ReasonNotFound})
		}
		return s.fault(ctx, "select", err)
	}
	return nil
}

func (s *session) list(ctx context.Context, a listArgs) (any, error) {
	mailbox, err := checkMailbox(a.Mailbox)
	if err != nil {
		return nil, err
	}
	limit := a.Limit
	if limit == 0 {
		limit = defaultListLimit
	}
	if limit < 1 || limit > maxListLimit {
		return nil, fault.Invalid("limit", "limit must be from 1 to %d", maxListLimit)
	}
	criteria := &imap.SearchCriteria{}
	var after time.Time
	if a.Since != "" {
		if t, err := time.Parse(time.RFC3339, a.Since); err == nil {
			criteria.Since, after = t, t
		} else if t, err := time.Parse(time.DateOnly, a.Since); err == nil {
			criteria.Since = t
		} else {
			return nil, fault.Invalid("since", "since must be a date (YYYY-MM-DD) or an RFC 3339 date-time")
		}
	}
	if a.UnseenOnly {
		criteria.NotFlag = []imap.Flag{imap.FlagSeen}
	}
	if err := s.selectMailbox(ctx, mailbox); err != nil {
		return nil, err
	}
	data, err := s.c.UIDSearch(criteria, nil).Wait()
	if err != nil {
		return nil, s.fault(ctx, "search", err)
	}
	uids := data.AllUIDs()
	slices.Sort(uids)
	if len(uids) > limit {
		uids = uids[len(uids)-limit:]
	}
	items := []listItem{}
	if len(uids) == 0 {
		return map[string]any{"messages": items}, nil
	}
	msgs, err := s.c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true,
	}).Collect()
	if err != nil {
		return nil, s.fault(ctx, "fetch", err)
	}
	for _, m := range msgs {
		if !after.IsZero() && !m.InternalDate.IsZero() && m.InternalDate.Before(after) {
			continue
		}
		it := listItem{UID: uint32(m.UID), Size: m.RFC822Size, Flags: []string{}, Date: s.date(m)}
		if env := m.Envelope; env != nil {
			it.From = s.red.String(firstAddress(env.From))
			it.Subject = s.red.String(clean(env.Subject))
		}
		for _, f := range m.Flags {
			it.Flags = append(it.Flags, s.red.String(clean(string(f))))
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(x, y listItem) int { return int(int64(y.UID) - int64(x.UID)) })
	return map[string]any{"messages": items}, nil
}

func (s *session) date(m *imapclient.FetchMessageBuffer) string {
	t := m.InternalDate
	if m.Envelope != nil && !m.Envelope.Date.IsZero() {
		t = m.Envelope.Date
	}
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}

// rawCap is how much of an encoded part to fetch for max decoded bytes:
// quoted-printable can take three bytes per byte.
func rawCap(maxBytes int64) int64 { return maxBytes*3 + 4096 }

func (s *session) get(ctx context.Context, a getArgs) (any, error) {
	mailbox, err := checkMailbox(a.Mailbox)
	if err != nil {
		return nil, err
	}
	if err := s.selectMailbox(ctx, mailbox); err != nil {
		return nil, err
	}
	uid := imap.UID(a.UID)
	msgs, err := s.c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		UID: true, Envelope: true, InternalDate: true, RFC822Size: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
	}).Collect()
	if err != nil {
		return nil, s.fault(ctx, "fetch", err)
	}
	var m *imapclient.FetchMessageBuffer
	for _, x := range msgs {
		if x.UID == uid {
			m = x
		}
	}
	if m == nil {
		return nil, fault.New(fault.Permanent, "no message with UID %d in mailbox %q", a.UID, s.red.String(mailbox)).
			WithDetails(map[string]any{"reason": driverkit.ReasonNotFound})
	}
	res := getResult{UID: uint32(m.UID), To: []string{}, Date: s.date(m)}
	if env := m.Envelope; env != nil {
		res.From = s.red.String(firstAddress(env.From))
		res.Subject = s.red.String(clean(env.Subject))
		for _, addr := range env.To {
			if f := formatAddress(addr); f != "" {
				res.To = append(res.To, s.red.String(f))
			}
		}
	}
	path, part, isHTML := textPart(m.BodyStructure)
	if part == nil {
		return res, nil
	}
	rcap := rawCap(a.MaxBytes)
	section := &imap.FetchItemBodySection{Part: path, Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: rcap}}
	bodies, err := s.c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		return nil, s.fault(ctx, "fetch", err)
	}
	var raw []byte
	for _, b := range bodies {
		if b.UID == uid {
			raw = b.FindBodySection(section)
		}
	}
	rawCut := int64(part.Size) > int64(len(raw)) || int64(len(raw)) >= rcap
	text := decodeText(part, raw)
	if isHTML {
		text = htmlToText(text)
	}
	limit := int(a.MaxBytes)
	if rawCut {
		// The tail may hold the start of a credential the cut split: drop it.
		limit = max(0, min(limit, len(text)-s.red.MaxLen()))
	}
	if len(text) > limit {
		res.Text = string(s.red.Cut([]byte(text), limit))
		res.Truncated = true
	} else {
		res.Text = s.red.String(text)
	}
	return res, nil
}

// textPart picks the first text/plain part that is not an attachment, else
// the first such text/html part.
func textPart(bs imap.BodyStructure) (path []int, part *imap.BodyStructureSinglePart, isHTML bool) {
	if bs == nil {
		return nil, nil, false
	}
	var htmlPath []int
	var htmlPart *imap.BodyStructureSinglePart
	bs.Walk(func(p []int, b imap.BodyStructure) bool {
		sp, ok := b.(*imap.BodyStructureSinglePart)
		if !ok {
			return part == nil
		}
		if d := sp.Disposition(); d != nil && strings.EqualFold(d.Value, "attachment") {
			return true
		}
		switch sp.MediaType() {
		case "text/plain":
			if part == nil {
				path, part = slices.Clone(p), sp
			}
		case "text/html":
			if htmlPart == nil {
				htmlPath, htmlPart = slices.Clone(p), sp
			}
		}
		return part == nil
	})
	if part != nil {
		return path, part, false
	}
	return htmlPath, htmlPart, htmlPart != nil
}

// decodeText undoes the part's transfer encoding and charset. raw may be
// cut short; whatever decodes is kept.
func decodeText(part *imap.BodyStructureSinglePart, raw []byte) string {
	var b []byte
	switch strings.ToLower(part.Encoding) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, raw)
		clean = clean[:len(clean)/4*4]
		b = make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, _ := base64.StdEncoding.Decode(b, clean)
		b = b[:n]
	case "quoted-printable":
		b, _ = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
	default:
		b = raw
	}
	cs := strings.ToLower(part.Params["charset"])
	if cs != "" && cs != "utf-8" && cs != "us-ascii" && cs != "utf8" {
		if r, err := charset.Reader(cs, bytes.NewReader(b)); err == nil {
			if d, err := io.ReadAll(r); err == nil || len(d) > 0 {
				b = d
			}
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

var (
	htmlDropRe  = regexp.MustCompile(`(?is)<(script|style|head)\b.*?</(script|style|head)\s*>`)
	htmlBreakRe = regexp.MustCompile(`(?i)<\s*(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>`)
	htmlTagRe   = regexp.MustCompile(`(?s)<[^>]*>`)
	blankRe     = regexp.MustCompile(`\n[ \t]*\n(\s*\n)+`)
)

// htmlToText is a crude rendering of HTML as text: scripts and styles
// dropped, line breaks kept, tags removed, entities decoded.
func htmlToText(s string) string {
	s = htmlDropRe.ReplaceAllString(s, "")
	s = htmlBreakRe.ReplaceAllString(s, "\n")
	s = htmlTagRe.ReplaceAllString(s, "")
	s = strings.ReplaceAll(html.UnescapeString(s), "\u00a0", " ")
	s = blankRe.ReplaceAllString(s, "\n\n")
	return strings.TrimSpace(s)
}

func formatAddress(a imap.Address) string {
	addr := a.Addr()
	if addr == "" {
		return ""
	}
	if name := clean(a.Name); name != "" {
		return name + " <" + clean(addr) + ">"
	}
	return clean(addr)
}

func firstAddress(list []imap.Address) string {
	for _, a := range list {
		if f := formatAddress(a); f != "" {
			return f
		}
	}
	return ""
}

// clean makes a header value safe to return: valid UTF-8, no controls.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
