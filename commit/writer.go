package commit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/metrics"
)

// ErrClosed: Record or Commit was called after Close.
var ErrClosed = errors.New("commit: writer closed")

// Defaults for a Writer.
const (
	DefaultMaxBatch          = 256
	DefaultQueue             = 4 * DefaultMaxBatch
	DefaultTimeout           = 10 * time.Second
	DefaultPartitionInterval = time.Hour
	// DefaultChainTTL is how long the writer's hold on its chain lasts
	// unless renewed (it is renewed four times as often).
	DefaultChainTTL = time.Minute
)

// Option configures a Writer.
type Option func(*Writer)

// WithLogger sets the writer's logger.
func WithLogger(l *slog.Logger) Option { return func(w *Writer) { w.log = l } }

// WithMaxBatch bounds how many units share one commit.
func WithMaxBatch(n int) Option { return func(w *Writer) { w.maxBatch = max(n, 1) } }

// WithTimeout bounds each group commit; the units of one that times out
// fail.
func WithTimeout(d time.Duration) Option { return func(w *Writer) { w.timeout = d } }

// WithPartitionInterval sets how often the writer runs
// audit.EnsurePartitions in the background (and it runs once in
// NewWriter); 0 turns it off.
func WithPartitionInterval(d time.Duration) Option {
	return func(w *Writer) { w.partitionEvery = d }
}

// WithChainTTL sets how long the writer's hold on its chain lasts unless
// renewed: after it stops, another writer continues its chain that much
// later at the latest.
func WithChainTTL(d time.Duration) Option { return func(w *Writer) { w.chainTTL = d } }

// withClock replaces time.Now (tests).
func withClock(now func() time.Time) Option { return func(w *Writer) { w.now = now } }

// Writer group-commits units: the units that arrive while a commit is in
// flight go together in the next commit (one round trip, one durable
// commit); each caller still returns only once its own unit is durable, or
// refused. There is no commit goroutine: the caller that finds no commit in
// flight commits itself (the leader), and when its commit is done hands
// the lead to the oldest caller that queued meanwhile, whose commit
// carries everything queued. So a lone caller commits on its own goroutine,
// without waking another twice per commit (measured: that hand-off was most
// of connec's CPU per call at concurrency 1), and under load each batch is
// still one round trip. It appends to a chain of its own
// (claimed on first use, released by Close), so writers of other servers
// never wait for it.
type Writer struct {
	pool           *pgxpool.Pool
	log            *slog.Logger
	now            func() time.Time
	maxBatch       int
	queueCap       int
	timeout        time.Duration
	partitionEvery time.Duration
	chainTTL       time.Duration
	holder, info   string

	// chain is the writer's chain (0 until claimed, or once lost) and
	// head where the commit loop last left it (valid while headOK);
	// stale is set by Write, whose transaction may move the head.
	mu      sync.Mutex
	claimMu sync.Mutex // held while claiming a chain (claim)
	chain   int64
	head    audit.Head
	headOK  bool
	stale   atomic.Bool

	// qmu guards the queue (units waiting for a commit, oldest first),
	// leading (a caller is committing or about to) and closed; idle is
	// signalled when leading turns false. Whenever no one leads, the
	// queue is empty. slots bounds the queue: a unit holds one from when
	// it queues until a commit takes it.
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
	unit Unit
	row  *audit.Row
	done chan error
	turn chan struct{} // the lead is handed to this caller
}

// NewWriter returns a writer on pool and starts its commit loop. Unless
// turned off (WithPartitionInterval(0)) it also makes sure this and next
// month's partitions exist before returning — so the first rows do not land
// in the default partition and keep the month's partition from being
// created — logging, not failing, if it cannot, and then keeps them in the
// background. Call Close when done.
func NewWriter(pool *pgxpool.Pool, opts ...Option) *Writer {
	host, _ := os.Hostname()
	w := &Writer{
		pool: pool, log: slog.Default(), now: time.Now,
		maxBatch: DefaultMaxBatch, queueCap: DefaultQueue, timeout: DefaultTimeout, partitionEvery: DefaultPartitionInterval,
		chainTTL: DefaultChainTTL, holder: uuid.NewString(), info: fmt.Sprintf("%s pid %d", host, os.Getpid()),
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
	}
	w.maint.Add(1)
	go w.upkeep(ctx)
	return w
}

// Close stops accepting units, commits every unit already queued (their
// callers get the outcome as usual), gives the writer's chain back and
// stops its goroutines. Later calls return ErrClosed. Close is idempotent.
func (w *Writer) Close() {
	w.qmu.Lock()
	first := !w.closed
	w.closed = true
	for w.leading {
		w.idle.Wait()
	}
	w.qmu.Unlock()
	w.stop()
	w.maint.Wait()
	if first {
		w.release()
	}
}

// Record commits ev alone (with whatever other units share its commit) and
// returns once it is durable, or the error that kept it from being so. See
// Commit.
func (w *Writer) Record(ctx context.Context, ev audit.Event) error {
	return w.Commit(ctx, Unit{Event: ev})
}

// Commit commits u — its audit row, and its run record if any, once its
// guard (if any) holds — in a commit shared with concurrent units, and
// returns once it is durable: nil, a *Refused naming what the guard found
// (nothing of u was written), or the error that kept it from being
// written. ctx bounds only a wait for room in the queue (the database is
// not keeping up): a unit that finds room, or once queued, is committed
// whatever happens to ctx, and Commit waits for the outcome (bounded by
// the writer's timeout).
func (w *Writer) Commit(ctx context.Context, u Unit) (err error) {
	defer func(start time.Time) { metrics.ObserveAuditWrite(time.Since(start), err) }(time.Now())
	r, err := audit.NewRow(u.Event, w.now())
	if err != nil {
		return err
	}
	req := &request{unit: u, row: r, done: make(chan error, 1), turn: make(chan struct{}, 1)}
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

// lead commits the queue's oldest units (at most maxBatch; the leader's own
// is the oldest) as one commit, then hands the lead to the oldest unit
// queued since, or gives it up if none is.
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
		// A panic must not leave the lead held (every later unit would
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

// handOff passes the lead to the oldest queued unit's caller, or gives it
// up if none is queued.
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

// queued is how many units wait for a commit (tests).
func (w *Writer) queued() int {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return len(w.queue)
}

// maxMoved is how often a test moves a chain under a waiting batch.
const maxMoved = 3

// flush commits batch and tells each caller the outcome. Units a guard
// refuses are told so and the rest committed without them. If the batch
// is refused for a row's values rather than the database's state, each
// unit is committed alone, so one bad unit fails only its own call.
func (w *Writer) flush(batch []*request) {
	locked := false
	for len(batch) > 0 {
		refused, err := w.commit(batch, locked)
		switch {
		case errors.Is(err, errChainMoved) && !locked:
			// A Write's transaction moved the chain: append under its
			// lock this time, so a stream of Writes cannot starve the
			// batch.
			locked = true
			continue
		case len(refused) > 0:
			for _, i := range slices.Backward(slices.Sorted(maps.Keys(refused))) {
				batch[i].done <- &Refused{Reason: refused[i]}
				batch = slices.Delete(batch, i, i+1)
			}
			continue
		case err != nil && len(batch) > 1 && isDataError(err):
			w.log.Warn("audit batch refused; committing its units one by one", "units", len(batch), "err", err)
			for _, r := range batch {
				w.flush([]*request{r})
			}
			return
		case err != nil:
			w.log.Error("audit commit failed", "units", len(batch), "err", err)
			err = fmt.Errorf("record audit row: %w", db.Map(err))
		}
		for _, r := range batch {
			r.done <- err
		}
		return
	}
}

// errChainMoved: the writer's chain was not where it left it (a
// transaction of Write's moved it, or a commit whose outcome the writer
// did not learn), or no longer its own; the head has been forgotten.
var errChainMoved = errors.New("audit chain moved")

// chainMovedCode is the SQLSTATE connec_audit_chain_moved raises
// (migration 00014).
const chainMovedCode = "CA002"

// commit runs batch.s pipeline once: it returns the unit a guard refused
// (nothing was written then), or the pipeline.s error. Locked, it first
// locks the chain's row in a transaction of its own and reads the head
// there, so no Write can move it before the pipeline (two round trips
// more: only after the chain was found moved).
func (w *Writer) commit(batch []*request, locked bool) (map[int]Refusal, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	chain, from, err := w.position(ctx)
	if err != nil {
		return nil, err
	}
	if !locked {
		return w.appendBatch(ctx, w.pool, batch, chain, from)
	}
	var refused map[int]Refusal
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		head, err := audit.ChainHead(ctx, tx, chain, w.holder, true)
		if errors.Is(err, audit.ErrChainLost) {
			w.lose(chain)
			return errChainMoved
		}
		if err != nil {
			return err
		}
		refused, err = w.appendBatch(ctx, tx, batch, chain, head)
		if err == nil && len(refused) > 0 {
			return errRefused // the refusal ended the transaction
		}
		return err
	})
	if errors.Is(err, errRefused) {
		err = nil
	}
	return refused, err
}

// errRefused rolls back a transaction a guard's refusal ended.
var errRefused = errors.New("refused")

// appendBatch links batch's rows after from on chain and commits them with
// the units' guards and run records: one pipeline in q (see statement.go).
func (w *Writer) appendBatch(ctx context.Context, q batcher, batch []*request, chain int64, from audit.Head) (map[int]Refusal, error) {
	rows := make([]*audit.Row, len(batch))
	units := make([]*Unit, len(batch))
	for i, r := range batch {
		rows[i], units[i] = r.row, &r.unit
	}
	to, err := audit.Link(rows, chain, from)
	if err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	guards, same := guardArgs(units)
	for _, args := range guards {
		b.Queue(guardSQL, args...)
	}
	var starts []any
	for _, u := range units {
		if u.Start != nil {
			starts = startArgs(starts, u.Start)
		}
	}
	if len(starts) > 0 {
		b.Queue(startSQL(len(starts)/startCols), starts...)
	}
	for _, u := range units {
		if u.Finish != nil {
			b.Queue(finishSQL, finishArgs(u.Finish)...)
		}
	}
	queueAppend(b, chain, w.holder, from, to, rows)
	refused, err := run(ctx, q, b)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err != nil:
		w.headOK = false
		return nil, err
	case len(refused) == 0 && w.chain == chain:
		w.head, w.headOK = to, true
	}
	for k, r := range maps.Clone(refused) {
		for _, j := range same[k] {
			refused[j] = r // the units that shared k's guard
		}
	}
	return refused, nil
}

// batcher runs a pipeline: a pool, or a transaction.
type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// queueAppend adds the statements that move chain's head from from to to
// and insert rows, linked in between.
func queueAppend(b *pgx.Batch, chain int64, holder string, from, to audit.Head, rows []*audit.Row) {
	b.Queue(headSQL, chain, holder, from.Seq, []byte(from.Hash), to.Seq, []byte(to.Hash))
	var args []any
	for _, r := range rows {
		args = r.InsertArgs(args)
	}
	b.Queue(auditSQL(len(rows)), args...)
}

// run sends b and reads its statements' outcomes in order. A guard's
// refusal is returned as such (nothing was written); a moved chain as
// errChainMoved.
func run(ctx context.Context, q batcher, b *pgx.Batch) (map[int]Refusal, error) {
	br := q.SendBatch(ctx, b)
	var err error
	for range b.Len() {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &pe) && pe.Code == chainMovedCode:
		return nil, errChainMoved
	case errors.As(err, &pe) && pe.Code == refusedCode:
		r, perr := parseRefusal(pe.Message)
		k, kerr := strconv.Atoi(pe.Detail)
		if perr != nil || kerr != nil {
			return nil, fmt.Errorf("commit: the guard answered %q (%q)", pe.Message, pe.Detail)
		}
		return map[int]Refusal{k: r}, nil
	}
	return nil, err
}

// position returns the writer's chain and where it ends, claiming a chain
// if the writer holds none and reading the head if it does not know it.
//
// No mutex is held while it waits for the database: a Write holds a
// connection of the pool while it takes w.mu or claimMu, so waiting for a
// connection under either could wait for ever.
func (w *Writer) position(ctx context.Context) (int64, audit.Head, error) {
	w.mu.Lock()
	if w.stale.Swap(false) {
		w.headOK = false
	}
	chain, head, ok := w.chain, w.head, w.headOK
	w.mu.Unlock()
	if chain != 0 && ok {
		return chain, head, nil
	}
	if chain != 0 {
		// Read without a lock: the commit moves the head only from
		// where this says it is, so a head moved since fails it and the
		// batch is redone.
		head, err := audit.ChainHead(ctx, w.pool, chain, w.holder, false)
		if err == nil {
			w.mu.Lock()
			if w.chain == chain {
				w.head, w.headOK = head, true
			}
			w.mu.Unlock()
			return chain, head, nil
		}
		if !errors.Is(err, audit.ErrChainLost) {
			return 0, audit.Head{}, err
		}
		w.log.Warn("audit chain taken over by another writer (this writer's hold ran out); continuing on another", "chain", chain)
		w.lose(chain)
	}
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return 0, audit.Head{}, err
	}
	defer conn.Release()
	return w.claim(ctx, conn)
}

// claim takes a chain in q (a connection, or a Write's transaction) unless
// the writer has one again by now. claimMu keeps the writer to one chain.
func (w *Writer) claim(ctx context.Context, q db.Querier) (int64, audit.Head, error) {
	w.claimMu.Lock()
	defer w.claimMu.Unlock()
	w.mu.Lock()
	chain, head, ok := w.chain, w.head, w.headOK
	w.mu.Unlock()
	if chain != 0 {
		if !ok {
			var err error
			if head, err = audit.ChainHead(ctx, q, chain, w.holder, false); err != nil {
				return 0, audit.Head{}, err
			}
		}
		return chain, head, nil
	}
	id, head, err := audit.ClaimChain(ctx, q, w.holder, w.info, w.chainTTL)
	if err != nil {
		return 0, audit.Head{}, err
	}
	w.mu.Lock()
	w.chain, w.head, w.headOK = id, head, true
	w.mu.Unlock()
	return id, head, nil
}

// lose forgets chain, if it is still the writer's: another writer holds it
// now.
func (w *Writer) lose(chain int64) {
	w.mu.Lock()
	if w.chain == chain {
		w.chain, w.headOK = 0, false
	}
	w.mu.Unlock()
}

// isDataError reports whether PostgreSQL refused err's statement for the
// values in it (data exception or integrity constraint).
func isDataError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code[:2] == "22" || pe.Code[:2] == "23")
}

// upkeep renews the writer's hold on its chain and keeps the current and
// next month's partitions.
func (w *Writer) upkeep(ctx context.Context) {
	defer w.maint.Done()
	renew := time.NewTicker(max(w.chainTTL/4, time.Millisecond))
	defer renew.Stop()
	var parts <-chan time.Time
	if w.partitionEvery > 0 {
		t := time.NewTicker(w.partitionEvery)
		defer t.Stop()
		parts = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			w.renew(ctx)
		case <-parts:
			w.ensurePartitions(ctx)
		}
	}
}

func (w *Writer) renew(ctx context.Context) {
	w.mu.Lock()
	chain := w.chain
	w.mu.Unlock()
	if chain == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	err := audit.RenewChain(ctx, w.pool, chain, w.holder, w.chainTTL)
	if errors.Is(err, audit.ErrChainLost) {
		w.lose(chain)
	}
	if err != nil && ctx.Err() == nil {
		w.log.Warn("audit chain hold not renewed", "chain", chain, "err", err)
	}
}

func (w *Writer) release() {
	w.mu.Lock()
	chain := w.chain
	w.chain, w.headOK = 0, false
	w.mu.Unlock()
	if chain == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	if err := audit.ReleaseChain(ctx, w.pool, chain, w.holder); err != nil {
		w.log.Warn("audit chain not released; another writer continues it once the hold runs out", "chain", chain, "err", err)
	}
}

func (w *Writer) ensurePartitions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if err := audit.EnsurePartitions(ctx, w.pool, w.now()); err != nil && ctx.Err() == nil {
		w.log.Warn("audit partition upkeep failed; rows go to the default partition meanwhile", "err", err)
	}
}
