package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
)

// Server leases. A pending or running run — an async run, a send in flight
// — lives in the server that started it: only that server can finish its
// row. If it stops without doing so (killed, crashed, cut off from the
// database), nobody else would, and the run would report "running" for
// ever. So a server holds a lease (a row in connec_servers) that it renews,
// the open runs it starts carry the lease's id, and every server fails the
// open runs of any server whose lease ran out, with an audit row each. A
// server that finishes such a run late finds it failed and leaves it so
// (runFinish only moves open runs).

// DefaultLeaseTTL is how long a server's lease lasts unless renewed; it is
// renewed four times per TTL.
const DefaultLeaseTTL = time.Minute

// ToolRunReap is the audit row's tool for a run failed because the server
// running it stopped.
const ToolRunReap = "connector.run.reap"

// SubjectSystem is the audit subject of what connec does on its own.
const SubjectSystem callctx.Subject = "system:connec"

// reapMessage is the failed run's error message.
const reapMessage = "the server running it stopped before it finished; a send may or may not have been performed"

// lease is the server's lease: its id, once StartLease registered it.
type lease struct {
	mu       sync.Mutex
	id       string
	starting bool
}

// leaseID returns the id open runs are marked with ("" without a lease).
func (s *Service) leaseID() string {
	s.lease.mu.Lock()
	defer s.lease.mu.Unlock()
	return s.lease.id
}

// StartLease registers this server's lease (ttl ≤ 0: DefaultLeaseTTL) and
// then, until ctx ends, renews it every ttl/4 and fails the open runs of
// servers whose leases ran out. Open runs started before it carry no lease
// and are never failed this way. Call ReleaseLease once this server's own
// runs have ended.
func (s *Service) StartLease(ctx context.Context, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	s.lease.mu.Lock()
	if s.lease.id != "" || s.lease.starting {
		s.lease.mu.Unlock()
		return errors.New("lease already started")
	}
	s.lease.starting = true
	s.lease.mu.Unlock()
	defer func() {
		s.lease.mu.Lock()
		s.lease.starting = false
		s.lease.mu.Unlock()
	}()
	id := uuid.NewString()
	host, _ := os.Hostname()
	renew := func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `INSERT INTO connec_servers (id, host, pid, expires_at) VALUES ($1, $2, $3, now() + $4::interval)
ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at`, id, host, os.Getpid(), ttl.String())
		return db.Map(err)
	}
	if err := renew(ctx); err != nil {
		return fmt.Errorf("register server lease: %w", err)
	}
	s.lease.mu.Lock()
	s.lease.id = id
	s.lease.mu.Unlock()
	s.log.Info("server lease held", "server", id, "ttl", ttl)
	go func() {
		t := time.NewTicker(ttl / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(ctx, ttl/4)
			if err := renew(rctx); err != nil {
				s.log.Warn("server lease not renewed; other servers fail this server's open runs once it runs out", "server", id, "err", err)
			}
			if n, err := s.ReapExpired(rctx); err != nil {
				s.log.Warn("failing the runs of stopped servers", "err", err)
			} else if n > 0 {
				s.log.Warn("failed the open runs of stopped servers", "runs", n)
			}
			cancel()
		}
	}()
	return nil
}

// ReleaseLease gives the lease back if none of this server's runs is still
// open (otherwise it stays, runs out, and another server fails them).
func (s *Service) ReleaseLease(ctx context.Context) error {
	id := s.leaseID()
	if id == "" {
		return nil
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM connec_servers s WHERE id = $1 AND NOT EXISTS
(SELECT FROM connector_runs WHERE server_id = s.id AND status IN ('pending', 'running'))`, id)
	if err != nil {
		return fmt.Errorf("release server lease: %w", db.Map(err))
	}
	return nil
}

// ReapExpired fails the open runs of every server whose lease ran out,
// writing one audit row per run in the same transaction, and forgets those
// servers. It returns how many runs it failed. Servers may call it
// concurrently: each run is failed, and audited, once.
func (s *Service) ReapExpired(ctx context.Context) (int, error) {
	n := 0
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE connector_runs r SET status = 'failed', error_type = $1, error_message = $2,
 finished_at = clock_timestamp(),
 duration_us = (extract(epoch FROM clock_timestamp() - COALESCE(r.started_at, r.created_at)) * 1e6)::bigint
FROM connec_servers srv
WHERE r.server_id = srv.id AND srv.expires_at < now() AND r.status IN ('pending', 'running')
RETURNING r.id::text, r.instance_id::text, r.connector_type, r.operation, r.subject,
 COALESCE(r.task_id::text, ''), COALESCE(r.project_id::text, ''), COALESCE(r.run_id::text, ''), COALESCE(r.job_id::text, ''),
 COALESCE(r.agent_id, ''), srv.id::text, srv.host, srv.pid`, string(fault.Unavailable), reapMessage)
		if err != nil {
			return db.Map(err)
		}
		var events []audit.Event
		for rows.Next() {
			var run, host, server, subject string
			var pid int
			ev := audit.Event{Transport: "internal", Subject: SubjectSystem, Tool: ToolRunReap, Decision: audit.Allow,
				Status: audit.StatusError, ErrorType: string(fault.Unavailable)}
			if err := rows.Scan(&run, &ev.InstanceID, &ev.ConnectorType, &ev.Operation, &subject, &ev.Task.TaskID,
				&ev.Task.ProjectID, &ev.Task.RunID, &ev.Task.JobID, &ev.Task.AgentID, &server, &host, &pid); err != nil {
				rows.Close()
				return db.Map(err)
			}
			ev.Reason = fmt.Sprintf("run %s (started by %s) failed: its server %s (%s, pid %d) stopped before finishing it; lease expired",
				run, subject, server, host, pid)
			events = append(events, ev)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return db.Map(err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM connec_servers srv WHERE expires_at < now() AND NOT EXISTS
(SELECT FROM connector_runs WHERE server_id = srv.id AND status IN ('pending', 'running'))`); err != nil {
			return db.Map(err)
		}
		// The audit rows last: Write holds this writer's chain row until commit.
		for _, ev := range events {
			if err := s.audit.Write(ctx, tx, ev); err != nil {
				return err
			}
		}
		n = len(events)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("fail the runs of stopped servers: %w", err)
	}
	return n, nil
}
