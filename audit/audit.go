// Package audit keeps connec's audit trail: one append-only, hash-chained
// row for every call, allowed or denied, saying who, what, on which
// instance, for which task, the decision and its outcome — never arguments,
// results or secrets. A call whose row cannot be written fails.
//
// Rows form one chain in seq order: each row's hash covers a canonical
// encoding of all its fields and the previous row's hash, and seq is
// assigned gap-free under the chain lock (the audit_chain_head row, locked in
// the inserting transaction), so several servers on one database append to
// one chain. Verify walks it and names the first broken link; Export writes
// rows as JSON Lines.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/metrics"
)

// Decision values.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Status values.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// Errors.
var (
	// ErrClosed: Record was called after Close.
	ErrClosed = errors.New("audit: writer closed")
	// ErrInvalidEvent: the event cannot be stored as given.
	ErrInvalidEvent = errors.New("audit: invalid event")
	// ErrNoTransaction: Write or EnsurePartitions got a Querier that is
	// neither a transaction nor able to begin one.
	ErrNoTransaction = errors.New("audit: querier cannot run a transaction")
	// ErrChainBroken: Verify found a broken link (see Report.Err).
	ErrChainBroken = errors.New("audit: chain broken")
	// ErrMalformedRow: a stored row cannot be encoded (e.g. a non-uuid id).
	ErrMalformedRow = errors.New("audit: malformed row")
	// ErrUnknownHashVersion: a row names a hash version this build lacks.
	ErrUnknownHashVersion = errors.New("audit: unknown hash version")
	// ErrPartitionBlocked: a month's partition cannot be created because
	// rows for that month already sit in the default partition (they stay
	// there, fully part of the chain; later months are unaffected).
	ErrPartitionBlocked = errors.New("audit: rows for the month are in the default partition")
)

// Event is one audit row as a caller describes it. It never holds
// arguments, results or secrets. At is set to the current time when zero;
// it is stored with microsecond precision.
type Event struct {
	At            time.Time
	RequestID     string
	Transport     string
	Subject       callctx.Subject
	Groups        []callctx.Subject
	Action        string
	Tool          string
	ConnectorType string
	InstanceID    string
	Operation     string
	Resource      string
	Decision      string
	Reason        string
	PolicyVersion int64
	Task          callctx.TaskContext
	Status        string
	ErrorType     string
	Duration      time.Duration
	// Count is how many calls the row stands for (0 means 1). Only failed
	// authentications are aggregated (identity/authlimit): one row per
	// source and interval, its count the refusals it stands for.
	Count int64
}

// Defaults for a Writer.
const (
	DefaultMaxBatch          = 256
	DefaultQueue             = 4 * DefaultMaxBatch
	DefaultTimeout           = 10 * time.Second
	DefaultPartitionInterval = time.Hour
)

// Option configures a Writer.
type Option func(*Writer)

// WithLogger sets the writer's logger.
func WithLogger(l *slog.Logger) Option { return func(w *Writer) { w.log = l } }

// WithMaxBatch bounds how many Record calls share one transaction.
func WithMaxBatch(n int) Option { return func(w *Writer) { w.maxBatch = max(n, 1) } }

// WithTimeout bounds each group commit (waiting for the chain lock
// included); rows of a batch that times out fail.
func WithTimeout(d time.Duration) Option { return func(w *Writer) { w.timeout = d } }

// WithPartitionInterval sets how often the writer runs EnsurePartitions in
// the background (and it runs once in NewWriter); 0 turns it off.
func WithPartitionInterval(d time.Duration) Option {
	return func(w *Writer) { w.partitionEvery = d }
}

// withClock replaces time.Now (tests).
func withClock(now func() time.Time) Option { return func(w *Writer) { w.now = now } }

// Writer appends audit rows. Write appends in the caller's transaction.
// Record group-commits: calls that arrive while a commit is in flight go
// together in the next transaction (one chain lock, one multi-row insert,
// one commit); each call still returns only once its own row is durable.
// There is no commit goroutine: the caller that finds no commit in flight
// commits (the leader) and, when done, hands the lead to the oldest caller
// queued meanwhile, whose commit carries everything queued. So a lone call
// commits on its own goroutine instead of waking another twice per commit.
// Close stops it.
type Writer struct {
	pool           *pgxpool.Pool
	log            *slog.Logger
	now            func() time.Time
	maxBatch       int
	queueCap       int
	timeout        time.Duration
	partitionEvery time.Duration

	// head is where the last group commit left the chain (the leader's
	// alone); stale is set by Write, whose transaction may move it.
	head  chainHead
	stale atomic.Bool

	// qmu guards queue (rows waiting for a commit, oldest first), leading
	// (a caller commits or is about to) and closed; idle is signalled when
	// leading turns false. Whenever no one leads, queue is empty. slots
	// bounds the queue: a row holds one from when it queues until a commit
	// takes it.
	qmu     sync.Mutex
	idle    sync.Cond
	queue   []*request
	leading bool
	closed  bool
	slots   chan struct{}
	stop    context.CancelFunc
	maint   sync.WaitGroup
}

type request struct {
	row   *Row
	stmts []Stmt
	done  chan error
	turn  chan struct{} // the lead is handed to this caller
}

// stmtError is a failure of requests' own statements: of reqs (indexes in
// the batch), or, if ambiguous, of one or more of them (a merged insert).
type stmtError struct {
	reqs      []int
	ambiguous bool
	err       error
}

func (e *stmtError) Error() string { return e.err.Error() }
func (e *stmtError) Unwrap() error { return e.err }

// NewWriter returns a writer on pool (it has no commit goroutine). Unless
// turned off (WithPartitionInterval(0)) it also makes sure this and next
// month's partitions exist before returning — so the first rows do not land
// in the default partition and keep the month's partition from being
// created — logging, not failing, if it cannot, and then keeps them in the
// background. Call Close when done.
func NewWriter(pool *pgxpool.Pool, opts ...Option) *Writer {
	w := &Writer{
		pool: pool, log: slog.Default(), now: time.Now,
		maxBatch: DefaultMaxBatch, queueCap: DefaultQueue, timeout: DefaultTimeout, partitionEvery: DefaultPartitionInterval,
	}
	for _, o := range opts {
		o(w)
	}
	w.idle.L = &w.qmu
	w.slots = make(chan struct{}, max(w.queueCap, 1))
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	if w.partitionEvery > 0 {
		w.ensurePartitions(ctx)
		w.maint.Add(1)
		go w.upkeep(ctx)
	}
	return w
}

// Close stops accepting rows, writes every row already queued (their
// Record calls get the outcome as usual), and stops the writer's
// goroutines. Later Record calls return ErrClosed. Close is idempotent.
func (w *Writer) Close() {
	w.qmu.Lock()
	w.closed = true
	for w.leading {
		w.idle.Wait()
	}
	w.qmu.Unlock()
	w.stop()
	w.maint.Wait()
}

// Write appends ev in q's transaction, so a change and its row commit
// together or not at all. It takes the chain lock, which the transaction
// then holds until it ends, stalling every other audit write: call Write
// last, just before commit, and never call Record while holding it. If q is
// not a transaction (a pool or connection) Write runs one of its own.
func (w *Writer) Write(ctx context.Context, q db.Querier, ev Event) (err error) {
	defer func(start time.Time) { metrics.ObserveAuditWrite(time.Since(start), err) }(time.Now())
	r, err := newRow(ev, w.now())
	if err != nil {
		return err
	}
	w.stale.Store(true)
	err = inTx(ctx, q, func(tx pgx.Tx) error { return appendRows(ctx, tx, []*Row{r}) })
	if err != nil {
		return fmt.Errorf("write audit row: %w", db.Map(err))
	}
	return nil
}

// Record appends ev in a transaction of its own (shared with concurrent
// calls) and returns once the row is durable, or the error that kept it
// from being so. ctx bounds only a wait for room in the queue (the database
// is not keeping up): a row that finds room, or once queued, is written
// whatever happens to ctx, and Record waits for the outcome (bounded by the
// writer's timeout).
//
// stmts, if any, run in the same transaction, before the row: the change
// they make and the row commit together or not at all. If one fails, this
// call fails with its error and the rest of the batch commits without it.
// They run before the chain lock is taken and must not wait on anything a
// transaction holding it could wait on.
func (w *Writer) Record(ctx context.Context, ev Event, stmts ...Stmt) (err error) {
	defer func(start time.Time) { metrics.ObserveAuditWrite(time.Since(start), err) }(time.Now())
	r, err := newRow(ev, w.now())
	if err != nil {
		return err
	}
	req := &request{row: r, stmts: stmts, done: make(chan error, 1), turn: make(chan struct{}, 1)}
	select {
	case w.slots <- struct{}{}: // room in the queue: a canceled ctx does not matter
	default:
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("record audit row: %w", db.Map(ctx.Err()))
		}
	}
	w.qmu.Lock()
	if w.closed {
		w.qmu.Unlock()
		<-w.slots
		return ErrClosed
	}
	w.queue = append(w.queue, req)
	lead := !w.leading
	w.leading = true
	w.qmu.Unlock()
	if !lead {
		select {
		case err := <-req.done:
			return err
		case <-req.turn:
		}
	}
	w.lead()
	return <-req.done
}

// lead commits the queue's oldest rows (at most maxBatch; the leader's own
// is the oldest) as one, then hands the lead on.
func (w *Writer) lead() {
	w.qmu.Lock()
	n := min(len(w.queue), w.maxBatch)
	batch := slices.Clone(w.queue[:n])
	w.queue = slices.Delete(w.queue, 0, n)
	w.qmu.Unlock()
	for range batch {
		<-w.slots
	}
	defer w.handOff()
	defer func() {
		// A panic must not leave the lead held (every later row would
		// wait for ever) nor the batch's callers waiting.
		if p := recover(); p != nil {
			for _, r := range batch {
				select {
				case r.done <- fmt.Errorf("record audit row: commit failed: %v", p):
				default:
				}
			}
			panic(p)
		}
	}()
	w.flush(batch)
}

// handOff passes the lead to the oldest queued row's caller, or gives it up
// if none is queued.
func (w *Writer) handOff() {
	w.qmu.Lock()
	if len(w.queue) == 0 {
		w.leading = false
		w.idle.Broadcast()
		w.qmu.Unlock()
		return
	}
	next := w.queue[0]
	w.qmu.Unlock()
	next.turn <- struct{}{}
}

// queued is how many rows wait for a commit (tests).
func (w *Writer) queued() int {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return len(w.queue)
}

// flush commits batch and tells each caller the outcome. A request whose
// own statements fail gets their error and the others are committed
// without it (requests sharing a failed check all fail; a failed merged
// insert is retried request by request to find whose row it was). If the batch is refused for its rows' values rather than the
// database's state, each row is retried alone, so one bad row fails only
// its own call.
func (w *Writer) flush(batch []*request) {
	for len(batch) > 0 {
		err := w.commit(batch)
		var se *stmtError
		if errors.As(err, &se) && se.ambiguous && len(batch) > 1 {
			for _, r := range batch { // alone, nothing is merged: the failure is named
				w.flush([]*request{r})
			}
			return
		}
		if errors.As(err, &se) {
			failed := fmt.Errorf("record audit row: %w", db.Map(se.err))
			for _, i := range slices.Backward(se.reqs) {
				batch[i].done <- failed
				batch = slices.Delete(batch, i, i+1)
			}
			continue
		}
		if err != nil && len(batch) > 1 && isDataError(err) {
			w.log.Warn("audit batch refused; retrying its rows one by one", "rows", len(batch), "err", err)
			for _, r := range batch {
				w.flush([]*request{r})
			}
			return
		}
		if err != nil {
			w.log.Error("audit commit failed", "rows", len(batch), "err", err)
			err = fmt.Errorf("record audit row: %w", db.Map(err))
		}
		for _, r := range batch {
			r.done <- err
		}
		return
	}
}

func (w *Writer) commit(batch []*request) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	return w.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		if w.stale.Swap(false) {
			w.head.ok = false
		}
		if w.head.ok {
			err := appendAfter(ctx, c.Conn(), batch, &w.head)
			if !errors.Is(err, errHeadMoved) {
				return err
			}
			// Another writer appended since: read the head under the lock.
		}
		return appendOwnTx(ctx, c.Conn(), batch, &w.head)
	})
}

// chainHead is where the writer's last commit left the chain: the commit
// loop's own state, valid only while ok.
type chainHead struct {
	seq  int64
	hash Hash
	ok   bool
}

// errHeadMoved: the chain head was not where the writer left it.
var errHeadMoved = errors.New("audit chain head moved")

// appendRows takes the chain lock in tx, links rows after the head and
// inserts them, moving the head.
func appendRows(ctx context.Context, tx pgx.Tx, rows []*Row) error {
	var seq int64
	var head []byte
	if err := tx.QueryRow(ctx, lockHeadSQL).Scan(&seq, &head); err != nil {
		return fmt.Errorf("lock audit chain: %w", err)
	}
	b, _, err := queueAppend(&pgx.Batch{}, rows, seq, head)
	if err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("insert audit rows: %w", err)
	}
	return nil
}

// queueAppend links rows after (seq, head) and queues the statements that
// move the head and insert them. It returns the new head.
func queueAppend(b *pgx.Batch, rows []*Row, seq int64, head Hash) (*pgx.Batch, chainHead, error) {
	last, lastHash, err := link(rows, seq, head)
	if err != nil {
		return nil, chainHead{}, err
	}
	sql, args := insertStatement(rows)
	b.Queue(advanceSQL, seq, []byte(head), last, []byte(lastHash))
	b.Queue(sql, args...)
	return b, chainHead{seq: last, hash: lastHash, ok: true}, nil
}

func rowsOf(batch []*request) []*Row {
	rows := make([]*Row, len(batch))
	for i, r := range batch {
		rows[i] = r.row
	}
	return rows
}

// appendAfter commits batch in one round trip, in one implicit transaction
// (the pipeline's statements up to its one Sync): each request's
// statements, the head moved from where this writer left it (the chain
// lock), the rows linked after it. If another writer moved the head
// meanwhile, nothing is committed and it returns errHeadMoved. head is
// updated on success and marked unknown otherwise.
func appendAfter(ctx context.Context, conn *pgx.Conn, batch []*request, head *chainHead) error {
	from := *head
	head.ok = false
	b := &pgx.Batch{}
	units := planStmts(batch)
	queueUnits(b, units)
	b, next, err := queueAppend(b, rowsOf(batch), from.seq, from.hash)
	if err != nil {
		return err
	}
	br := conn.SendBatch(ctx, b)
	err = func() error {
		if err := execUnits(br, units); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == headMovedCode {
				return errHeadMoved
			}
			return fmt.Errorf("move audit chain head: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("insert audit rows: %w", err)
		}
		return nil
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("commit audit rows: %w", cerr)
	}
	if err != nil {
		return err
	}
	*head = next
	return nil
}

// appendOwnTx commits batch — each request's statements, then its row — in
// a transaction of its own on conn that reads the head under the chain
// lock, in two round trips: BEGIN, the statements and the chain lock, then
// the head moved and the rows inserted with COMMIT. If it fails midway the
// transaction is rolled back; should even that fail, the pool discards the
// connection (it is not idle). A failing statement is reported as a
// *stmtError naming its request. head is updated on success and marked
// unknown otherwise.
func appendOwnTx(ctx context.Context, conn *pgx.Conn, batch []*request, head *chainHead) (err error) {
	head.ok = false
	defer func() {
		if err != nil && !conn.IsClosed() && conn.PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_, _ = conn.Exec(rctx, "ROLLBACK")
		}
	}()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	units := planStmts(batch)
	queueUnits(b, units)
	b.Queue(lockHeadSQL)
	br := conn.SendBatch(ctx, b)
	var seq int64
	var hash []byte
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if err := execUnits(br, units); err != nil {
			return err
		}
		if err := br.QueryRow().Scan(&seq, &hash); err != nil {
			return fmt.Errorf("lock audit chain: %w", err)
		}
		return nil
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	b, next, err := queueAppend(&pgx.Batch{}, rowsOf(batch), seq, hash)
	if err != nil {
		return err
	}
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		if ct.String() != "COMMIT" {
			return fmt.Errorf("commit audit rows: server answered %q", ct)
		}
		return nil
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("insert audit rows: %w", err)
	}
	*head = next
	return nil
}

// isDataError reports whether PostgreSQL refused err's statement for the
// values in it (data exception or integrity constraint).
func isDataError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code[:2] == "22" || pe.Code[:2] == "23")
}

type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// inTx runs fn in q if q is a transaction, else in a transaction q begins.
func inTx(ctx context.Context, q db.Querier, fn func(tx pgx.Tx) error) error {
	if tx, ok := q.(pgx.Tx); ok {
		return fn(tx)
	}
	b, ok := q.(beginner)
	if !ok {
		return fmt.Errorf("%w: %T", ErrNoTransaction, q)
	}
	return pgx.BeginFunc(ctx, b, fn)
}

// upkeep keeps the current and next month's partitions.
func (w *Writer) upkeep(ctx context.Context) {
	defer w.maint.Done()
	t := time.NewTicker(w.partitionEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.ensurePartitions(ctx)
		}
	}
}

func (w *Writer) ensurePartitions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if err := EnsurePartitions(ctx, w.pool, w.now()); err != nil && ctx.Err() == nil {
		w.log.Warn("audit partition upkeep failed; rows go to the default partition meanwhile", "err", err)
	}
}
