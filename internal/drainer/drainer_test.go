package drainer

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond for up to ten seconds; it proves that something
// happens, never how fast.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestLoopDrainsWhatIsLogged(t *testing.T) {
	var calls, left atomic.Int64
	var l *Loop
	l = New(func(context.Context) (int, error) {
		calls.Add(1)
		if n := left.Swap(0); n > 0 {
			l.Drained(n)
			return 1, nil
		}
		return 0, nil
	}, time.Hour, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	left.Store(7) // in the log when the loop starts, as after a restart
	go l.Run(ctx, fixed(7), nil, "")
	waitFor(t, "the log to be drained", func() bool { return l.Backlog() == 0 && left.Load() == 0 })
	left.Store(3) // a batch logged while the loop runs wakes it
	l.Logged(3)
	waitFor(t, "the logged units to be drained", func() bool { return l.Backlog() == 0 && left.Load() == 0 })
}

// A hot path that never pauses cannot hold the loop off past the backlog
// bound, whatever the delay.
func TestLoopStopsGivingWayAtTheBacklogBound(t *testing.T) {
	var drained atomic.Int64
	var l *Loop
	l = New(func(context.Context) (int, error) {
		if l.Backlog() > 0 {
			drained.Add(l.Backlog())
			l.Drained(l.Backlog())
			return 1, nil
		}
		return 0, nil
	}, time.Hour, 10)
	end := l.Begin() // a batch in flight for the whole test: always busy
	defer end()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx, fixed(25), nil, "")
	waitFor(t, "the loop to drain a backlog past its bound while the hot path is busy", func() bool { return drained.Load() == 25 })
}

// fixed is a log that holds n units when counted.
func fixed(n int64) func(context.Context) (int64, error) {
	return func(context.Context) (int64, error) { return n, nil }
}

// Another instance on the same database logs and drains batches this
// process never counted: the backlog is read from the log again, so it
// neither goes negative nor stays up for good.
func TestLoopRecountsTheLog(t *testing.T) {
	var inLog atomic.Int64
	l := New(func(context.Context) (int, error) { return 0, nil }, time.Hour, 100)
	l.recount = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx, func(context.Context) (int64, error) { return inLog.Load(), nil }, nil, "")
	l.Drained(40) // drained here, logged by the other instance
	waitFor(t, "a negative backlog to be recounted", func() bool { return l.Backlog() == 0 })
	inLog.Store(12) // logged by the other instance, not counted here
	l.Logged(0)
	waitFor(t, "the other instance's batches to be counted", func() bool { return l.Backlog() == 12 })
}
