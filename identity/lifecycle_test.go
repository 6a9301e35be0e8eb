package identity_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
)

// A disabled user keeps its token, but neither the token nor its name
// authenticates until it is enabled again; disabling twice changes nothing.
func TestDisableUser(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	alice, err := s.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.CreateToken(ctx, alice.Subject(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		u, changed, err := s.SetUserDisabled(ctx, alice.ID, true)
		if err != nil || changed != (round == 0) || !u.Disabled() {
			t.Fatalf("disable (round %d): %+v changed %v, %v", round, u, changed, err)
		}
	}
	_, err = s.Authenticate(ctx, tok)
	if err := wantCause(err, identity.ErrUserDisabled); err != nil {
		t.Fatal(err)
	}
	_, err = s.PrincipalFor(ctx, alice.Subject())
	if !errors.Is(err, identity.ErrUserDisabled) || fault.As(err).Type != fault.Unauthenticated {
		t.Fatalf("PrincipalFor a disabled user: %v", err)
	}
	if got, err := s.GetUser(ctx, alice.ID); err != nil || !got.Disabled() {
		t.Fatalf("GetUser: %+v %v", got, err)
	}
	u, changed, err := s.SetUserDisabled(ctx, alice.ID, false)
	if err != nil || !changed || u.Disabled() {
		t.Fatalf("enable: %+v changed %v, %v", u, changed, err)
	}
	if p, err := s.Authenticate(ctx, tok); err != nil || p.Subject != alice.Subject() {
		t.Fatalf("the token after enabling: %v %v", p, err)
	}
	if _, _, err := s.SetUserDisabled(ctx, uuid.New(), true); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("disable an unknown user: %v", err)
	}
}

// A disabled group's members hold none of its rules: its membership links
// leave the policy, a member added meanwhile gets none, principals stop
// naming the group; enabling puts every link back.
func TestDisableGroup(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	alice, _ := s.CreateUser(ctx, "alice")
	bob, _ := s.CreateUser(ctx, "bob")
	ops, err := s.CreateGroup(ctx, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddMember(ctx, ops.ID, alice.ID); err != nil {
		t.Fatal(err)
	}
	g, changed, err := s.SetGroupDisabled(ctx, ops.ID, true)
	if err != nil || !changed || !g.Disabled() {
		t.Fatalf("disable: %+v %v %v", g, changed, err)
	}
	if _, err := s.AddMember(ctx, ops.ID, bob.ID); err != nil {
		t.Fatal(err)
	}
	for _, u := range []identity.User{alice, bob} {
		if n := mirrorRows(t, pool, u.Subject(), ops.Subject()); n != 0 {
			t.Fatalf("%s: %d membership links while the group is disabled", u.Name, n)
		}
		p, err := s.PrincipalFor(ctx, u.Subject())
		if err != nil || len(p.Groups) != 0 {
			t.Fatalf("%s's principal names a disabled group: %v %v", u.Name, p.Groups, err)
		}
	}
	if members, err := s.ListMembers(ctx, ops.ID); err != nil || len(members) != 2 {
		t.Fatalf("members of the disabled group: %v %v", members, err)
	}
	if _, changed, err := s.SetGroupDisabled(ctx, ops.ID, false); err != nil || !changed {
		t.Fatalf("enable: %v %v", changed, err)
	}
	for _, u := range []identity.User{alice, bob} {
		if n := mirrorRows(t, pool, u.Subject(), ops.Subject()); n != 1 {
			t.Fatalf("%s: %d membership links after enabling", u.Name, n)
		}
		p, err := s.PrincipalFor(ctx, u.Subject())
		if err != nil || len(p.Groups) != 1 || p.Groups[0] != ops.Subject() {
			t.Fatalf("%s's principal after enabling: %v %v", u.Name, p.Groups, err)
		}
	}
}

// Removing a user takes its tokens and memberships with it; removing a
// group takes its memberships; each says how many went.
func TestDeleteUserAndGroup(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	alice, _ := s.CreateUser(ctx, "alice")
	ops, _ := s.CreateGroup(ctx, "ops")
	if _, err := s.AddMember(ctx, ops.ID, alice.ID); err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.CreateToken(ctx, alice.Subject(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateToken(ctx, alice.Subject(), "second", 0); err != nil {
		t.Fatal(err)
	}
	u, tokens, err := s.DeleteUser(ctx, alice.ID)
	if err != nil || u.ID != alice.ID || tokens != 2 {
		t.Fatalf("DeleteUser: %+v %d %v", u, tokens, err)
	}
	if _, err := s.Authenticate(ctx, tok); fault.As(err).Type != fault.Unauthenticated {
		t.Fatalf("a removed user's token: %v", err)
	}
	if n := mirrorRows(t, pool, alice.Subject(), ops.Subject()); n != 0 {
		t.Fatalf("%d membership links of a removed user", n)
	}
	if _, _, err := s.DeleteUser(ctx, alice.ID); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("DeleteUser again: %v", err)
	}
	bob, _ := s.CreateUser(ctx, "bob")
	if _, err := s.AddMember(ctx, ops.ID, bob.ID); err != nil {
		t.Fatal(err)
	}
	g, members, err := s.DeleteGroup(ctx, ops.ID)
	if err != nil || g.ID != ops.ID || members != 1 {
		t.Fatalf("DeleteGroup: %+v %d %v", g, members, err)
	}
	if p, err := s.PrincipalFor(ctx, bob.Subject()); err != nil || len(p.Groups) != 0 {
		t.Fatalf("bob after his group went: %v %v", p.Groups, err)
	}
	if n := mirrorRows(t, pool, bob.Subject(), ops.Subject()); n != 0 {
		t.Fatalf("%d membership links of a removed group", n)
	}
	if _, _, err := s.DeleteGroup(ctx, ops.ID); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("DeleteGroup again: %v", err)
	}
}
