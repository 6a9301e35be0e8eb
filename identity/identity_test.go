package identity_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// wantFault fails t unless err is a fault of type want, and, when field is
// not empty, names field in its details.
func wantFault(t *testing.T, err error, want fault.Type, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", want)
	}
	fe := fault.As(err)
	if fe.Type != want {
		t.Fatalf("err = %v (type %s), want type %s", err, fe.Type, want)
	}
	if field != "" && fe.Details["field"] != field {
		t.Fatalf("err = %v names field %v, want %q", err, fe.Details["field"], field)
	}
}

func newStore(t *testing.T) (*identity.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.Pool(t)
	return identity.New(pool), pool
}

func TestCreateUser(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	long := strings.Repeat("a", 64)
	tests := []struct {
		name    string
		in      string
		wantErr fault.Type
	}{
		{"simple", "alice", ""},
		{"one char", "b", ""},
		{"punctuation", "C.d_e-1", ""},
		{"64 chars", long, ""},
		{"32 hex is a name", "d41d8cd98f00b204e9800998ecf8427e", ""},
		{"duplicate", "alice", fault.Conflict},
		{"empty", "", fault.InvalidArgument},
		{"leading dash", "-x", fault.InvalidArgument},
		{"leading dot", ".x", fault.InvalidArgument},
		{"space", "a b", fault.InvalidArgument},
		{"colon", "user:x", fault.InvalidArgument},
		{"65 chars", long + "a", fault.InvalidArgument},
		{"non-ascii", "zoë", fault.InvalidArgument},
		{"uuid-shaped", uuid.NewString(), fault.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := s.CreateUser(ctx, tt.in)
			if tt.wantErr != "" {
				field := ""
				if tt.wantErr == fault.InvalidArgument {
					field = "name"
				}
				wantFault(t, err, tt.wantErr, field)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Name != tt.in || u.ID == uuid.Nil || u.LocalOperator || u.CreatedAt.IsZero() {
				t.Fatalf("user = %+v", u)
			}
		})
	}
	t.Run("conflict message names the user", func(t *testing.T) {
		_, err := s.CreateUser(ctx, "alice")
		if got := fault.PublicOf(err).Message; !strings.Contains(got, `"alice"`) {
			t.Fatalf("message = %q", got)
		}
	})
}

func TestResolveUser(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	alice, err := s.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	hexName, err := s.CreateUser(ctx, "d41d8cd98f00b204e9800998ecf8427e")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ref     string
		want    uuid.UUID
		wantErr fault.Type
	}{
		{"by name", "alice", alice.ID, ""},
		{"by subject", string(alice.Subject()), alice.ID, ""},
		{"by uuid", alice.ID.String(), alice.ID, ""},
		{"by upper-case uuid", strings.ToUpper(alice.ID.String()), alice.ID, ""},
		{"by upper-case subject uuid", "user:" + strings.ToUpper(alice.ID.String()), alice.ID, ""},
		{"hex name is a name", hexName.Name, hexName.ID, ""},
		{"unknown name", "bob", uuid.Nil, fault.NotFound},
		{"unknown uuid", uuid.NewString(), uuid.Nil, fault.NotFound},
		{"unknown subject", "user:" + uuid.NewString(), uuid.Nil, fault.NotFound},
		{"case matters in names", "Alice", uuid.Nil, fault.NotFound},
		{"group subject", "group:" + alice.ID.String(), uuid.Nil, fault.InvalidArgument},
		{"bad subject", "user:nope", uuid.Nil, fault.InvalidArgument},
		{"bad kind", "robot:" + alice.ID.String(), uuid.Nil, fault.InvalidArgument},
		{"bad name", "no such user", uuid.Nil, fault.InvalidArgument},
		{"empty", "", uuid.Nil, fault.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := s.ResolveUser(ctx, tt.ref)
			if tt.wantErr != "" {
				field := ""
				if tt.wantErr == fault.InvalidArgument {
					field = "user"
				}
				wantFault(t, err, tt.wantErr, field)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.ID != tt.want {
				t.Fatalf("resolved %q to %v, want %v", tt.ref, u.ID, tt.want)
			}
		})
	}
}

func TestGroups(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	eng, err := s.CreateGroup(ctx, "eng")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateGroup(ctx, "Ops"); err != nil {
		t.Fatal(err)
	}
	alice, err := s.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("create", func(t *testing.T) {
		for _, tt := range []struct {
			name    string
			in      string
			wantErr fault.Type
		}{
			{"ok", "sre", ""},
			{"duplicate", "eng", fault.Conflict},
			{"same name as a user is fine", "alice", ""},
			{"invalid", "bad/name", fault.InvalidArgument},
			{"uuid-shaped", uuid.NewString(), fault.InvalidArgument},
		} {
			t.Run(tt.name, func(t *testing.T) {
				g, err := s.CreateGroup(ctx, tt.in)
				if tt.wantErr != "" {
					wantFault(t, err, tt.wantErr, "")
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if g.Name != tt.in || g.ID == uuid.Nil {
					t.Fatalf("group = %+v", g)
				}
			})
		}
	})
	t.Run("resolve", func(t *testing.T) {
		for _, tt := range []struct {
			name    string
			ref     string
			wantErr fault.Type
		}{
			{"by name", "eng", ""},
			{"by subject", string(eng.Subject()), ""},
			{"by uuid", eng.ID.String(), ""},
			{"unknown", "nope", fault.NotFound},
			{"user subject", string(alice.Subject()), fault.InvalidArgument},
		} {
			t.Run(tt.name, func(t *testing.T) {
				g, err := s.ResolveGroup(ctx, tt.ref)
				if tt.wantErr != "" {
					wantFault(t, err, tt.wantErr, "")
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if g.ID != eng.ID {
					t.Fatalf("resolved %q to %v, want %v", tt.ref, g.ID, eng.ID)
				}
			})
		}
	})
	t.Run("list", func(t *testing.T) {
		gs, err := s.ListGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, g := range gs {
			names = append(names, g.Name)
		}
		// ORDER BY name uses the database collation; just check the set.
		if len(names) != 4 {
			t.Fatalf("groups = %v", names)
		}
	})
}

// mirrorRows counts the casbin_rule 'g' rows linking user to group.
func mirrorRows(t *testing.T, q db.Querier, user, group callctx.Subject) int {
	t.Helper()
	var n int
	err := q.QueryRow(context.Background(),
		`SELECT count(*) FROM casbin_rule WHERE ptype = 'g' AND v0 = $1 AND v1 = $2`, string(user), string(group)).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMembership(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	eng, _ := s.CreateGroup(ctx, "eng")
	ops, _ := s.CreateGroup(ctx, "ops")
	alice, _ := s.CreateUser(ctx, "alice")
	bob, _ := s.CreateUser(ctx, "bob")

	t.Run("add", func(t *testing.T) {
		for _, tt := range []struct {
			name      string
			group     uuid.UUID
			user      uuid.UUID
			wantAdded bool
			wantErr   fault.Type
		}{
			{"alice to eng", eng.ID, alice.ID, true, ""},
			{"again is a no-op", eng.ID, alice.ID, false, ""},
			{"bob to eng", eng.ID, bob.ID, true, ""},
			{"alice to ops", ops.ID, alice.ID, true, ""},
			{"unknown group", uuid.New(), alice.ID, false, fault.NotFound},
			{"unknown user", eng.ID, uuid.New(), false, fault.NotFound},
			{"swapped ids", alice.ID, eng.ID, false, fault.NotFound},
		} {
			t.Run(tt.name, func(t *testing.T) {
				added, err := s.AddMember(ctx, tt.group, tt.user)
				if tt.wantErr != "" {
					wantFault(t, err, tt.wantErr, "")
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if added != tt.wantAdded {
					t.Fatalf("added = %v, want %v", added, tt.wantAdded)
				}
				if n := mirrorRows(t, pool, callctx.UserSubject(tt.user), callctx.GroupSubject(tt.group)); n != 1 {
					t.Fatalf("casbin_rule mirror rows = %d, want 1", n)
				}
			})
		}
	})
	t.Run("list", func(t *testing.T) {
		members, err := s.ListMembers(ctx, eng.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != 2 || members[0].ID != alice.ID || members[1].ID != bob.ID {
			t.Fatalf("members of eng = %+v", members)
		}
		groups, err := s.GroupsOf(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(groups) != 2 || groups[0].ID != eng.ID || groups[1].ID != ops.ID {
			t.Fatalf("groups of alice = %+v", groups)
		}
		_, err = s.ListMembers(ctx, uuid.New())
		wantFault(t, err, fault.NotFound, "")
		_, err = s.GroupsOf(ctx, uuid.New())
		wantFault(t, err, fault.NotFound, "")
	})
	t.Run("remove", func(t *testing.T) {
		if err := s.RemoveMember(ctx, eng.ID, bob.ID); err != nil {
			t.Fatal(err)
		}
		if n := mirrorRows(t, pool, bob.Subject(), eng.Subject()); n != 0 {
			t.Fatalf("casbin_rule mirror rows after remove = %d, want 0", n)
		}
		if n := mirrorRows(t, pool, alice.Subject(), eng.Subject()); n != 1 {
			t.Fatalf("alice's mirror row went too: %d", n)
		}
		wantFault(t, s.RemoveMember(ctx, eng.ID, bob.ID), fault.NotFound, "")
		members, err := s.ListMembers(ctx, eng.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != 1 || members[0].ID != alice.ID {
			t.Fatalf("members of eng = %+v", members)
		}
	})
	t.Run("in a rolled-back transaction", func(t *testing.T) {
		errRollback := errors.New("roll back")
		err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
			if _, err := identity.AddMember(ctx, tx, ops.ID, bob.ID); err != nil {
				return err
			}
			if n := mirrorRows(t, tx, bob.Subject(), ops.Subject()); n != 1 {
				t.Errorf("mirror rows inside tx = %d, want 1", n)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
		if n := mirrorRows(t, pool, bob.Subject(), ops.Subject()); n != 0 {
			t.Fatalf("mirror rows after rollback = %d, want 0", n)
		}
	})
}

func TestPrincipalFor(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	alice, _ := s.CreateUser(ctx, "alice")
	loner, _ := s.CreateUser(ctx, "loner")
	var want []callctx.Subject
	for _, name := range []string{"c", "a", "b", "d"} {
		g, err := s.CreateGroup(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddMember(ctx, g.ID, alice.ID); err != nil {
			t.Fatal(err)
		}
		want = append(want, g.Subject())
	}
	tests := []struct {
		name       string
		subject    callctx.Subject
		wantName   string
		wantGroups int
		wantErr    fault.Type
	}{
		{"member of four", alice.Subject(), "alice", 4, ""},
		{"no groups", loner.Subject(), "loner", 0, ""},
		{"upper-case subject", callctx.Subject("user:" + strings.ToUpper(alice.ID.String())), "alice", 4, ""},
		{"unknown user", callctx.UserSubject(uuid.New()), "", 0, fault.NotFound},
		{"group", want[0], "", 0, fault.InvalidArgument},
		{"malformed", "alice", "", 0, fault.InvalidArgument},
		{"anonymous", callctx.Anonymous, "", 0, fault.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.PrincipalFor(ctx, tt.subject)
			if tt.wantErr != "" {
				wantFault(t, err, tt.wantErr, "")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tt.wantName || len(p.Groups) != tt.wantGroups || p.Groups == nil {
				t.Fatalf("principal = %+v", p)
			}
			if p.Subject != callctx.Subject(strings.ToLower(string(tt.subject))) {
				t.Fatalf("subject = %q, want canonical form of %q", p.Subject, tt.subject)
			}
			for i := 1; i < len(p.Groups); i++ {
				if p.Groups[i-1] >= p.Groups[i] {
					t.Fatalf("groups not sorted: %v", p.Groups)
				}
			}
		})
	}
}

func TestEnsureLocalOperator(t *testing.T) {
	ctx := context.Background()
	t.Run("idempotent", func(t *testing.T) {
		s, _ := newStore(t)
		first, created, err := s.EnsureLocalOperator(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !created || !first.LocalOperator || first.Name != identity.LocalOperatorName {
			t.Fatalf("first call: user %+v, created %v", first, created)
		}
		for range 3 {
			again, created, err := s.EnsureLocalOperator(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if created || again != first {
				t.Fatalf("again: user %+v, created %v; want %+v, false", again, created, first)
			}
		}
	})
	t.Run("renamed operator is still found", func(t *testing.T) {
		s, pool := newStore(t)
		op, _, err := s.EnsureLocalOperator(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `UPDATE users SET name = 'me' WHERE id = $1`, op.ID); err != nil {
			t.Fatal(err)
		}
		again, created, err := s.EnsureLocalOperator(ctx)
		if err != nil || created || again.ID != op.ID || again.Name != "me" {
			t.Fatalf("got %+v, %v, %v", again, created, err)
		}
	})
	t.Run("name held by an ordinary user", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.CreateUser(ctx, identity.LocalOperatorName); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.EnsureLocalOperator(ctx)
		wantFault(t, err, fault.Conflict, "")
		if !errors.Is(err, identity.ErrLocalOperatorName) {
			t.Fatalf("err = %v, want it to wrap ErrLocalOperatorName", err)
		}
	})
	t.Run("concurrent processes", func(t *testing.T) {
		for round := range 5 {
			// Separate pools on one database stand in for separate processes.
			url := pgtest.URL(t)
			const callers = 8
			stores := make([]*identity.Store, callers)
			for i := range stores {
				pool, err := pgxpool.New(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(pool.Close)
				if err := pool.Ping(ctx); err != nil {
					t.Fatal(err)
				}
				stores[i] = identity.New(pool)
			}
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				users   [callers]identity.User
				created [callers]bool
				errs    [callers]error
			)
			for i, s := range stores {
				wg.Go(func() {
					<-start
					users[i], created[i], errs[i] = s.EnsureLocalOperator(ctx)
				})
			}
			close(start)
			wg.Wait()
			nCreated := 0
			for i := range callers {
				if errs[i] != nil {
					t.Fatalf("round %d caller %d: %v", round, i, errs[i])
				}
				if users[i].ID != users[0].ID {
					t.Fatalf("round %d: callers disagree: %v vs %v", round, users[i].ID, users[0].ID)
				}
				if created[i] {
					nCreated++
				}
			}
			if nCreated != 1 {
				t.Fatalf("round %d: %d callers report creating the operator, want 1", round, nCreated)
			}
			us, err := stores[0].ListUsers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(us) != 1 || !us[0].LocalOperator {
				t.Fatalf("round %d: users = %+v, want the one operator", round, us)
			}
		}
	})
}

// Names names the users and groups among a page's subjects in one query and
// leaves out what is not a user or group.
func TestNames(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	alice, err := s.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	ops, err := s.CreateGroup(ctx, "ops")
	if err != nil {
		t.Fatal(err)
	}
	gone := callctx.UserSubject(uuid.New())
	upper := callctx.Subject("user:" + strings.ToUpper(alice.ID.String()))
	got, err := s.Names(ctx, []callctx.Subject{alice.Subject(), ops.Subject(), gone, callctx.Anonymous, "cli:root", alice.Subject(), upper})
	if err != nil {
		t.Fatal(err)
	}
	want := map[callctx.Subject]string{alice.Subject(): "alice", ops.Subject(): "ops"}
	if len(got) != len(want) || got[alice.Subject()] != "alice" || got[ops.Subject()] != "ops" {
		t.Fatalf("names: %v, want %v", got, want)
	}
	if none, err := s.Names(ctx, nil); err != nil || len(none) != 0 {
		t.Fatalf("no subjects: %v %v", none, err)
	}
}
