package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/simulate"
	"github.com/stackbill/stackbill/internal/usage"
)

// SustainedResult is what one run of the sustained benchmark measured.
type SustainedResult struct {
	// Rate is the offered rate, in events per second.
	Rate int
	// Planned is how long the stream was to run; Offered is how long
	// offering it took (longer when intake could not take the batches at
	// the pace offered), and Acked until the last batch was acknowledged.
	Planned, Offered, Acked time.Duration
	// Events were acknowledged, each once; Records reached the invoice
	// draft (one hourly record per event, by construction).
	Events, Records int64
	// Drain runs from the last acknowledgement until the last record was
	// rated in the invoice draft: what was still in flight when the stream
	// stopped (aggregation, the hour closing, sealing, forwarding,
	// ingestion, materialisation, rating).
	Drain time.Duration
	// PeakBacklog is the most events acknowledged but not yet in commerce's
	// forwarded usage, sampled every second while the stream ran.
	PeakBacklog int64
	// CPU is what the whole run cost this process (producers, stack and
	// commerce) and PostgreSQL.
	CPU cpuTimes
}

// EndToEnd is the end-to-end rate: events over the time from the first
// offer until every event was rated.
func (r SustainedResult) EndToEnd() float64 {
	return float64(r.Events) / (r.Acked + r.Drain).Seconds()
}

// Holds says whether the pipeline sustained the offered rate: intake kept up
// with the offer (the last acknowledgement within a second of the stream's
// end), and what was in flight when the stream stopped drained within a
// quarter of the planned time, so the backlog stayed bounded rather than
// growing with the run.
func (r SustainedResult) Holds() bool {
	return r.Acked <= r.Planned+time.Second && r.Drain <= r.Planned/4
}

// sustainedMeters are the meters of the stream: a VM's cores and its blob
// storage, both rated.
var sustainedMeters = [...]string{simulate.MeterBaseVM, simulate.MeterBlockBlob}

// Placeholders of the stream's batch templates, replaced with text of the
// same length per simulated hour, so a batch costs the producer a copy, not
// an encoding (producers are other machines; their JSON is not the stack's
// work).
const (
	holdStart = "2000-01-01T00:00:00Z"
	holdEnd   = "2000-01-01T00:01:00Z"
	holdHour  = "HHHHHHHH"
)

// Sustained offers a stream of usage events at rate events per second for d
// to a stack over loopback HTTP (NDJSON batches of 1,000 from 4 producers),
// with both services running as serve runs them: intake's aggregation, the
// bridge's forwarder and commerce's materialisation in the background. The
// shared manual clock moves one hour every hour of wall time, so hours close,
// are sealed and are forwarded while the stream runs. Every event is its own
// hourly record (a resource reporting once an hour), the hard case for every
// stage after intake. When the stream ends, the clock moves past the last
// hour and the run waits until every record is rated in the invoice draft,
// which must hold exactly the events acknowledged.
func Sustained(ctx context.Context, com, stack *Instance, stackToken string, rate int, d, hour time.Duration, tenants int, progress Progress) (SustainedResult, error) {
	res := SustainedResult{Rate: rate, Planned: d}
	op := auth.Principal{Role: auth.RoleOperator, TokenID: "bench"}
	comURL, stopCom, err := serveLoopback(com)
	if err != nil {
		return res, err
	}
	defer stopCom()
	stackURL, stopStack, err := serveLoopback(stack)
	if err != nil {
		return res, err
	}
	defer stopStack()
	sw, err := connect(ctx, com, stack, tenants, comURL)
	if err != nil {
		return res, err
	}
	// Every batch of an hour, as a template.
	perHour := max(1, rate*int(hour/time.Millisecond)/1000/1000)
	placeStart, _ := time.Parse(time.RFC3339, holdStart)
	placeEnd := placeStart.Add(time.Minute)
	one := money.MustQuantity("1")
	templates := make([][]byte, perHour)
	for b := range templates {
		evs := make([]usage.Event, 1000)
		for j := range evs {
			i := b*1000 + j
			t := sw.tenants[i%len(sw.tenants)]
			evs[j] = usage.Event{ID: fmt.Sprintf("s-%s-%d", holdHour, i), SubscriptionID: t.localSub, MeterID: sustainedMeters[(i/len(sw.tenants))%len(sustainedMeters)],
				Quantity: &one, StartTime: &placeStart, EndTime: &placeEnd,
				ResourceURI: fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm%d", t.localSub, i), Location: "local"}
		}
		if templates[b], err = simulate.NDJSON(evs); err != nil {
			return res, err
		}
		if bytes.Count(templates[b], []byte(holdStart)) != 1000 || bytes.Count(templates[b], []byte(holdHour)) != 1000 {
			return res, fmt.Errorf("sustained: the batch template does not carry its placeholders once per event")
		}
	}
	bg, stopBg := context.WithCancel(ctx)
	var loops sync.WaitGroup
	for _, run := range []func(context.Context){func(c context.Context) { stack.Usage.Run(c, stack.Logger) }, stack.Forwarder.Run, com.Ledger.Run} {
		loops.Add(1)
		go func() { defer loops.Done(); run(bg) }()
	}
	// Deferred in this order, the loops are told to stop, then awaited.
	defer loops.Wait()
	defer stopBg()

	c := &simulate.Reporter{Base: stackURL, Token: stackToken, HTTP: &http.Client{Timeout: 5 * time.Minute}}
	type job struct {
		hour  int
		start time.Time
		batch int
	}
	work := make(chan job)
	errs := make(chan error, 8)
	var acked atomic.Int64
	var producers sync.WaitGroup
	for p := 0; p < 4; p++ {
		producers.Add(1)
		go func() {
			defer producers.Done()
			for j := range work {
				body := bytes.ReplaceAll(templates[j.batch], []byte(holdStart), []byte(j.start.Format(time.RFC3339)))
				body = bytes.ReplaceAll(body, []byte(holdEnd), []byte(j.start.Add(time.Minute).Format(time.RFC3339)))
				body = bytes.ReplaceAll(body, []byte(holdHour), fmt.Appendf(nil, "%08d", j.hour))
				r, err := c.PostNDJSON(ctx, body)
				if err != nil {
					errs <- err
					continue
				}
				acked.Add(int64(r.Accepted))
			}
		}()
	}
	// The backlog: acknowledged events not yet in commerce's forwarded usage.
	reg, err := com.Registrations.Get(ctx, op, sw.key)
	if err != nil {
		return res, err
	}
	var peak atomic.Int64
	// Sampled from the ledger's in-memory count: counting the rows every
	// second would scan a table of millions of rows, on the cores whose
	// work this stage measures.
	materialised0 := com.Ledger.Materialised()
	sampling, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-sampling.Done():
				return
			case <-t.C:
			}
			n, stored := acked.Load(), com.Ledger.Materialised()-materialised0
			if n-stored > peak.Load() {
				peak.Store(n - stored)
			}
		}
	}()

	bar := progress.start(int64(d/time.Second), fmt.Sprintf("offering %s events/s", Human(float64(rate))))
	clk := stack.Clock
	start, cpu0 := time.Now(), cpuNow()
	batchEvery := time.Second * 1000 / time.Duration(rate)
	hourIndex, inHour := 0, 0
	lastSecond := 0
	for k := 0; ; k++ {
		due := start.Add(time.Duration(k) * batchEvery)
		if due.Sub(start) >= d {
			break
		}
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		if inHour == perHour {
			// The hour is over: the clock moves on, and the forwarder
			// seals and sends it once Grace has passed.
			clk.Advance(time.Hour)
			hourIndex, inHour = hourIndex+1, 0
		}
		work <- job{hour: hourIndex, start: clock.HourStart(clk.Now()), batch: inHour}
		inHour++
		if s := int(time.Since(start) / time.Second); s > lastSecond {
			_ = bar.Add(s - lastSecond)
			lastSecond = s
		}
	}
	res.Offered = time.Since(start)
	close(work)
	producers.Wait()
	res.Acked = time.Since(start)
	ackedAt := time.Now()
	_ = bar.Finish()
	stopSampling()
	sampler.Wait()
	res.PeakBacklog = peak.Load()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	res.Events = acked.Load()
	// The last hour closes: the clock moves past it and its grace, the
	// forwarder (running) seals and sends it, commerce materialises it, and
	// billing rates the period.
	clk.Advance(time.Hour + 2*time.Minute)
	for {
		if _, err := stack.Forwarder.CatchUp(ctx); err != nil {
			return res, err
		}
		st, err := stack.Forwarder.Status(ctx)
		if err != nil {
			return res, err
		}
		if st.Backlog == 0 {
			break
		}
	}
	if err := com.Ledger.Settle(ctx); err != nil {
		return res, err
	}
	sum, err := com.Billing.Period(ctx, op, clock.Period(clk.Now()))
	if err != nil {
		return res, err
	}
	res.Drain, res.CPU = time.Since(ackedAt), cpuNow().since(cpu0)
	res.Records = sum.Records
	stored, err := com.Ledger.Stored(ctx, reg.CloudID)
	if err != nil {
		return res, err
	}
	if stored != res.Events || res.Records != res.Events {
		return res, fmt.Errorf("sustained: %d events acknowledged, %d in commerce, %d rated in the draft", res.Events, stored, res.Records)
	}
	return res, nil
}
