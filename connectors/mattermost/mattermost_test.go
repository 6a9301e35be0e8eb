package mattermost_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/connectors/mattermost"
	"github.com/connec/connec/fault"
)

func id(prefix string) string { return prefix + strings.Repeat("0", 26-len(prefix)) }

var (
	chTown  = id("town")
	chHang  = id("hang")
	chBig   = id("big")
	chEcho  = id("echo")
	chOther = id("other") // exists, but the user may not post there
	userID  = id("user")
)

func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 26)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

type mmPost struct {
	ID        string `json:"id"`
	CreateAt  int64  `json:"create_at"`
	UpdateAt  int64  `json:"update_at"`
	DeleteAt  int64  `json:"delete_at"`
	UserID    string `json:"user_id"`
	ChannelID string `json:"channel_id"`
	RootID    string `json:"root_id"`
	Message   string `json:"message"`
	Type      string `json:"type"`
}

// server implements the two endpoints as Mattermost documents them, under
// the subpath /mm.
type server struct {
	srv   *httptest.Server
	token string
	hits  atomic.Int64
	stop  chan struct{}

	mu    sync.Mutex
	clock int64
	posts map[string][]*mmPost // by channel
}

func newServer(t *testing.T, token string) *server {
	t.Helper()
	s := &server{token: token, stop: make(chan struct{}), clock: 1_700_000_000_000, posts: map[string][]*mmPost{chTown: nil, chEcho: nil, chOther: nil}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() { close(s.stop); s.srv.Close() })
	return s
}

func writeErr(w http.ResponseWriter, status int, id, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "message": msg, "detailed_error": "", "request_id": "req", "status_code": status})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	auth := r.Header.Get("Authorization")
	if auth != "Bearer "+s.token {
		writeErr(w, http.StatusUnauthorized, "api.context.session_expired.app_error", "Invalid or expired session, please login again. Got "+auth)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/mm")
	switch {
	case path == "/api/v4/posts" && r.Method == http.MethodPost:
		s.create(w, r)
	case strings.HasPrefix(path, "/api/v4/channels/") && strings.HasSuffix(path, "/posts") && r.Method == http.MethodGet:
		s.list(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "/api/v4/channels/"), "/posts"))
	default:
		writeErr(w, http.StatusNotFound, "api.context.404.app_error", "Sorry, we could not find the page.")
	}
}

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Content-Type") != "application/json" {
		writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing post in request body.")
		return
	}
	var in map[string]any
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing post in request body.")
		return
	}
	for k := range in {
		if k != "channel_id" && k != "message" && k != "root_id" {
			writeErr(w, http.StatusBadRequest, "api.context.invalid_body_param.app_error", "unexpected field "+k)
			return
		}
	}
	ch, _ := in["channel_id"].(string)
	msg, _ := in["message"].(string)
	root, _ := in["root_id"].(string)
	s.mu.Lock()
	defer s.mu.Unlock()
	posts, ok := s.posts[ch]
	if !ok || ch == chOther {
		writeErr(w, http.StatusForbidden, "api.context.permissions.app_error", "You do not have the appropriate permissions.")
		return
	}
	if msg == "" {
		writeErr(w, http.StatusBadRequest, "model.post.is_valid.msg.app_error", "Invalid message.")
		return
	}
	if root != "" {
		found := false
		for _, p := range posts {
			found = found || p.ID == root
		}
		if !found {
			// Mattermost quotes what it got; this one also echoes the header.
			writeErr(w, http.StatusBadRequest, "api.post.create_post.root_id.app_error", "Invalid RootId parameter "+root+" from "+r.Header.Get("Authorization"))
			return
		}
	}
	s.clock += 1000
	p := &mmPost{ID: newID(), CreateAt: s.clock, UpdateAt: s.clock, UserID: userID, ChannelID: ch, RootID: root, Message: msg}
	s.posts[ch] = append(posts, p)
	writeJSON(w, http.StatusCreated, p)
}

func (s *server) list(w http.ResponseWriter, r *http.Request, ch string) {
	q := r.URL.Query()
	if q.Has("since") && (q.Has("page") || q.Has("per_page") || q.Has("before") || q.Has("after")) {
		writeErr(w, http.StatusBadRequest, "api.context.invalid_url_param.app_error", "since must not be used with page or per_page")
		return
	}
	switch ch {
	case chHang:
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		return
	case chBig:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"order":["x"],"posts":{"x":{"message":"`+strings.Repeat("a", 9<<20)+`"}}}`)
		return
	}
	s.mu.Lock()
	posts, ok := s.posts[ch]
	all := append([]*mmPost(nil), posts...)
	s.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, "app.channel.get.existing.app_error", "Unable to find the existing channel.")
		return
	}
	if ch == chEcho {
		all = append(all, &mmPost{ID: id("echoa"), CreateAt: 5, UserID: userID, ChannelID: ch, Message: "you sent " + r.Header.Get("Authorization")},
			&mmPost{ID: id("echob"), CreateAt: 6, UserID: userID, ChannelID: ch, Message: "token=" + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].CreateAt > all[j].CreateAt })
	if since, err := strconv.ParseInt(q.Get("since"), 10, 64); err == nil {
		var kept []*mmPost
		for _, p := range all {
			if p.UpdateAt > since || p.CreateAt > since {
				kept = append(kept, p)
			}
		}
		all = kept
	} else {
		per := 60
		if v, err := strconv.Atoi(q.Get("per_page")); err == nil {
			per = min(v, 200)
		}
		if len(all) > per {
			all = all[:per]
		}
	}
	list := map[string]any{"order": []string{}, "posts": map[string]any{}, "next_post_id": "", "prev_post_id": "", "has_next": false}
	for _, p := range all {
		list["order"] = append(list["order"].([]string), p.ID)
		list["posts"].(map[string]any)[p.ID] = p
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *server) config(t *testing.T, private bool) json.RawMessage {
	// The fake serves plain HTTP on loopback: allowed when asked for.
	return drivertest.JSON(t, map[string]any{"server_url": s.srv.URL + "/mm/", "allow_private_network": private, "allow_plain_http": true})
}

func (s *server) call(t *testing.T, op string, args any, token string) drivertest.Call {
	return drivertest.Call{Config: s.config(t, true), Op: op, Args: args, Kind: "bearer", Cred: drivertest.Fields("token", token)}
}

type readOut struct {
	Posts []struct {
		ID       string `json:"id"`
		UserID   string `json:"user_id"`
		Message  string `json:"message"`
		CreateAt int64  `json:"create_at"`
		RootID   string `json:"root_id"`
	} `json:"posts"`
}

func TestPostAndRead(t *testing.T) {
	token := drivertest.Canary(t)
	s := newServer(t, token)
	h := drivertest.New(t, mattermost.New())
	ctx := context.Background()

	var ids []string
	var creates []int64
	for i, msg := range []string{"first", "second", "reply"} {
		args := map[string]any{"channel_id": chTown, "message": msg}
		if i == 2 {
			args["root_id"] = ids[0]
		}
		out, err := h.Invoke(ctx, s.call(t, "chat.post", args, token))
		if err != nil {
			t.Fatalf("post %s: %v", msg, err)
		}
		drivertest.NoLeak(t, out, err, token)
		var o struct {
			PostID   string `json:"post_id"`
			CreateAt int64  `json:"create_at"`
		}
		_ = json.Unmarshal(out, &o)
		if len(o.PostID) != 26 || o.CreateAt == 0 {
			t.Fatalf("post output %s", out)
		}
		ids = append(ids, o.PostID)
		creates = append(creates, o.CreateAt)
	}

	out, err := h.Invoke(ctx, s.call(t, "chat.read", map[string]any{"channel_id": chTown, "limit": 2}, token))
	if err != nil {
		t.Fatal(err)
	}
	var r readOut
	_ = json.Unmarshal(out, &r)
	if len(r.Posts) != 2 || r.Posts[0].ID != ids[2] || r.Posts[0].RootID != ids[0] || r.Posts[0].Message != "reply" ||
		r.Posts[1].ID != ids[1] || r.Posts[1].UserID != userID || r.Posts[1].CreateAt != creates[1] {
		t.Fatalf("read = %s", out)
	}

	out, err = h.Invoke(ctx, s.call(t, "chat.read", map[string]any{"channel_id": chTown, "since": creates[0]}, token))
	if err != nil {
		t.Fatal(err)
	}
	r = readOut{}
	_ = json.Unmarshal(out, &r)
	if len(r.Posts) != 2 || r.Posts[0].Message != "reply" || r.Posts[1].Message != "second" {
		t.Fatalf("read since = %s", out)
	}
}

func TestServiceErrors(t *testing.T) {
	token := drivertest.Canary(t)
	s := newServer(t, token)
	h := drivertest.New(t, mattermost.New())
	ctx := context.Background()

	_, err := h.Invoke(ctx, s.call(t, "chat.post", map[string]any{"channel_id": chOther, "message": "hi"}, token))
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonForbidden)
	_, err = h.Invoke(ctx, s.call(t, "chat.read", map[string]any{"channel_id": id("nope")}, token))
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonNotFound)
	out, err := h.Invoke(ctx, s.call(t, "chat.post", map[string]any{"channel_id": chTown, "message": "hi", "root_id": id("missing")}, token))
	fe := drivertest.WantFault(t, err, fault.InvalidArgument, "")
	if !strings.Contains(fe.Message, "Invalid RootId") || !strings.Contains(fe.Message, driverkit.Redacted) {
		t.Fatalf("message = %q, want Mattermost's, redacted", fe.Message)
	}
	drivertest.NoLeak(t, out, err, token)

	// The schema refuses what the driver would refuse too.
	op, _ := h.Type.Op("chat.read")
	for _, bad := range []string{`{"channel_id":"` + chTown + `","limit":201}`, `{"channel_id":"../users"}`, `{"channel_id":"` + chTown + `","x":1}`} {
		if op.In.Validate(json.RawMessage(bad)) == nil {
			t.Errorf("input schema accepts %s", bad)
		}
	}
	c := s.call(t, "chat.read", map[string]any{"channel_id": "../../users/me"}, token)
	c.SkipArgsCheck = true
	_, err = h.Invoke(ctx, c)
	drivertest.WantFault(t, err, fault.InvalidArgument, "")
}

func TestBadCredential(t *testing.T) {
	canary := drivertest.Canary(t)
	s := newServer(t, "the-real-token")
	h := drivertest.New(t, mattermost.New())
	for op, args := range map[string]any{
		"chat.post": map[string]any{"channel_id": chTown, "message": "x"},
		"chat.read": map[string]any{"channel_id": chTown},
	} {
		out, err := h.Invoke(context.Background(), s.call(t, op, args, canary))
		drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonBadCredential)
		drivertest.NoLeak(t, out, err, canary)
	}
}

func TestTimeout(t *testing.T) {
	token := drivertest.Canary(t)
	s := newServer(t, token)
	h := drivertest.New(t, mattermost.New())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	out, err := h.Invoke(ctx, s.call(t, "chat.read", map[string]any{"channel_id": chHang}, token))
	drivertest.WantFault(t, err, fault.Timeout, "")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %s", d)
	}
	drivertest.NoLeak(t, out, err, token)
}

func TestOversizedResponse(t *testing.T) {
	token := drivertest.Canary(t)
	s := newServer(t, token)
	h := drivertest.New(t, mattermost.New())
	out, err := h.Invoke(context.Background(), s.call(t, "chat.read", map[string]any{"channel_id": chBig}, token))
	drivertest.WantFault(t, err, fault.ResponseTooLarge, "")
	drivertest.NoLeak(t, out, err, token)
}

func TestAllowlistViolation(t *testing.T) {
	token := drivertest.Canary(t)
	s := newServer(t, token)
	h := drivertest.New(t, mattermost.New())

	c := s.call(t, "chat.post", map[string]any{"channel_id": chTown, "message": "hi"}, token)
	g, err := egress.New([]string{"chat.example.com:443"}, egress.Options{AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Egress = g
	out, err := h.Invoke(context.Background(), c)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	drivertest.NoLeak(t, out, err, token)

	c = s.call(t, "chat.post", map[string]any{"channel_id": chTown, "message": "hi"}, token)
	g, err = egress.New([]string{strings.TrimPrefix(s.srv.URL, "http://")}, egress.Options{}) // loopback without allow_private_network
	if err != nil {
		t.Fatal(err)
	}
	c.Egress = g
	_, err = h.Invoke(context.Background(), c)
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)

	if s.hits.Load() != 0 {
		t.Fatalf("server contacted %d times", s.hits.Load())
	}
}

func TestEchoedTokenRedacted(t *testing.T) {
	token := drivertest.Canary(t)
	s := newServer(t, token)
	h := drivertest.New(t, mattermost.New())
	out, err := h.Invoke(context.Background(), s.call(t, "chat.read", map[string]any{"channel_id": chEcho}, token))
	if err != nil {
		t.Fatal(err)
	}
	drivertest.NoLeak(t, out, err, token)
	if strings.Count(string(out), driverkit.Redacted) != 2 {
		t.Fatalf("want two redactions in %s", out)
	}
}

func TestScope(t *testing.T) {
	d := mattermost.New()
	sc, err := d.EgressScope(json.RawMessage(`{"server_url":"https://Chat.Example.com/mm"}`))
	if err != nil || len(sc.Hosts) != 1 || sc.Hosts[0] != "chat.example.com:443" || sc.AllowPrivate {
		t.Fatalf("scope = %+v, %v", sc, err)
	}
	for _, bad := range []string{`{"server_url":"ftp://x.example"}`, `{"server_url":"https://u:p@x.example"}`, `{"server_url":"https://x.example/?a=1"}`, `{}`} {
		if _, err := d.EgressScope(json.RawMessage(bad)); err == nil {
			t.Errorf("config %s accepted", bad)
		}
	}
}
