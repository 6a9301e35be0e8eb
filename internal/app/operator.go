package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/connectors/openclaw"
	"github.com/connec/connec/core"
	"github.com/connec/connec/executor"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
	"github.com/connec/connec/vault"
)

// Operator changes of tokens, keys and plugins. Each goes through the same
// audited path as the changes of users and policy (audited, outsideChange);
// a row names the token by id, the key by its key id (a hash of the public
// key) and the plugin by name and version — never the token or key itself.

// CreateToken issues an API token for a user (a name, user:<name|uuid> or
// uuid) and returns it, to be shown once. Only its hash is stored; the audit
// row names its id, label, expiry and user.
func (a *App) CreateToken(ctx context.Context, userRef, name string, ttl time.Duration, bound callctx.TaskContext) (string, identity.Token, error) {
	sub, err := a.ResolveSubject(ctx, userRef)
	if err != nil {
		return "", identity.Token{}, err
	}
	var plaintext string
	var t identity.Token
	err = a.adminChange(ctx, "token.create", "", func(tx pgx.Tx, ev *core.Note) error {
		var err error
		if plaintext, t, err = identity.CreateBoundToken(ctx, tx, sub, name, ttl, bound, ""); err != nil {
			return err
		}
		u, err := identity.GetUser(ctx, tx, sub.ID())
		if err != nil {
			return err
		}
		ev.Resource = "token:" + t.ID.String()
		ev.Reason = fmt.Sprintf("token %q for %s (%s), %s", t.Name, t.Subject, u.Name, expiry(t.ExpiresAt))
		if b := t.Bound.Present(); b != 0 {
			ev.Reason += ", bound to " + strings.Join(b.Fields(), ",")
		}
		return nil
	})
	if err != nil {
		return "", identity.Token{}, err
	}
	return plaintext, t, nil
}

func expiry(t time.Time) string {
	if t.IsZero() {
		return "no expiry"
	}
	return "expires " + t.UTC().Format(time.RFC3339)
}

// RevokeToken revokes a token by id; every server refuses it on its next
// request.
func (a *App) RevokeToken(ctx context.Context, id uuid.UUID) (identity.Token, error) {
	var t identity.Token
	err := a.adminChange(ctx, "token.revoke", "token:"+id.String(), func(tx pgx.Tx, ev *core.Note) error {
		var err error
		if t, err = identity.RevokeToken(ctx, tx, id); err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("revoked token %q of %s", t.Name, t.Subject)
		return nil
	})
	return t, err
}

// InitKey creates the key file (Cfg.KeyPath) with a new identity, audited,
// and returns its public recipient. An existing key file is never
// overwritten.
func (a *App) InitKey(ctx context.Context, hybrid bool) (string, error) {
	return a.createKey(ctx, hybrid, "")
}

// createKey creates the key file, audited; why, if not empty, says why it
// was not an operator's command.
func (a *App) createKey(ctx context.Context, hybrid bool, why string) (string, error) {
	path := a.Cfg.KeyPath()
	var recipient string
	err := a.outsideChange(ctx, "key.init", "", func(ev *core.Note) error {
		var err error
		if recipient, err = vault.GenerateKeyFile(path, hybrid); err != nil {
			return err
		}
		ev.Resource = "key:" + vault.KeyID(recipient)
		ev.Reason = fmt.Sprintf("created key file %s with key %s (%s)%s", path, vault.KeyID(recipient), keyKind(hybrid), why)
		return nil
	})
	return recipient, err
}

func keyKind(hybrid bool) string {
	if hybrid {
		return "post-quantum hybrid"
	}
	return "X25519"
}

// AddKey appends a new identity to the key file, audited, and returns its
// public recipient: it becomes the key new credentials are sealed to once
// servers reload the file.
func (a *App) AddKey(ctx context.Context, hybrid bool) (string, error) {
	path := a.Cfg.KeyPath()
	var recipient string
	err := a.outsideChange(ctx, "key.add", "", func(ev *core.Note) error {
		var err error
		if recipient, err = vault.AppendIdentity(path, hybrid); err != nil {
			return err
		}
		ev.Resource = "key:" + vault.KeyID(recipient)
		ev.Reason = fmt.Sprintf("added key %s (%s) to key file %s", vault.KeyID(recipient), keyKind(hybrid), path)
		return nil
	})
	return recipient, err
}

// RotateKeys rewraps every credential's data key to the current key (see
// executor.RotateKeys), audited as it starts (how many rows it will move)
// and as it ends (how many it moved, and whether it stopped on an error).
// Rows are rewrapped in batches of their own transactions, so one row
// cannot cover them: a rotation killed midway leaves its start row without
// an end, and the next run audits its own. It returns the rows rewrapped and
// the key id they now are wrapped by.
func (a *App) RotateKeys(ctx context.Context, o executor.RotateOptions) (int64, string, error) {
	recipient, to := a.Executor.Recipient()
	if recipient == "" {
		return 0, "", executor.ErrNoKeys
	}
	resource := "key:" + to
	var total int64
	err := a.audited(ctx, "key.rotate.start", resource, func(tx pgx.Tx, ev *core.Note) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM connector_credentials WHERE key_id <> $1`, to).Scan(&total); err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("start: %d credential(s) to rewrap to key %s", total, to)
		return nil
	})
	if err != nil {
		return 0, to, err
	}
	n, rerr := a.Executor.RotateKeys(ctx, a.Pool, o)
	// Written even when the rotation was interrupted (Ctrl-C).
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err = a.audited(ectx, "key.rotate.end", resource, func(_ pgx.Tx, ev *core.Note) error {
		ev.Reason = fmt.Sprintf("end: rewrapped %d credential(s) to key %s", n, to)
		if rerr != nil {
			ev.Err = rerr
			ev.Reason += fmt.Sprintf(", stopped by an error (%s); run it again to resume", fault.PublicOf(rerr).Type)
		}
		return nil
	})
	if rerr != nil {
		return n, to, rerr
	}
	return n, to, err
}

// InstallPlugin puts a staged, reviewed OpenClaw plugin in place, audited.
func (a *App) InstallPlugin(ctx context.Context, staged *openclaw.Staged) error {
	r := staged.Record
	return a.outsideChange(ctx, "openclaw.add", "openclaw:"+r.Name, func(ev *core.Note) error {
		if err := staged.Commit(); err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("installed %s@%s as connector type %s (integrity %s)", r.Package, r.Version, openclaw.TypeName(r.Manifest.ID), orNone(r.Integrity))
		return nil
	})
}

// RemovePlugin removes an installed OpenClaw plugin by name, audited.
func (a *App) RemovePlugin(ctx context.Context, name string) error {
	dir := openclaw.PluginsDir(a.Cfg.DataDir)
	if name == "" || name != filepath.Base(name) {
		return fmt.Errorf("openclaw: %q is not a plugin name", name)
	}
	r, err := openclaw.ReadRecord(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	return a.outsideChange(ctx, "openclaw.remove", "openclaw:"+name, func(ev *core.Note) error {
		if err := openclaw.Remove(dir, name); err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("removed %s@%s (connector type %s)", r.Package, r.Version, openclaw.TypeName(r.Manifest.ID))
		return nil
	})
}

// AddMCPServer puts a reviewed MCP server's record in place for the
// deployment (the database, in the transaction of its audit row) and in
// this data directory, audited: the servers of the deployment load it as
// connector type mcp-<name> when told. A server of that name must not
// exist yet (ApproveMCPServer replaces one).
func (a *App) AddMCPServer(ctx context.Context, rec mcpserver.Record) error {
	sc := &serverCatalog{a: a}
	if _, err := sc.read(ctx, rec.Name); err == nil {
		return fmt.Errorf("an MCP server called %s was added already: approve its changes (connec mcp approve) or remove it first", rec.Name)
	}
	return a.announcedChange(ctx, "mcp.add", "mcp:"+rec.Name, core.ServerChannel, "cli|"+rec.Name, func(tx pgx.Tx, ev *core.Note) error {
		if err := putServerRecord(ctx, tx, rec); err != nil {
			return err
		}
		if err := mcpserver.Save(sc.dir(), rec); err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("added MCP server %s at %s as connector type %s with %d tools", rec.Name, rec.Where(),
			mcpserver.TypeName(rec.Name), len(rec.Tools))
		return nil
	})
}

// ApproveMCPServer replaces an added server's record with a newly reviewed
// one (its tools as the server now serves them), audited with what changed.
func (a *App) ApproveMCPServer(ctx context.Context, rec mcpserver.Record, changes string) error {
	sc := &serverCatalog{a: a}
	if _, err := sc.read(ctx, rec.Name); err != nil {
		return err
	}
	return a.announcedChange(ctx, "mcp.approve", "mcp:"+rec.Name, core.ServerChannel, "cli|"+rec.Name, func(tx pgx.Tx, ev *core.Note) error {
		if err := putServerRecord(ctx, tx, rec); err != nil {
			return err
		}
		if err := mcpserver.Save(sc.dir(), rec); err != nil {
			return err
		}
		ev.Reason = fmt.Sprintf("approved the tools of MCP server %s as they are now: %s", rec.Name, changes)
		return nil
	})
}

// RemoveMCPServer removes an added MCP server, audited.
func (a *App) RemoveMCPServer(ctx context.Context, name string) error {
	sc := &serverCatalog{a: a}
	rec, err := sc.read(ctx, name)
	if err != nil {
		return err
	}
	return a.announcedChange(ctx, "mcp.remove", "mcp:"+name, core.ServerChannel, "cli|"+name, func(tx pgx.Tx, ev *core.Note) error {
		if err := dropServerRecord(ctx, tx, name); err != nil {
			return err
		}
		if err := mcpserver.Remove(sc.dir(), name); err != nil && !errors.Is(err, mcpserver.ErrNotAdded) {
			return err
		}
		ev.Reason = fmt.Sprintf("removed MCP server %s at %s (connector type %s)", name, rec.Where(), mcpserver.TypeName(name))
		return nil
	})
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
