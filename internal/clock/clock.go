// Package clock is the single source of "now" for stackbill, and the single
// place where hour, day and month boundaries are computed.
//
// Billing is only as correct as its notion of time, so nothing in stackbill
// calls time.Now directly: every service receives a *Clock. A Clock is either
// the real wall clock, a simulated clock that starts at a chosen instant and
// runs N times faster than real time (demos, backfills, end-to-end tests), or
// a manual clock that moves only when told to (unit tests). All instants are
// UTC.
package clock

import (
	"fmt"
	"sync"
	"time"
)

// Clock reports the current instant. The zero value is not usable; build one
// with Real, Simulated or Manual.
type Clock struct {
	mu        sync.Mutex
	kind      kind
	realStart time.Time // wall time when a simulated clock started
	simStart  time.Time // simulated instant at realStart
	rate      int64     // simulated seconds per real second
	manual    time.Time
	wall      func() time.Time
}

type kind int

const (
	kindReal kind = iota
	kindSimulated
	kindManual
)

// Real returns the wall clock.
func Real() *Clock { return &Clock{kind: kindReal, wall: time.Now} }

// Simulated returns a clock that reads start at the moment it is created and
// then advances rate times faster than the wall clock. Rate must be at least 1.
func Simulated(start time.Time, rate int64) (*Clock, error) {
	if rate < 1 {
		return nil, fmt.Errorf("clock rate must be a whole number >= 1, got %d", rate)
	}
	return &Clock{kind: kindSimulated, realStart: time.Now(), simStart: start.UTC(), rate: rate, wall: time.Now}, nil
}

// Manual returns a clock frozen at start until Set or Advance moves it.
func Manual(start time.Time) *Clock { return &Clock{kind: kindManual, manual: start.UTC()} }

// Now returns the current instant in UTC.
func (c *Clock) Now() time.Time {
	switch c.kind {
	case kindSimulated:
		elapsed := c.wall().Sub(c.realStart)
		return c.simStart.Add(elapsed * time.Duration(c.rate)).UTC()
	case kindManual:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.manual
	default:
		return c.wall().UTC()
	}
}

// Simulated reports whether the clock is not the wall clock, so that logs and
// pages can say so plainly.
func (c *Clock) Simulated() bool { return c.kind != kindReal }

// Rate is the number of simulated seconds per real second (1 for real time).
func (c *Clock) Rate() int64 {
	if c.kind == kindSimulated {
		return c.rate
	}
	return 1
}

// Set moves a manual clock to t. It panics on other clocks because moving the
// wall clock is a programming error, not a runtime condition.
func (c *Clock) Set(t time.Time) {
	if c.kind != kindManual {
		panic("clock: Set on a non-manual clock")
	}
	c.mu.Lock()
	c.manual = t.UTC()
	c.mu.Unlock()
}

// Advance moves a manual clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	if c.kind != kindManual {
		panic("clock: Advance on a non-manual clock")
	}
	c.mu.Lock()
	c.manual = c.manual.Add(d)
	c.mu.Unlock()
}

// HourStart truncates t to the start of its UTC hour.
func HourStart(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// DayStart truncates t to UTC midnight.
func DayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// MonthStart truncates t to the first instant of its UTC calendar month.
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// NextMonth returns the first instant of the month after t's month.
func NextMonth(t time.Time) time.Time { return MonthStart(t).AddDate(0, 1, 0) }

// IsHourStart reports whether t lies exactly on a UTC hour boundary.
func IsHourStart(t time.Time) bool { return t.Equal(HourStart(t)) }

// IsDayStart reports whether t lies exactly on UTC midnight.
func IsDayStart(t time.Time) bool { return t.Equal(DayStart(t)) }

// Micros converts t to Unix microseconds, the representation stackbill uses
// for instants in both database engines.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros is the inverse of Micros.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// Period names the calendar month (UTC) holding t, as "2006-01": billing
// periods are calendar months.
func Period(t time.Time) string { return MonthStart(t).Format("2006-01") }

// ParsePeriod returns the first instant of a "2006-01" period.
func ParsePeriod(s string) (time.Time, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a billing period (want YYYY-MM)", s)
	}
	return t.UTC(), nil
}

// PeriodBounds returns [start, end) of a period.
func PeriodBounds(period string) (time.Time, time.Time, error) {
	start, err := ParsePeriod(period)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	return start, NextMonth(start), nil
}

// ChargeEnd is how a charge that runs through day d is dated: 23:59 of that
// day, as Partner Center's reconciliation files show a charge's end (they
// use minutes; the last minute of a day, not its last second).
func ChargeEnd(d time.Time) time.Time { return DayStart(d).Add(24*time.Hour - time.Minute) }
