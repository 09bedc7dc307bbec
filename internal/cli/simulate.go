package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

// serverTime reads the stack's clock, which may be simulated.
func (c *client) serverTime(ctx context.Context) (time.Time, error) {
	var h struct {
		Time time.Time `json:"time"`
	}
	if _, err := c.do(ctx, "GET", "/healthz", nil, &h); err != nil {
		return time.Time{}, err
	}
	return h.Time, nil
}

// onboard creates the world's directory tenants and user subscriptions.
func (c *client) onboard(ctx context.Context, w simulate.World) error {
	var info struct {
		ProviderSubscriptionID string `json:"providerSubscriptionId"`
	}
	if _, err := c.do(ctx, "GET", "/v1/stack/info", nil, &info); err != nil {
		return err
	}
	p := info.ProviderSubscriptionID
	for _, t := range w.Tenants {
		if _, err := c.do(ctx, "PUT", "/subscriptions/"+p+"/resourceGroups/system.local/providers/Microsoft.Subscriptions.Admin/directoryTenants/"+t.Name+".onmicrosoft.com?api-version=2015-11-01",
			map[string]any{"location": "local", "properties": map[string]string{"tenantId": t.DirectoryID}}, nil); err != nil {
			return fmt.Errorf("onboard %s: %w", t.Name, err)
		}
		if _, err := c.do(ctx, "PUT", "/subscriptions/"+p+"/providers/Microsoft.Subscriptions.Admin/subscriptions/"+t.SubscriptionID+"?api-version=2015-11-01",
			map[string]any{"properties": map[string]string{"displayName": t.Name, "owner": "admin@" + t.Name + ".onmicrosoft.com", "tenantId": t.DirectoryID, "offerId": "/delegatedProviders/default/offers/standard", "state": "Enabled"}}, nil); err != nil {
			return fmt.Errorf("subscription of %s: %w", t.Name, err)
		}
	}
	return nil
}

// postEvents sends one NDJSON batch and fails on any rejection: the
// simulator's events are valid by construction, so a rejection is a bug.
func (c *client) postEvents(ctx context.Context, events []usage.Event) (usage.Result, error) {
	body, err := ndjson(events)
	if err != nil {
		return usage.Result{}, err
	}
	return c.postNDJSON(ctx, body)
}

// ndjson encodes events one per line.
func ndjson(events []usage.Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range events {
		if err := enc.Encode(&events[i]); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// postNDJSON posts one NDJSON batch to the intake.
func (c *client) postNDJSON(ctx context.Context, body []byte) (usage.Result, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/usage/events", bytes.NewReader(body))
	if err != nil {
		return usage.Result{}, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return usage.Result{}, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return usage.Result{}, fmt.Errorf("intake answered %d: %s", resp.StatusCode, answer)
	}
	var res usage.Result
	if err := json.Unmarshal(answer, &res); err != nil {
		return res, err
	}
	if len(res.Rejected) > 0 {
		return res, fmt.Errorf("intake rejected %d events, first: %+v", len(res.Rejected), res.Rejected[0])
	}
	return res, nil
}

// sendHours posts the events of the given hours in batches with a few
// workers, adding what was produced to totals.
func (c *client) sendHours(ctx context.Context, w simulate.World, hours []time.Time, o simOptions, totals simulate.Totals) (sent int, err error) {
	batches := make(chan []usage.Event, o.Workers*2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < o.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if _, err := c.postEvents(ctx, b); err != nil {
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := mk()
	w := simulate.New(simulate.Config{Tenants: o.Tenants, Seed: o.Seed})
	if err := c.onboard(ctx, w); err != nil {
		return err
	}
	now, err := c.serverTime(ctx)
	if err != nil {
		return err
	}
	end := clock.HourStart(now)
	totals := simulate.Totals{}
	o.Progress = env.Stderr
	start := time.Now()
	sent, err := c.sendHours(ctx, w, simulate.Hours(end.Add(-time.Duration(o.Days)*24*time.Hour), end), o, totals)
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
		now, err := c.serverTime(ctx)
		if err != nil {
			fmt.Fprintf(env.Stderr, "simulate: %v (retrying)\n", err)
		} else if !now.Before(next.Add(time.Hour)) {
			if _, err := c.sendHours(ctx, w, []time.Time{next}, o, totals); err != nil {
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
