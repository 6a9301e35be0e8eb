package mcp

import (
	"errors"
	"strconv"
	"testing"
)

// A session holds at most maxSessionSubscriptions subscriptions; the same
// one twice is one; another session is counted apart; ending a session
// ends all of its subscriptions.
func TestSessionSubscriptionsAreBounded(t *testing.T) {
	ss := newSubscriptions()
	sub := func(session, uri string) *subscription {
		return &subscription{session: session, asked: uri}
	}
	var first *subscription
	for i := range maxSessionSubscriptions {
		s := sub("a", "test://r/"+strconv.Itoa(i))
		if added, err := ss.add(s); !added || err != nil {
			t.Fatalf("subscription %d: %v %v", i, added, err)
		}
		if first == nil {
			first = s
		}
	}
	if added, err := ss.add(sub("a", "test://r/0")); added || err != nil {
		t.Fatalf("the same subscription again: %v %v", added, err)
	}
	if _, err := ss.add(sub("a", "test://r/over")); !errors.Is(err, errTooManySubscriptions) {
		t.Fatalf("one over the bound: %v", err)
	}
	if added, err := ss.add(sub("b", "test://r/0")); !added || err != nil {
		t.Fatalf("another session's: %v %v", added, err)
	}
	ss.endSession("a")
	first.mu.Lock()
	ended := first.ended
	first.mu.Unlock()
	if !ended {
		t.Fatal("the session ended, its subscription did not")
	}
	if n := len(ss.all()); n != 1 {
		t.Fatalf("%d subscriptions left, want the other session's one", n)
	}
}
