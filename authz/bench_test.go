package authz

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// BenchmarkDecide measures Decide against policies of 1k, 10k and 100k
// rules (ten rules per user, a few of them conditional or deny rules):
// "hit" is answered from the decision cache, "miss" evaluates every time
// (cache off), "miss-new-caller" also compiles the caller's rules (first
// request of a caller after a policy change), "hit-parallel" is hits from
// all CPUs at once. The engine's BenchmarkDecide measures the same
// policies against Casbin, in the same run.
func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			pool := pgtest.Pool(b)
			users, project := benchPolicy(b, pool, n)
			u := users[len(users)/2]
			req := Request{
				Subject:  u,
				Action:   ActionSend,
				Resource: OperationResource(u, "echo", uuid.New(), "send"),
				Task:     callctx.TaskContext{ProjectID: project, TaskID: uuid.NewString(), AgentID: "planner"},
			}
			check := func(b *testing.B, a *Authorizer) {
				b.Helper()
				if d := decide(b, a, req); !d.Allowed {
					b.Fatalf("benchmark request denied: %+v", d)
				}
			}

			cached := newAuthz(b, pool, WithoutWatcher())
			check(b, cached)
			b.Run("hit", func(b *testing.B) {
				for b.Loop() {
					_, _ = cached.Decide(ctx, req)
				}
			})
			b.Run("hit-parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						_, _ = cached.Decide(ctx, req)
					}
				})
			})
			uncached := newAuthz(b, pool, WithoutWatcher(), WithCacheSize(0))
			check(b, uncached)
			b.Run("miss", func(b *testing.B) {
				for b.Loop() {
					_, _ = uncached.Decide(ctx, req)
				}
			})
			// A caller seen for the first time in this policy version: its
			// rules are compiled too.
			cold := newAuthz(b, pool, WithoutWatcher(), WithCacheSize(0), withSubjectCache(0))
			check(b, cold)
			b.Run("miss-new-caller", func(b *testing.B) {
				for b.Loop() {
					_, _ = cold.Decide(ctx, req)
				}
			})
		})
	}
}

// benchPolicy stores n rules, ten per user (a few of them conditional or
// deny rules), and returns the users and the project the conditional ones
// name.
func benchPolicy(b *testing.B, pool *pgxpool.Pool, n int) ([]callctx.Subject, string) {
	b.Helper()
	project := uuid.NewString()
	users := make([]callctx.Subject, n/10)
	rows := make([][]any, 0, n)
	for i := range n {
		if i%10 == 0 {
			users[i/10] = randUser()
		}
		u := users[i/10]
		own := OwnerResource(u)
		var r Rule
		switch i % 10 {
		case 0:
			r = allow(u, own+"/**", ActionRead)
		case 1:
			r = when(allow(u, own+"/echo/*/send", ActionSend), "project="+project+";task=required")
		case 2:
			r = when(deny(u, own+"/echo/"+uuid.NewString()+"/**", AnyAction), "agent=rogue")
		case 3:
			r = allow(u, ResourceCatalog, ActionCatalogRead)
		default:
			r = allow(u, own+"/web/"+uuid.NewString()+"/post", ActionSend)
		}
		rows = append(rows, []any{"p", r.Subject, r.Resource, r.Action, r.Cond, r.Effect})
	}
	_, err := pool.CopyFrom(context.Background(), pgx.Identifier{"casbin_rule"}, []string{"ptype", "v0", "v1", "v2", "v3", "v4"}, pgx.CopyFromRows(rows))
	if err != nil {
		b.Fatal(err)
	}
	return users, project
}

// BenchmarkPolicyLoad measures what every server pays on each policy
// change: reading the whole policy and building a snapshot (New, which
// also reads the version), at 1k, 10k and 100k rules.
func BenchmarkPolicyLoad(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			pool := pgtest.Pool(b)
			benchPolicy(b, pool, n)
			for b.Loop() {
				a, err := New(ctx, pool, WithoutWatcher(), WithLogger(quiet))
				if err != nil {
					b.Fatal(err)
				}
				a.Close()
			}
		})
	}
}
