package core

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
)

// A 2026-07-28 caller whose call is bridged to an upstream that asks within
// the call answers in a later request; with several servers behind a load
// balancer that request may reach a server other than the one where the
// call waits. That server relays the round through PostgreSQL
// (input_rounds, announced on RoundChannel): the server holding the call
// claims it, delivers the answers and leaves the call's next answer in the
// row. The transport holds the calls (RoundHolder); core only carries
// rounds between servers.

// RoundChannel announces rounds between the servers: "ask|<id>" (a round
// for whichever server holds its call), "claimed|<id>", "refused|<id>"
// (the server that issued its state holds no such call), "done|<id>" (its
// answer is in the row) and "gone|<id>" (its caller went away).
const RoundChannel = "connec_input_round"

// Round is a caller's answer to a call waiting on it, as relayed.
type Round struct {
	Owner  callctx.Subject
	Tool   string
	Params json.RawMessage // the request's requestState and inputResponses
}

// RoundHolder takes r when the call it names waits in this server (as
// the same caller's, the same tool's) and returns what answers it: the
// call's next answer, a tools/call result as JSON.
type RoundHolder func(r Round) (answer func(ctx context.Context) json.RawMessage, v RoundVerdict)

// RoundVerdict is what a RoundHolder makes of a round.
type RoundVerdict int

const (
	// RoundNotMine: the round's state was issued elsewhere.
	RoundNotMine RoundVerdict = iota
	// RoundHeld: its call waits here, and answer answers it.
	RoundHeld
	// RoundRefused: its state was issued here, but no call waits on it
	// for this caller and tool (used, expired, another's).
	RoundRefused
)

// ErrRoundNotHeld says no server of the deployment holds the call a round
// names (unknown, used, expired, or the server holding it stopped).
var ErrRoundNotHeld = errors.New("no server of the deployment holds the call")

const (
	// defaultRoundClaimWait is how long a relayed round waits for the
	// server holding its call to claim it.
	defaultRoundClaimWait = 5 * time.Second
	// roundMaxWait bounds a claimed round (the call's question waits 5
	// minutes for its answer, its result 1 more to be collected).
	roundMaxWait = 7 * time.Minute
	// roundPoll reads the row meanwhile, should an announcement be lost.
	roundPoll = 2 * time.Second
)

// rounds are this server's part in relaying rounds.
type rounds struct {
	mu      sync.Mutex
	holders []RoundHolder
	waiting map[string]chan string        // rounds this server relayed: their announcements
	running map[string]context.CancelFunc // rounds this server answers
	// claimWait overrides defaultRoundClaimWait (tests).
	claimWait time.Duration
}

func newRounds() rounds {
	return rounds{waiting: map[string]chan string{}, running: map[string]context.CancelFunc{}}
}

// HoldRounds has h take the rounds other servers relay.
func (s *Service) HoldRounds(h RoundHolder) {
	s.rounds.mu.Lock()
	defer s.rounds.mu.Unlock()
	s.rounds.holders = append(s.rounds.holders, h)
}

// RelayRound has the server of the deployment that holds the call r names
// take r, and returns the call's next answer. ErrRoundNotHeld when none
// claims it in time.
func (s *Service) RelayRound(ctx context.Context, r Round) (json.RawMessage, error) {
	if s.hub == nil || !s.hub.Live() {
		return nil, fault.New(fault.Unavailable, "the call waits on another server, which cannot be reached now: call again with the same requestState")
	}
	id := uuid.NewString()
	events := make(chan string, 4)
	s.rounds.mu.Lock()
	s.rounds.waiting[id] = events
	s.rounds.mu.Unlock()
	defer func() {
		s.rounds.mu.Lock()
		delete(s.rounds.waiting, id)
		s.rounds.mu.Unlock()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = s.pool.Exec(dctx, `DELETE FROM input_rounds WHERE id = $1`, id)
	}()
	// (Rows a stopped server left are cleared on the way.)
	_, err := s.pool.Exec(ctx, `WITH stale AS (DELETE FROM input_rounds WHERE created_at < now() - $5 * interval '1 second'),
		round AS (INSERT INTO input_rounds (id, owner, tool, params) VALUES ($1, $2, $3, $4))
		SELECT pg_notify($6, $7)`, id, string(r.Owner), r.Tool, []byte(r.Params), (2 * roundMaxWait).Seconds(), RoundChannel, "ask|"+id)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, db.Map(err), "the round cannot be passed to the server the call waits on")
	}
	s.rounds.mu.Lock()
	wait := cmp.Or(s.rounds.claimWait, defaultRoundClaimWait)
	s.rounds.mu.Unlock()
	claimBy := time.Now().Add(wait)
	claim := time.NewTimer(wait)
	defer claim.Stop()
	poll := time.NewTicker(roundPoll)
	defer poll.Stop()
	limit := time.NewTimer(roundMaxWait)
	defer limit.Stop()
	claimed := false
	for {
		check := false
		select {
		case e := <-events:
			if e == "refused" {
				return nil, ErrRoundNotHeld
			}
			claimed = claimed || e == "claimed"
			check = e == "done"
		case <-poll.C:
			check = true
		case <-claim.C:
			check = !claimed // (or its announcement was lost)
		case <-limit.C:
			s.roundGone(ctx, id)
			return nil, fault.New(fault.Timeout, "the server the call waits on did not answer in time")
		case <-ctx.Done():
			s.roundGone(ctx, id)
			return nil, ctx.Err()
		}
		if !check {
			continue
		}
		var by *string
		var res []byte
		var lost bool
		err := s.pool.QueryRow(ctx, `SELECT claimed_by, result, result IS NULL AND claim_lease IS NOT NULL AND NOT EXISTS
			(SELECT 1 FROM connec_servers WHERE id = claim_lease AND expires_at > now()) FROM input_rounds WHERE id = $1`, id).
			Scan(&by, &res, &lost)
		switch {
		case err != nil && ctx.Err() != nil:
			continue // (said by the next turn)
		case err != nil:
			return nil, fault.Wrap(fault.Unavailable, db.Map(err), "the round's answer cannot be read")
		case res != nil:
			return res, nil
		case lost:
			s.roundGone(ctx, id) // (in case it is only slow)
			return nil, fault.New(fault.Unavailable, "the server the call waited on stopped: its answer is lost; call the tool again")
		case by != nil:
			claimed = true
		case !claimed && !time.Now().Before(claimBy):
			return nil, ErrRoundNotHeld
		}
	}
}

// roundGone tells the server answering round id that its caller went away.
func (s *Service) roundGone(ctx context.Context, id string) {
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = s.pool.Exec(gctx, `SELECT pg_notify($1, $2)`, RoundChannel, "gone|"+id)
}

// followRounds takes the rounds other servers relay and the announcements
// of the rounds this server relayed.
func (s *Service) followRounds() {
	if s.hub == nil {
		return
	}
	err := s.hub.Handle(RoundChannel, func(payload string) {
		kind, id, _ := strings.Cut(payload, "|")
		s.rounds.mu.Lock()
		defer s.rounds.mu.Unlock()
		switch kind {
		case "ask":
			if len(s.rounds.holders) > 0 && s.rounds.waiting[id] == nil {
				go s.answerRound(id, slices.Clone(s.rounds.holders))
			}
		case "claimed", "refused", "done":
			if ch := s.rounds.waiting[id]; ch != nil {
				select {
				case ch <- kind:
				default: // (the row says it too)
				}
			}
		case "gone":
			if cancel := s.rounds.running[id]; cancel != nil {
				cancel()
			}
		}
	})
	if err == nil {
		// Rounds announced while this server was not listening are
		// looked for once it listens again.
		err = s.hub.OnReset(func() { go s.answerUnclaimed() })
	}
	if err != nil {
		s.log.Error("rounds of calls waiting on their caller are not relayed between servers", "err", err)
	}
}

// answerUnclaimed answers the rounds of the last minute nobody has claimed,
// those whose call waits here.
func (s *Service) answerUnclaimed() {
	s.rounds.mu.Lock()
	holders := slices.Clone(s.rounds.holders)
	s.rounds.mu.Unlock()
	if len(holders) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM input_rounds WHERE claimed_by IS NULL AND created_at > now() - interval '1 minute'`)
	if err == nil {
		var ids []string
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err == nil {
			for _, id := range ids {
				s.rounds.mu.Lock()
				mine := s.rounds.waiting[id] != nil
				s.rounds.mu.Unlock()
				if !mine {
					go s.answerRound(id, holders)
				}
			}
			return
		}
	}
	if ctx.Err() == nil {
		s.log.Warn("rounds relayed while notifications were down cannot be looked for", "err", db.Map(err))
	}
}

// answerRound answers the round id when one of holders holds its call.
func (s *Service) answerRound(id string, holders []RoundHolder) {
	ctx, cancel := context.WithTimeout(context.Background(), roundMaxWait)
	defer cancel()
	// Once per round here (its announcement and a scan after a reset
	// may both bring it).
	s.rounds.mu.Lock()
	_, twice := s.rounds.running[id]
	if !twice {
		s.rounds.running[id] = cancel
	}
	s.rounds.mu.Unlock()
	if twice {
		return
	}
	defer func() {
		s.rounds.mu.Lock()
		delete(s.rounds.running, id)
		s.rounds.mu.Unlock()
	}()
	var r Round
	var owner string
	var params []byte
	err := s.pool.QueryRow(ctx, `SELECT owner, tool, params FROM input_rounds WHERE id = $1 AND claimed_by IS NULL`, id).
		Scan(&owner, &r.Tool, &params)
	if err != nil {
		if !errors.Is(err, pgx.ErrNoRows) {
			s.log.Warn("a relayed round cannot be read", "err", db.Map(err))
		}
		return
	}
	r.Owner, r.Params = callctx.Subject(owner), params
	var answer func(context.Context) json.RawMessage
	for _, h := range holders {
		a, v := h(r)
		if v == RoundRefused {
			if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, RoundChannel, "refused|"+id); err != nil {
				s.log.Warn("a relayed round cannot be refused", "err", db.Map(err))
			}
			return
		}
		if v == RoundHeld {
			answer = a
			break
		}
	}
	if answer == nil {
		return // another server's, or nobody's
	}
	var lease *string
	if l := s.leaseID(); l != "" {
		lease = &l
	}
	tag, err := s.pool.Exec(ctx, `WITH claim AS (UPDATE input_rounds SET claimed_by = $2, claim_lease = $4 WHERE id = $1 AND claimed_by IS NULL RETURNING id)
		SELECT pg_notify($3, 'claimed|' || id) FROM claim`, id, s.origin, RoundChannel, lease)
	if err != nil || tag.RowsAffected() == 0 {
		// Its caller is gone already: the call is kept for the caller's
		// next request, as when a caller goes away here.
		cancel()
	}
	res := answer(ctx)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := s.pool.Exec(wctx, `WITH done AS (UPDATE input_rounds SET result = $2 WHERE id = $1 RETURNING id)
		SELECT pg_notify($3, 'done|' || id) FROM done`, id, []byte(res), RoundChannel); err != nil {
		s.log.Warn("a relayed round's answer cannot be written", "err", db.Map(err))
	}
}
