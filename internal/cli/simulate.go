package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/usage"
)

// simOptions configures a simulation run against a stack.
type simOptions struct {
	Tenants, Days, Batch, Workers int
	Seed                          uint64
	Realtime                      bool
	Progress                      io.Writer
}

// sendHours posts the events of the given hours in batches with a few
// workers, adding what was produced to totals.
func sendHours(ctx context.Context, c *simulate.Reporter, w simulate.World, hours []time.Time, o simOptions, totals simulate.Totals) (sent int, err error) {
	batches := make(chan []usage.Event, o.Workers*2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < o.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if _, err := c.Post(ctx, b); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	var bar *progressbar.ProgressBar
	if o.Progress != nil && len(hours) > 1 {
		bar = newProgress(o.Progress, int64(len(hours)), "backfilling usage hours")
	}
	var pending []usage.Event
	for _, h := range hours {
		ev := w.Events(h)
		totals.Add(ev)
		sent += len(ev)
		pending = append(pending, ev...)
		for len(pending) >= o.Batch {
			batches <- pending[:o.Batch:o.Batch]
			pending = pending[o.Batch:]
		}
		if bar != nil {
			_ = bar.Add(1)
		}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
	}
	if len(pending) > 0 {
		batches <- pending
	}
	close(batches)
	wg.Wait()
	if bar != nil {
		_ = bar.Finish()
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return sent, firstErr
}

func runSimulate(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "simulate")
	mk := clientFlags(fs, env)
	var o simOptions
	fs.IntVar(&o.Tenants, "tenants", 10, "tenants (directory tenant + user subscription each)")
	fs.IntVar(&o.Days, "days", 30, "days of usage to backfill, ending at the stack's current hour")
	fs.IntVar(&o.Batch, "batch", 1000, "events per intake request")
	fs.IntVar(&o.Workers, "workers", 4, "concurrent intake requests")
	fs.Uint64Var(&o.Seed, "seed", 1, "world seed: the same seed gives the same tenants and events")
	fs.BoolVar(&o.Realtime, "realtime", false, "after the backfill, keep producing each hour as the stack's clock closes it")
	totalsFile := fs.String("totals", "", "write the produced totals per subscription and meter to this JSON file ('-' for stdout)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	api := mk()
	c := &simulate.Reporter{Base: api.base, Token: api.token, HTTP: api.http}
	w := simulate.New(simulate.Config{Tenants: o.Tenants, Seed: o.Seed})
	if err := c.Onboard(ctx, w); err != nil {
		return err
	}
	now, err := c.ServerTime(ctx)
	if err != nil {
		return err
	}
	end := clock.HourStart(now)
	totals := simulate.Totals{}
	o.Progress = env.Stderr
	start := time.Now()
	sent, err := sendHours(ctx, c, w, simulate.Hours(end.Add(-time.Duration(o.Days)*24*time.Hour), end), o, totals)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "simulated %d tenants: %d events for %d days in %s (%.0f events/s)\n", o.Tenants, sent, o.Days, time.Since(start).Round(time.Millisecond),
		float64(sent)/time.Since(start).Seconds())
	writeTotals := func() error {
		if *totalsFile == "" {
			return nil
		}
		b, _ := json.MarshalIndent(totals, "", "  ")
		if *totalsFile == "-" {
			_, err := env.Stdout.Write(append(b, '\n'))
			return err
		}
		return os.WriteFile(*totalsFile, append(b, '\n'), 0o644)
	}
	if err := writeTotals(); err != nil {
		return err
	}
	if !o.Realtime {
		return nil
	}
	next := end
	for ctx.Err() == nil {
		now, err := c.ServerTime(ctx)
		if err != nil {
			fmt.Fprintf(env.Stderr, "simulate: %v (retrying)\n", err)
		} else if !now.Before(next.Add(time.Hour)) {
			if _, err := sendHours(ctx, c, w, []time.Time{next}, o, totals); err != nil {
				if ctx.Err() != nil {
					break // stopped (Ctrl-C or a deadline) mid-hour: the totals file covers complete hours only
				}
				return err
			}
			next = next.Add(time.Hour)
			if err := writeTotals(); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}
