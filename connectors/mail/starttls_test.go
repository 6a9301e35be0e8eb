package mail_test

import (
	"bufio"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	connmail "github.com/connec/connec/connectors/mail"
	"github.com/connec/connec/fault"
)

// A server that answers 220 to STARTTLS and then carries on in plain text
// (a broken or downgrading middlebox): the send fails as a TLS failure,
// and no AUTH is ever sent.
func TestSMTPStartTLSThatStaysPlainIsATLSFailure(t *testing.T) {
	password := drivertest.Canary(t)
	ln := listen(t)
	var mu sync.Mutex
	var seen []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				write := func(s string) { _, _ = c.Write([]byte(s + "\r\n")) }
				write("220 " + mailHost + " ESMTP")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					mu.Lock()
					seen = append(seen, strings.TrimSpace(line))
					mu.Unlock()
					switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
					case strings.HasPrefix(cmd, "EHLO"):
						write("250-" + mailHost)
						write("250-STARTTLS")
						write("250 AUTH PLAIN LOGIN")
					case cmd == "STARTTLS":
						write("220 go ahead") // and stay in plain text
					default:
						write("500 what?")
					}
				}
			}()
		}
	}()
	h := harness(t, connmail.NewSMTP())
	_, err := h.Invoke(context.Background(), drivertest.Call{Config: smtpConfig(t, portOf(ln), "starttls", "", nil), Op: "mail.send",
		Args: map[string]any{"to": []string{"ada@example.test"}, "subject": "x", "text": "y"},
		Kind: "login", Cred: drivertest.Fields("username", "bot@example.test", "password", password)})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonTLS)
	drivertest.NoLeak(t, nil, err, password)
	mu.Lock()
	defer mu.Unlock()
	for _, l := range seen {
		if strings.HasPrefix(strings.ToUpper(l), "AUTH") {
			t.Errorf("the client sent %q after a STARTTLS that did not happen", l)
		}
	}
}
