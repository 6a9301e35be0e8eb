package driverkit

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// ErrReadBudget is what a bound Conn's Read returns once the connection has
// delivered its read budget.
var ErrReadBudget = errors.New("driverkit: the service sent more than the connection's read budget")

// Conn is a net.Conn bound to a context: no deadline set on it reaches past
// the context's deadline, cancelling the context closes it, and it stops
// reading after a budget of bytes. Protocol clients that manage their own
// deadlines (SMTP, IMAP) can use it unaware.
type Conn struct {
	net.Conn
	deadline time.Time // zero: none
	left     atomic.Int64
	over     atomic.Bool
	stop     func() bool
}

// Bind binds c to ctx with a read budget (0 or less: unlimited). Close the
// Conn (not c) when done.
func Bind(ctx context.Context, c net.Conn, readBudget int64) *Conn {
	bc := &Conn{Conn: c}
	if readBudget <= 0 {
		readBudget = 1<<63 - 1
	}
	bc.left.Store(readBudget)
	if d, ok := ctx.Deadline(); ok {
		bc.deadline = d
		_ = c.SetDeadline(d)
	}
	bc.stop = context.AfterFunc(ctx, func() { _ = c.Close() })
	return bc
}

func (c *Conn) clamp(t time.Time) time.Time {
	if c.deadline.IsZero() || (!t.IsZero() && t.Before(c.deadline)) {
		return t
	}
	return c.deadline
}

// Read reads within the budget.
func (c *Conn) Read(b []byte) (int, error) {
	left := c.left.Load()
	if left <= 0 {
		c.over.Store(true)
		return 0, ErrReadBudget
	}
	if int64(len(b)) > left {
		b = b[:left]
	}
	n, err := c.Conn.Read(b)
	c.left.Add(-int64(n))
	return n, err
}

// Exceeded reports whether a read hit the budget.
func (c *Conn) Exceeded() bool { return c.over.Load() }

// SetDeadline sets a deadline no later than the context's.
func (c *Conn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

// SetReadDeadline sets a read deadline no later than the context's.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.clamp(t)) }

// SetWriteDeadline sets a write deadline no later than the context's.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

// Close closes the connection and releases the context hook.
func (c *Conn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// ReadAtMost reads r until EOF or n bytes; over reports that r had more.
func ReadAtMost(r io.Reader, n int64) (b []byte, over bool, err error) {
	b, err = io.ReadAll(io.LimitReader(r, n+1))
	if int64(len(b)) > n {
		return b[:n], true, err
	}
	return b, false, err
}
