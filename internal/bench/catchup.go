package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/usage"
)

// CatchUpResult is what the many-stamp catch-up measured.
type CatchUpResult struct {
	Stamps, Tenants, Records int
	// Acked is until commerce acknowledged every stamp's last batch;
	// Billable until every record was also in commerce_usage, where rating
	// reads it. Both run from the moment every stamp starts forwarding.
	Acked, Billable time.Duration
	// Setup is how long building the stamps and their backlogs took (not
	// part of the figure).
	Setup time.Duration
	// Retries counts the catch-ups a stamp started again after commerce
	// turned it away (429: too many bridges at once) or failed.
	Retries int64
	CPU     cpuTimes
}

// CatchUp builds stamps stacks, each on a SQLite file of its own in dir (a
// stack runs beside its cloud, on the embedded engine), registered with com
// as stamps of their own CSPs and holding a backlog of hours × tenants × 2
// meters hourly records sealed in its outbox, as a day-long outage leaves
// them. Then every stack forwards at once, as they would when commerce comes
// back, and the run times how long until every record is billable. Commerce
// runs on whichever engine com was opened on.
func CatchUp(ctx context.Context, com *Instance, open Open, dir string, stamps, tenants, hours int, progress Progress) (CatchUpResult, error) {
	res := CatchUpResult{Stamps: stamps, Tenants: tenants}
	comURL, stop, err := serveLoopback(com)
	if err != nil {
		return res, err
	}
	defer stop()
	type stamp struct {
		path  string
		world stackWorld
		in    *Instance
		close func()
	}
	all := make([]stamp, stamps)
	defer func() {
		for _, s := range all {
			if s.close != nil {
				s.close()
			}
		}
	}()
	setup := time.Now()
	bar := progress.start(int64(stamps), fmt.Sprintf("building %d stamps' backlogs", stamps))
	for i := range all {
		// Each stamp is built, then closed: a hundred stacks' caches, warm
		// from building their backlogs, would hold gigabytes that a stamp
		// catching up does not need.
		all[i].path = filepath.Join(dir, fmt.Sprintf("catchup-stack-%03d.db", i))
		in, _, closeFn, err := open(ctx, all[i].path, nil)
		if err != nil {
			return res, err
		}
		sw, err := connect(ctx, com, in, tenants, comURL)
		if err == nil {
			all[i].world = sw
			var n, sealed int
			if n, err = buildBacklog(ctx, in, sw.tenants, hours, nil); err == nil {
				if sealed, err = in.Forwarder.Seal(ctx); err == nil && sealed != n {
					err = fmt.Errorf("sealed %d of %d records", sealed, n)
				}
				res.Records += n
			}
		}
		closeFn()
		if err != nil {
			return res, fmt.Errorf("stamp %d: %w", i, err)
		}
		_ = bar.Add(1)
	}
	_ = bar.Finish()
	for i := range all {
		in, _, closeFn, err := open(ctx, all[i].path, nil)
		if err != nil {
			return res, err
		}
		all[i].in, all[i].close = in, closeFn
	}
	res.Setup = time.Since(setup)

	t0, cpu0 := time.Now(), cpuNow()
	var wg sync.WaitGroup
	errs := make(chan error, stamps)
	sent := make([]int, stamps)
	var refusals atomic.Int64
	for i := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := all[i].in.Forwarder
			// As the forwarder's own loop does, a stamp that commerce turns
			// away (it bounds the bridges it serves at once) tries again
			// shortly, until its outbox is empty.
			for tries := 0; ; tries++ {
				n, err := f.CatchUp(ctx)
				sent[i] += n
				if err == nil {
					return
				}
				if tries == 10000 || ctx.Err() != nil {
					errs <- fmt.Errorf("stamp %d: %w", i, err)
					return
				}
				refusals.Add(1)
				time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	res.Acked, res.Retries = time.Since(t0), refusals.Load()
	if err := com.Ledger.Settle(ctx); err != nil {
		return res, err
	}
	res.Billable, res.CPU = time.Since(t0), cpuNow().since(cpu0)
	// The figure counts only records that reached billing, each once.
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "bench"}
	var stored int64
	for i, s := range all {
		if sent[i] == 0 {
			return res, fmt.Errorf("stamp %d forwarded nothing", i)
		}
		reg, err := com.Registrations.Get(ctx, op, s.world.key)
		if err != nil {
			return res, err
		}
		n, err := com.Ledger.Stored(ctx, reg.CloudID)
		if err != nil {
			return res, err
		}
		stored += n
	}
	if stored != int64(res.Records) {
		return res, fmt.Errorf("commerce holds %d of %d records from %d stamps", stored, res.Records, stamps)
	}
	return res, nil
}

// buildBacklog ingests hours of closed hours' usage on a stack, two meters
// per tenant and hour (a VM's cores and its storage), each hour reported as
// it ended, and answers how many hourly records that makes. bar, when not
// nil, moves an hour at a time.
func buildBacklog(ctx context.Context, stack *Instance, ts []benchTenant, hours int, bar ProgressBar) (int, error) {
	end := clock.HourStart(stack.Clock.Now().Add(-time.Hour))
	records := 0
	for h := end.Add(-time.Duration(hours) * time.Hour); h.Before(end); h = h.Add(time.Hour) {
		evs := make([]*usage.Event, 0, 2*len(ts))
		for _, t := range ts {
			for _, m := range []struct{ id, q string }{{simulate.MeterBaseVM, "4"}, {simulate.MeterBlockBlob, "12.25"}} {
				q := money.MustQuantity(m.q)
				s, e := h, h.Add(time.Hour)
				evs = append(evs, &usage.Event{ID: t.localSub + m.id + fmt.Sprint(h.Unix()), SubscriptionID: t.localSub, MeterID: m.id, Quantity: &q, StartTime: &s, EndTime: &e,
					ResourceURI: "/subscriptions/" + t.localSub + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1", Location: "local"})
			}
		}
		r, err := stack.Usage.IngestAt(ctx, h.Add(time.Hour-time.Minute), evs)
		if err != nil {
			return records, err
		}
		records += r.Accepted
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	return records, nil
}
