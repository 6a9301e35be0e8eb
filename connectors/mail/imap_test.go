package mail_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/egress"
	connmail "github.com/connec/connec/connectors/mail"
	"github.com/connec/connec/fault"
)

const imapUser = "alice@example.test"

type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

// seed is the mailbox: UIDs 1 to 5 in arrival order.
func seed(t *testing.T, u *imapmemserver.User, password string) {
	t.Helper()
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", 12<<10) // 192 KiB
	bigB64 := base64.StdEncoding.EncodeToString([]byte(big))
	var wrapped strings.Builder
	for i := 0; i < len(bigB64); i += 76 {
		wrapped.WriteString(bigB64[i:min(i+76, len(bigB64))] + "\r\n")
	}
	msgs := []struct {
		raw   string
		flags []imap.Flag
		at    string
	}{
		{"From: Bob <bob@example.test>\r\nTo: " + imapUser + "\r\nSubject: Hello\r\nDate: Sat, 10 Jan 2026 09:00:00 +0000\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHi Alice,\r\nsee you.\r\n",
			[]imap.Flag{imap.FlagSeen}, "2026-01-10T09:00:00Z"},
		{"From: =?utf-8?q?Andr=C3=A9?= <andre@example.test>\r\nTo: Alice <" + imapUser + ">, carol@example.test\r\nSubject: =?iso-8859-1?q?Caf=E9?=\r\nDate: Sun, 1 Feb 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nUn caf=E9 cr=E8me, s'il vous pla=EEt.\r\n" +
			"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html version</p>\r\n--b1--\r\n",
			nil, "2026-02-01T10:00:00Z"},
		{"From: news@example.test\r\nTo: " + imapUser + "\r\nSubject: Newsletter\r\nDate: Mon, 2 Feb 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
			"<html><head><style>p{color:red}</style></head><body><h1>Big&nbsp;news</h1><p>First &amp; second.</p><script>alert(1)</script></body></html>\r\n",
			nil, "2026-02-02T10:00:00Z"},
		{"From: logs@example.test\r\nTo: " + imapUser + "\r\nSubject: Big log\r\nDate: Tue, 3 Feb 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n" +
			"--b2\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n" +
			"--b2\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + wrapped.String() + "--b2--\r\n",
			[]imap.Flag{imap.FlagFlagged}, "2026-02-03T10:00:00Z"},
		{"From: Mallory <mallory@example.test>\r\nTo: " + imapUser + "\r\nSubject: your password is " + password + "\r\nDate: Wed, 4 Feb 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\nWe know it: " + password + ".\r\nLogin " + imapUser + "\r\n",
			nil, "2026-02-04T10:00:00Z"},
	}
	for _, m := range msgs {
		at, _ := time.Parse(time.RFC3339, m.at)
		if _, err := u.Append("INBOX", literal{bytes.NewReader([]byte(m.raw))}, &imap.AppendOptions{Flags: m.flags, Time: at}); err != nil {
			t.Fatal(err)
		}
	}
}

// newIMAPServer serves an in-memory mailbox over implicit TLS or STARTTLS.
func newIMAPServer(t *testing.T, password string, implicitTLS bool) (*countingListener, string) {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(imapUser, password)
	seed(t, u, password)
	mem.AddUser(u)
	tlsCfg, caPEM := selfSigned(t)
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}},
		Logger: log.New(io.Discard, "", 0),
	}
	ln := listen(t)
	var serveOn net.Listener = ln
	if implicitTLS {
		serveOn = tls.NewListener(ln, tlsCfg)
	} else {
		opts.TLSConfig = tlsCfg
	}
	srv := imapserver.New(opts)
	go func() { _ = srv.Serve(serveOn) }()
	t.Cleanup(func() { srv.Close() })
	return ln, caPEM
}

func imapConfig(t *testing.T, port int, security, caPEM string, extra map[string]any) json.RawMessage {
	c := map[string]any{"host": mailHost, "port": port, "security": security, "ca_pem": caPEM, "allow_private_network": true}
	for k, v := range extra {
		c[k] = v
	}
	return drivertest.JSON(t, c)
}

type listOut struct {
	Messages []struct {
		UID     uint32   `json:"uid"`
		From    string   `json:"from"`
		Subject string   `json:"subject"`
		Date    string   `json:"date"`
		Size    int64    `json:"size"`
		Flags   []string `json:"flags"`
	} `json:"messages"`
}

type getOut struct {
	UID       uint32   `json:"uid"`
	From      string   `json:"from"`
	To        []string `json:"to"`
	Subject   string   `json:"subject"`
	Date      string   `json:"date"`
	Text      string   `json:"text"`
	Truncated bool     `json:"truncated"`
}

func TestIMAPListAndGet(t *testing.T) {
	password := drivertest.Canary(t)
	for _, mode := range []string{"tls", "starttls"} {
		t.Run(mode, func(t *testing.T) {
			ln, caPEM := newIMAPServer(t, password, mode == "tls")
			h := harness(t, connmail.NewIMAP())
			call := func(op string, args map[string]any) json.RawMessage {
				t.Helper()
				out, err := h.Invoke(context.Background(), drivertest.Call{
					Config: imapConfig(t, portOf(ln), mode, caPEM, nil), Op: op, Args: args,
					Kind: "login", Cred: drivertest.Fields("username", imapUser, "password", password),
				})
				if err != nil {
					t.Fatalf("%s %v: %v", op, args, err)
				}
				drivertest.NoLeak(t, out, err, password)
				return out
			}
			var l listOut
			_ = json.Unmarshal(call("mail.list", map[string]any{}), &l)
			if len(l.Messages) != 5 || l.Messages[0].UID != 5 || l.Messages[4].UID != 1 {
				t.Fatalf("list = %+v", l)
			}
			first := l.Messages[4]
			if first.From != "Bob <bob@example.test>" || first.Subject != "Hello" || first.Date != "2026-01-10T09:00:00Z" ||
				first.Size == 0 || len(first.Flags) != 1 || first.Flags[0] != `\Seen` {
				t.Fatalf("first message = %+v", first)
			}
			if l.Messages[3].Subject != "Café" || l.Messages[3].From != "André <andre@example.test>" {
				t.Fatalf("encoded headers = %+v", l.Messages[3])
			}

			l = listOut{}
			_ = json.Unmarshal(call("mail.list", map[string]any{"limit": 2, "unseen_only": true}), &l)
			if len(l.Messages) != 2 || l.Messages[0].UID != 5 || l.Messages[1].UID != 4 {
				t.Fatalf("unseen limit 2 = %+v", l)
			}
			l = listOut{}
			_ = json.Unmarshal(call("mail.list", map[string]any{"since": "2026-02-02T00:00:00Z"}), &l)
			if len(l.Messages) != 3 || l.Messages[2].UID != 3 {
				t.Fatalf("since = %+v", l)
			}

			// The mailbox's own address stays: a username identifies, it is
			// redacted only inside what is derived from it with the
			// password (driverkit.Redactor).
			var g getOut
			_ = json.Unmarshal(call("mail.get", map[string]any{"uid": 2}), &g)
			if g.Text != "Un café crème, s'il vous plaît." || g.Truncated || g.Subject != "Café" ||
				len(g.To) != 2 || g.To[1] != "carol@example.test" || g.To[0] != "Alice <"+imapUser+">" {
				t.Fatalf("get 2 = %+v", g)
			}
			g = getOut{}
			_ = json.Unmarshal(call("mail.get", map[string]any{"uid": 3}), &g)
			if g.Text != "Big news\nFirst & second." {
				t.Fatalf("html-only text = %q", g.Text)
			}
			g = getOut{}
			_ = json.Unmarshal(call("mail.get", map[string]any{"mailbox": "INBOX", "uid": 4, "max_bytes": 2048}), &g)
			if !g.Truncated || len(g.Text) != 2048 || !strings.HasPrefix(g.Text, "0123456789abcdef0123") {
				t.Fatalf("big: truncated=%v len=%d", g.Truncated, len(g.Text))
			}

			// Reading marked nothing seen.
			l = listOut{}
			_ = json.Unmarshal(call("mail.list", map[string]any{"unseen_only": true}), &l)
			if len(l.Messages) != 4 {
				t.Fatalf("after get, unseen = %+v", l)
			}
		})
	}
}

func TestIMAPEchoedCredentialRedacted(t *testing.T) {
	password := drivertest.Canary(t)
	ln, caPEM := newIMAPServer(t, password, true)
	h := harness(t, connmail.NewIMAP())
	for _, tc := range []struct {
		op   string
		args map[string]any
	}{{"mail.list", map[string]any{}}, {"mail.get", map[string]any{"uid": 5}}} {
		out, err := h.Invoke(context.Background(), drivertest.Call{
			Config: imapConfig(t, portOf(ln), "tls", caPEM, nil), Op: tc.op, Args: tc.args,
			Kind: "login", Cred: drivertest.Fields("username", imapUser, "password", password),
		})
		if err != nil {
			t.Fatal(err)
		}
		drivertest.NoLeak(t, out, err, password)
		if !strings.Contains(string(out), "your password is "+driverkit.Redacted) {
			t.Fatalf("%s output = %s", tc.op, out)
		}
	}
}

func TestIMAPNotFound(t *testing.T) {
	password := drivertest.Canary(t)
	ln, caPEM := newIMAPServer(t, password, true)
	h := harness(t, connmail.NewIMAP())
	for _, args := range []map[string]any{{"uid": 99}, {"mailbox": "Archive", "uid": 1}, {"mailbox": "Nope"}} {
		op := "mail.get"
		if _, ok := args["uid"]; !ok {
			op = "mail.list"
		}
		out, err := h.Invoke(context.Background(), drivertest.Call{
			Config: imapConfig(t, portOf(ln), "tls", caPEM, nil), Op: op, Args: args,
			Kind: "login", Cred: drivertest.Fields("username", imapUser, "password", password),
		})
		drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonNotFound)
		drivertest.NoLeak(t, out, err, password)
	}
}

func TestIMAPBadCredential(t *testing.T) {
	canary := drivertest.Canary(t)
	ln, caPEM := newIMAPServer(t, "the-real-password", true)
	h := harness(t, connmail.NewIMAP())
	out, err := h.Invoke(context.Background(), drivertest.Call{
		Config: imapConfig(t, portOf(ln), "tls", caPEM, nil), Op: "mail.list", Args: map[string]any{},
		Kind: "login", Cred: drivertest.Fields("username", imapUser, "password", canary),
	})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonBadCredential)
	drivertest.NoLeak(t, out, err, canary)

	_, err = h.Invoke(context.Background(), drivertest.Call{
		Config: imapConfig(t, portOf(ln), "tls", caPEM, nil), Op: "mail.list", Args: map[string]any{},
	})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonNoCredential)
}

func TestIMAPUntrustedCertificate(t *testing.T) {
	password := drivertest.Canary(t)
	ln, _ := newIMAPServer(t, password, true)
	_, otherCA := selfSigned(t)
	h := harness(t, connmail.NewIMAP())
	out, err := h.Invoke(context.Background(), drivertest.Call{
		Config: imapConfig(t, portOf(ln), "tls", otherCA, nil), Op: "mail.list", Args: map[string]any{},
		Kind: "login", Cred: drivertest.Fields("username", imapUser, "password", password),
	})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonTLS)
	drivertest.NoLeak(t, out, err, password)
}

func TestIMAPTimeout(t *testing.T) {
	password := drivertest.Canary(t)
	ln := silentServer(t)
	h := harness(t, connmail.NewIMAP())
	for _, mode := range []string{"tls", "starttls"} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		out, err := h.Invoke(ctx, drivertest.Call{
			Config: imapConfig(t, portOf(ln), mode, "", nil), Op: "mail.list", Args: map[string]any{},
			Kind: "login", Cred: drivertest.Fields("username", imapUser, "password", password),
		})
		cancel()
		drivertest.WantFault(t, err, fault.Timeout, "")
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%s: timeout took %s", mode, d)
		}
		drivertest.NoLeak(t, out, err, password)
	}
}

func TestIMAPOversizedResponse(t *testing.T) {
	password := drivertest.Canary(t)
	tlsCfg, caPEM := selfSigned(t)
	ln := listen(t)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c := tls.Server(raw, tlsCfg)
				defer c.Close()
				line := []byte("* OK " + strings.Repeat("z", 1000) + "\r\n")
				for {
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}()
		}
	}()
	h := harness(t, connmail.NewIMAP())
	out, err := h.Invoke(context.Background(), drivertest.Call{
		Config: imapConfig(t, portOf(ln), "tls", caPEM, nil), Op: "mail.get", Args: map[string]any{"uid": 1, "max_bytes": 1024},
		Kind: "login", Cred: drivertest.Fields("username", imapUser, "password", password),
	})
	drivertest.WantFault(t, err, fault.ResponseTooLarge, "")
	drivertest.NoLeak(t, out, err, password)
}

func TestIMAPAllowlistViolation(t *testing.T) {
	password := drivertest.Canary(t)
	ln, caPEM := newIMAPServer(t, password, true)
	h := harness(t, connmail.NewIMAP())
	g, err := egress.New([]string{"imap.example.com:993"}, egress.Options{AllowPrivate: true, Resolver: h.Resolver})
	if err != nil {
		t.Fatal(err)
	}
	call := drivertest.Call{
		Config: imapConfig(t, portOf(ln), "tls", caPEM, nil), Op: "mail.list", Args: map[string]any{},
		Kind: "login", Cred: drivertest.Fields("username", imapUser, "password", password), Egress: g,
	}
	out, err := h.Invoke(context.Background(), call)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	drivertest.NoLeak(t, out, err, password)

	call.Egress = nil
	call.Config = imapConfig(t, portOf(ln), "tls", caPEM, map[string]any{"allow_private_network": false})
	_, err = h.Invoke(context.Background(), call)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	if ln.n.Load() != 0 {
		t.Fatalf("server contacted %d times", ln.n.Load())
	}
}
