package mail_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"mime"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/egress"
	connmail "github.com/connec/connec/connectors/mail"
	"github.com/connec/connec/fault"
)

type received struct {
	from  string
	rcpts []string
	data  []byte
}

// smtpServer is a go-smtp server that takes AUTH PLAIN for one user and
// records what it receives. It refuses recipients at @rejected.test, and
// echoes the password it was given in refusals (as a careless server might).
type smtpServer struct {
	ln       *countingListener
	srv      *smtp.Server
	user     string
	password string

	mu   sync.Mutex
	msgs []received
}

func newSMTPServer(t *testing.T, user, password string, implicitTLS, offerSTARTTLS bool) (*smtpServer, string) {
	t.Helper()
	tlsCfg, caPEM := selfSigned(t)
	s := &smtpServer{ln: listen(t), user: user, password: password}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s}, nil }))
	s.srv.Domain = mailHost
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	var ln net.Listener = s.ln
	if implicitTLS {
		ln = tls.NewListener(s.ln, tlsCfg)
	} else if offerSTARTTLS {
		s.srv.TLSConfig = tlsCfg
	}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { s.srv.Close() })
	return s, caPEM
}

func (s *smtpServer) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

type smtpSession struct {
	s      *smtpServer
	authed bool
	said   string // the password the client sent
	cur    received
}

func (x *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		x.said = password
		if username != x.s.user || password != x.s.password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials for " + username + " / " + password}
		}
		x.authed = true
		return nil
	}), nil
}

func (x *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if !x.authed {
		return smtp.ErrAuthRequired
	}
	x.cur = received{from: from}
	return nil
}

func (x *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasSuffix(to, "@rejected.test") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user " + to + " (you said " + x.said + ")"}
	}
	if strings.HasSuffix(to, "@later.test") {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}
	x.cur.rcpts = append(x.cur.rcpts, to)
	return nil
}

func (x *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.cur.data = b
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, x.cur)
	x.s.mu.Unlock()
	return nil
}

func (x *smtpSession) Reset()        { x.cur = received{} }
func (x *smtpSession) Logout() error { return nil }

func smtpConfig(t *testing.T, port int, security, caPEM string, extra map[string]any) json.RawMessage {
	c := map[string]any{"host": mailHost, "port": port, "security": security, "from": "Connec Bot <bot@example.test>", "allow_private_network": true}
	if caPEM != "" {
		c["ca_pem"] = caPEM
	}
	for k, v := range extra {
		c[k] = v
	}
	return drivertest.JSON(t, c)
}

type sendOut struct {
	MessageID string   `json:"message_id"`
	Accepted  []string `json:"accepted"`
	Rejected  []struct {
		Address string `json:"address"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"rejected"`
}

func TestSMTPSend(t *testing.T) {
	password := drivertest.Canary(t)
	for _, mode := range []string{"starttls", "tls"} {
		t.Run(mode, func(t *testing.T) {
			srv, caPEM := newSMTPServer(t, "bot@example.test", password, mode == "tls", true)
			h := harness(t, connmail.NewSMTP())
			out, err := h.Invoke(context.Background(), drivertest.Call{
				Config: smtpConfig(t, portOf(srv.ln), mode, caPEM, nil),
				Op:     "mail.send",
				Args: map[string]any{
					"to":       []string{"Ada Lovelace <ada@example.test>", "nobody@rejected.test"},
					"cc":       []string{"carol@example.test", "ADA@example.test"},
					"subject":  "Café report",
					"text":     "Hello Ada,\n.\nline with a dot above\nsecond line: naïve",
					"html":     "<p>Hello <b>Ada</b></p>",
					"reply_to": "desk@example.test",
				},
				Kind: "login",
				Cred: drivertest.Fields("username", "bot@example.test", "password", password),
			})
			if err != nil {
				t.Fatal(err)
			}
			drivertest.NoLeak(t, out, err, password)
			var o sendOut
			if err := json.Unmarshal(out, &o); err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(o.MessageID, "@example.test") || strings.Join(o.Accepted, ",") != "ada@example.test,carol@example.test" ||
				len(o.Rejected) != 1 || o.Rejected[0].Address != "nobody@rejected.test" || o.Rejected[0].Code != 550 {
				t.Fatalf("output = %s", out)
			}
			if !strings.Contains(o.Rejected[0].Message, driverkit.Redacted) {
				t.Fatalf("echoed password not redacted in %q", o.Rejected[0].Message)
			}

			got := srv.received()
			if len(got) != 1 || got[0].from != "bot@example.test" || strings.Join(got[0].rcpts, ",") != "ada@example.test,carol@example.test" {
				t.Fatalf("server received %+v", got)
			}
			m, err := mail.ReadMessage(bytes.NewReader(got[0].data))
			if err != nil {
				t.Fatal(err)
			}
			dec := new(mime.WordDecoder)
			if subj, _ := dec.DecodeHeader(m.Header.Get("Subject")); subj != "Café report" {
				t.Errorf("Subject = %q", m.Header.Get("Subject"))
			}
			if m.Header.Get("Message-Id") != "<"+o.MessageID+">" || m.Header.Get("Reply-To") != "<desk@example.test>" ||
				!strings.Contains(m.Header.Get("To"), `"Ada Lovelace" <ada@example.test>`) ||
				!strings.HasPrefix(m.Header.Get("Content-Type"), "multipart/alternative") {
				t.Errorf("headers = %v", m.Header)
			}
			body, _ := io.ReadAll(m.Body)
			if !bytes.Contains(body, []byte("na=C3=AFve")) || !bytes.Contains(body, []byte("<b>Ada</b>")) {
				t.Errorf("body = %s", body)
			}
		})
	}
}

func TestSMTPBadCredential(t *testing.T) {
	canary := drivertest.Canary(t)
	srv, caPEM := newSMTPServer(t, "bot@example.test", "the-real-password", false, true)
	h := harness(t, connmail.NewSMTP())
	out, err := h.Invoke(context.Background(), drivertest.Call{
		Config: smtpConfig(t, portOf(srv.ln), "starttls", caPEM, nil),
		Op:     "mail.send",
		Args:   map[string]any{"to": []string{"ada@example.test"}, "subject": "x", "text": "y"},
		Kind:   "login",
		Cred:   drivertest.Fields("username", "bot@example.test", "password", canary),
	})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonBadCredential)
	drivertest.NoLeak(t, out, err, canary)
	if len(srv.received()) != 0 {
		t.Fatal("message delivered")
	}
}

func TestSMTPAllRecipientsRefused(t *testing.T) {
	password := drivertest.Canary(t)
	srv, caPEM := newSMTPServer(t, "bot@example.test", password, false, true)
	h := harness(t, connmail.NewSMTP())
	call := func(to ...string) error {
		out, err := h.Invoke(context.Background(), drivertest.Call{
			Config: smtpConfig(t, portOf(srv.ln), "starttls", caPEM, nil),
			Op:     "mail.send",
			Args:   map[string]any{"to": to, "subject": "x", "text": "y"},
			Kind:   "login",
			Cred:   drivertest.Fields("username", "bot@example.test", "password", password),
		})
		drivertest.NoLeak(t, out, err, password)
		return err
	}
	fe := drivertest.WantFault(t, call("a@rejected.test"), fault.Permanent, "")
	if fe.Details["smtp_code"] != 550 || fe.Details["rejected"] == nil {
		t.Fatalf("details = %v", fe.Details)
	}
	fe = drivertest.WantFault(t, call("a@later.test"), fault.Transient, "")
	if fe.Details["smtp_code"] != 451 {
		t.Fatalf("details = %v", fe.Details)
	}
}

func TestSMTPTLSRequired(t *testing.T) {
	password := drivertest.Canary(t)
	h := harness(t, connmail.NewSMTP())
	args := map[string]any{"to": []string{"ada@example.test"}, "subject": "x", "text": "y"}
	cred := drivertest.Fields("username", "bot@example.test", "password", password)

	// No STARTTLS offered: never fall back to plain text.
	srv, caPEM := newSMTPServer(t, "bot@example.test", password, false, false)
	out, err := h.Invoke(context.Background(), drivertest.Call{Config: smtpConfig(t, portOf(srv.ln), "starttls", caPEM, nil), Op: "mail.send", Args: args, Kind: "login", Cred: cred})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonTLS)
	drivertest.NoLeak(t, out, err, password)

	// A certificate the instance does not trust.
	srv, _ = newSMTPServer(t, "bot@example.test", password, true, true)
	_, err = h.Invoke(context.Background(), drivertest.Call{Config: smtpConfig(t, portOf(srv.ln), "tls", "", nil), Op: "mail.send", Args: args, Kind: "login", Cred: cred})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonTLS)

	// security none with a credential: refused before connecting.
	srv, _ = newSMTPServer(t, "bot@example.test", password, false, false)
	_, err = h.Invoke(context.Background(), drivertest.Call{Config: smtpConfig(t, portOf(srv.ln), "none", "", nil), Op: "mail.send", Args: args, Kind: "login", Cred: cred})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonConfig)
	if srv.ln.n.Load() != 0 {
		t.Fatal("connected with a credential and no TLS")
	}
}

func TestSMTPTimeout(t *testing.T) {
	password := drivertest.Canary(t)
	ln := silentServer(t)
	h := harness(t, connmail.NewSMTP())
	for _, mode := range []string{"starttls", "tls"} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		out, err := h.Invoke(ctx, drivertest.Call{
			Config: smtpConfig(t, portOf(ln), mode, "", nil), Op: "mail.send",
			Args: map[string]any{"to": []string{"ada@example.test"}, "subject": "x", "text": "y"},
			Kind: "login", Cred: drivertest.Fields("username", "u", "password", password),
		})
		cancel()
		drivertest.WantFault(t, err, fault.Timeout, "")
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%s: timeout took %s", mode, d)
		}
		drivertest.NoLeak(t, out, err, password)
	}
}

func TestSMTPOversizedReply(t *testing.T) {
	password := drivertest.Canary(t)
	ln := listen(t)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line := []byte("220-" + strings.Repeat("x", 500) + "\r\n")
		for {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	}()
	h := harness(t, connmail.NewSMTP())
	out, err := h.Invoke(context.Background(), drivertest.Call{
		Config: smtpConfig(t, portOf(ln), "starttls", "", nil), Op: "mail.send",
		Args: map[string]any{"to": []string{"ada@example.test"}, "subject": "x", "text": "y"},
		Kind: "login", Cred: drivertest.Fields("username", "u", "password", password),
	})
	drivertest.WantFault(t, err, fault.ResponseTooLarge, "")
	drivertest.NoLeak(t, out, err, password)
}

func TestSMTPAllowlistViolation(t *testing.T) {
	password := drivertest.Canary(t)
	srv, caPEM := newSMTPServer(t, "bot@example.test", password, false, true)
	h := harness(t, connmail.NewSMTP())
	g, err := egress.New([]string{"smtp.example.com:587"}, egress.Options{AllowPrivate: true, Resolver: h.Resolver})
	if err != nil {
		t.Fatal(err)
	}
	call := drivertest.Call{
		Config: smtpConfig(t, portOf(srv.ln), "starttls", caPEM, nil), Op: "mail.send",
		Args: map[string]any{"to": []string{"ada@example.test"}, "subject": "x", "text": "y"},
		Kind: "login", Cred: drivertest.Fields("username", "bot@example.test", "password", password),
		Egress: g,
	}
	out, err := h.Invoke(context.Background(), call)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	drivertest.NoLeak(t, out, err, password)

	call.Egress = nil
	call.Config = smtpConfig(t, portOf(srv.ln), "starttls", caPEM, map[string]any{"allow_private_network": false})
	_, err = h.Invoke(context.Background(), call)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	if srv.ln.n.Load() != 0 {
		t.Fatalf("server contacted %d times", srv.ln.n.Load())
	}
}

func TestSMTPArguments(t *testing.T) {
	h := harness(t, connmail.NewSMTP())
	for _, args := range []map[string]any{
		{"to": []string{"a@example.test\r\nRCPT TO:<x@evil.test>"}, "subject": "x", "text": "y"},
		{"to": []string{"not an address"}, "subject": "x", "text": "y"},
		{"to": []string{"a@example.test"}, "subject": "x\r\nBcc: x@evil.test", "text": "y"},
		{"to": []string{"a@example.test"}, "reply_to": "x\n@evil", "subject": "x", "text": "y"},
	} {
		_, err := h.Invoke(context.Background(), drivertest.Call{
			Config: smtpConfig(t, 2525, "starttls", "", nil), Op: "mail.send", Args: args, SkipArgsCheck: true,
		})
		drivertest.WantFault(t, err, fault.InvalidArgument, "")
	}
	d := connmail.NewSMTP()
	sc, err := d.EgressScope(json.RawMessage(`{"host":"SMTP.Example.com.","security":"tls","from":"a@example.com"}`))
	if err != nil || sc.Hosts[0] != "smtp.example.com:465" || sc.AllowPrivate {
		t.Fatalf("scope = %+v, %v", sc, err)
	}
	for _, bad := range []string{`{"host":"x.example","from":"nope"}`, `{"host":"x.example","from":"a@b.example","security":"ssl"}`, `{"host":"x.example","from":"a@b.example","ca_pem":"junk"}`} {
		if _, err := d.EgressScope(json.RawMessage(bad)); err == nil {
			t.Errorf("config %s accepted", bad)
		}
	}
}
