package clock

import (
	"testing"
	"time"
)

func TestBoundaries(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 31, 23, 59, 59, 999, time.FixedZone("x", 5*3600))
	if got, want := HourStart(at), time.Date(2026, 3, 31, 18, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("HourStart = %v, want %v", got, want)
	}
	if got, want := DayStart(at), time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("DayStart = %v, want %v", got, want)
	}
	if got, want := NextMonth(time.Date(2026, 12, 15, 0, 0, 0, 0, time.UTC)), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("NextMonth = %v, want %v", got, want)
	}
	if IsHourStart(time.Date(2026, 1, 1, 1, 0, 1, 0, time.UTC)) || !IsDayStart(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Error("IsHourStart/IsDayStart wrong")
	}
}

func TestSimulatedRunsFaster(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := Simulated(start, 3600)
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c.realStart = wall
	c.wall = func() time.Time { return wall.Add(2 * time.Second) }
	if got, want := c.Now(), start.Add(2*time.Hour); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
	if _, err := Simulated(start, 0); err == nil {
		t.Fatal("rate 0 accepted")
	}
}

func TestManual(t *testing.T) {
	t.Parallel()
	c := Manual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c.Advance(90 * time.Minute)
	if got := c.Now(); got.Hour() != 1 || got.Minute() != 30 {
		t.Fatalf("Now = %v", got)
	}
	if FromMicros(Micros(c.Now())) != c.Now() {
		t.Fatal("micros round trip")
	}
}
