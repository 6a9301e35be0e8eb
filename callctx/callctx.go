// Package callctx carries who is calling, for which task, and the request id
// through a context.Context. Transports put these on the context; the core
// reads them. It holds no logic beyond parsing and validating the values.
package callctx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
)

// Subject is a typed principal id: "user:<uuid>" or "group:<uuid>".
type Subject string

// Kinds of subject.
const (
	KindUser  = "user"
	KindGroup = "group"
)

// Anonymous is the subject recorded for unauthenticated calls.
const Anonymous Subject = "anonymous"

// UserSubject returns the subject for a user id.
func UserSubject(id uuid.UUID) Subject { return Subject(KindUser + ":" + id.String()) }

// GroupSubject returns the subject for a group id.
func GroupSubject(id uuid.UUID) Subject { return Subject(KindGroup + ":" + id.String()) }

// ParseSubject validates s as "user:<uuid>" or "group:<uuid>" and returns it
// in canonical (lower-case uuid) form.
func ParseSubject(s string) (Subject, error) {
	kind, id, ok := strings.Cut(s, ":")
	if !ok || (kind != KindUser && kind != KindGroup) {
		return "", fmt.Errorf("subject %q: want user:<uuid> or group:<uuid>", s)
	}
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return "", fmt.Errorf("subject %q: id is not a uuid", s)
	}
	return Subject(kind + ":" + u.String()), nil
}

// Kind returns "user" or "group".
func (s Subject) Kind() string { k, _, _ := strings.Cut(string(s), ":"); return k }

// ID returns the uuid part of the subject.
func (s Subject) ID() uuid.UUID {
	_, id, _ := strings.Cut(string(s), ":")
	u, _ := uuid.Parse(id)
	return u
}

// Principal is an authenticated caller: its subject, the groups it belongs to
// (resolved when it authenticated) and the transport it came through.
type Principal struct {
	Subject   Subject
	Name      string
	Groups    []Subject
	Transport string
	// TokenID is the API token the principal authenticated with (empty when
	// it acts as a configured subject): the commit that lets an operation
	// start checks that it is still valid.
	TokenID string
	// Bound is the task context the principal's token is bound to (a
	// task-bound token); a call may add to it, never change it.
	Bound TaskContext
}

// TaskContext says which task a call runs for. All fields optional; TaskID,
// ProjectID, RunID and JobID are uuids, AgentID a short identifier.
type TaskContext struct {
	TaskID    string `json:"task_id,omitempty" schema:"format=uuid"`
	ProjectID string `json:"project_id,omitempty" schema:"format=uuid"`
	RunID     string `json:"run_id,omitempty" schema:"format=uuid"`
	JobID     string `json:"job_id,omitempty" schema:"format=uuid"`
	AgentID   string `json:"agent_id,omitempty" schema:"minLength=1,maxLength=128"`
	// Bound marks the fields that came from the caller's credentials (a
	// task-bound token) rather than from the call itself: only those cannot
	// be forged by the caller.
	Bound Bound `json:"-"`
}

// Bound is a set of task context fields.
type Bound uint8

// The task context fields, as members of a Bound set.
const (
	BoundTask Bound = 1 << iota
	BoundProject
	BoundRun
	BoundJob
	BoundAgent
)

// Has reports whether every field of f is in b.
func (b Bound) Has(f Bound) bool { return b&f == f }

// Fields names the fields in b (task_id, project_id, run_id, job_id,
// agent_id, in that order).
func (b Bound) Fields() []string {
	var out []string
	for i, name := range boundNames {
		if b&(1<<i) != 0 {
			out = append(out, name)
		}
	}
	return out
}

var boundNames = []string{"task_id", "project_id", "run_id", "job_id", "agent_id"}

// Present is the set of fields that are set.
func (t TaskContext) Present() Bound {
	var b Bound
	for i, v := range []string{t.TaskID, t.ProjectID, t.RunID, t.JobID, t.AgentID} {
		if v != "" {
			b |= 1 << i
		}
	}
	return b
}

// BindTo merges the task context a call claims (t) with the one its
// credentials are bound to: every bound field takes the bound value and is
// marked Bound; a call may add the fields its credentials leave open, but
// naming another value for a bound field is an error.
func (t TaskContext) BindTo(bound TaskContext) (TaskContext, error) {
	out := t
	for i, f := range []struct {
		dst *string
		v   string
	}{{&out.TaskID, bound.TaskID}, {&out.ProjectID, bound.ProjectID}, {&out.RunID, bound.RunID}, {&out.JobID, bound.JobID}, {&out.AgentID, bound.AgentID}} {
		if f.v == "" {
			continue
		}
		if *f.dst != "" && !strings.EqualFold(*f.dst, f.v) {
			return TaskContext{}, &FieldError{Field: boundNames[i], Msg: "is bound to your token (" + f.v + "); a call may add task details but not change them"}
		}
		*f.dst = f.v
		out.Bound |= 1 << i
	}
	return out, nil
}

// MetaKey is the key under a request's _meta that carries the task context.
const MetaKey = "connec.dev/task"

var agentRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$`)

// Empty reports whether no field is set.
func (t TaskContext) Empty() bool { return t == TaskContext{} }

// Validate checks each set field and returns the task context in canonical
// form (uuids lower-cased), or an error naming the first bad field.
func (t TaskContext) Validate() (TaskContext, error) {
	out := t
	for _, f := range []struct {
		name string
		v    *string
	}{{"task_id", &out.TaskID}, {"project_id", &out.ProjectID}, {"run_id", &out.RunID}, {"job_id", &out.JobID}} {
		if *f.v == "" {
			continue
		}
		u, err := uuid.Parse(*f.v)
		if err != nil || len(*f.v) != 36 {
			return TaskContext{}, &FieldError{Field: f.name, Msg: "must be a uuid"}
		}
		*f.v = u.String()
	}
	if out.AgentID != "" && !agentRe.MatchString(out.AgentID) {
		return TaskContext{}, &FieldError{Field: "agent_id", Msg: "must be 1-128 characters of letters, digits and ._:@/-"}
	}
	if out.TaskID == "" && (out.RunID != "" || out.JobID != "") {
		return TaskContext{}, &FieldError{Field: "task_id", Msg: "is required when run_id or job_id is given"}
	}
	return out, nil
}

// FieldError names a malformed field.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + " " + e.Msg }

// FromMap reads a task context from a decoded JSON object (the _meta value or
// tool arguments). Unknown keys are rejected so typos are not silently lost.
func FromMap(m map[string]any, allowOther bool) (TaskContext, error) {
	var t TaskContext
	for k, v := range m {
		var dst *string
		switch k {
		case "task_id":
			dst = &t.TaskID
		case "project_id":
			dst = &t.ProjectID
		case "run_id":
			dst = &t.RunID
		case "job_id":
			dst = &t.JobID
		case "agent_id":
			dst = &t.AgentID
		default:
			if allowOther {
				continue
			}
			return TaskContext{}, &FieldError{Field: k, Msg: "is not a task context field"}
		}
		s, ok := v.(string)
		if !ok {
			return TaskContext{}, &FieldError{Field: k, Msg: "must be a string"}
		}
		*dst = s
	}
	return t.Validate()
}

// Merge combines a task context from _meta with one from tool arguments.
// A field given in both must agree.
func Merge(a, b TaskContext) (TaskContext, error) {
	out := a
	pairs := []struct {
		name string
		dst  *string
		v    string
	}{{"task_id", &out.TaskID, b.TaskID}, {"project_id", &out.ProjectID, b.ProjectID}, {"run_id", &out.RunID, b.RunID}, {"job_id", &out.JobID, b.JobID}, {"agent_id", &out.AgentID, b.AgentID}}
	for _, p := range pairs {
		if p.v == "" {
			continue
		}
		if *p.dst != "" && *p.dst != p.v {
			return TaskContext{}, &FieldError{Field: p.name, Msg: "differs between _meta and arguments"}
		}
		*p.dst = p.v
	}
	return out, nil
}

type (
	principalKey struct{}
	taskKey      struct{}
	requestIDKey struct{}
)

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal on ctx, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p.Subject != ""
}

// WithTask returns ctx carrying t.
func WithTask(ctx context.Context, t TaskContext) context.Context {
	return context.WithValue(ctx, taskKey{}, t)
}

// TaskFrom returns the task context on ctx (zero if none).
func TaskFrom(ctx context.Context) TaskContext {
	t, _ := ctx.Value(taskKey{}).(TaskContext)
	return t
}

// WithRequestID returns ctx carrying id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id on ctx, or a fresh one.
func RequestID(ctx context.Context) string {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok && id != "" {
		return id
	}
	return NewRequestID()
}

// NewRequestID returns a random 16-byte hex id.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
