package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/tenancy"
	"github.com/stackbill/stackbill/internal/usage"
)

// Figure is one measured figure of the pipeline benchmark, with the
// baseline measured in the same run on the same data where there is one.
type Figure struct {
	Stage        string   `json:"stage"`
	Figure       string   `json:"figure"`
	Value        float64  `json:"value"`
	Unit         string   `json:"unit"`
	BaselineName string   `json:"baselineName,omitempty"`
	Baseline     *float64 `json:"baseline,omitempty"`
	Ratio        *float64 `json:"ratio,omitempty"` // Value / Baseline
	Target       string   `json:"target,omitempty"`
	Met          *bool    `json:"met,omitempty"`
	PeakHeapMiB  float64  `json:"peakHeapMiB,omitempty"`
	// CPU per unit of the figure's work (per event, record or PUT), in
	// microseconds: this process (and SQLite, which runs in it), and the
	// PostgreSQL server on this machine.
	CPUStackbillUs float64 `json:"cpuStackbillUs,omitempty"`
	CPUPostgresUs  float64 `json:"cpuPostgresUs,omitempty"`
	Note           string  `json:"note,omitempty"`
}

// withCPU adds the CPU a stage on engine spent per unit of work to f. On
// SQLite the engine runs in this process; a PostgreSQL server idling on the
// machine is not the run's.
func withCPU(f Figure, c cpuTimes, units float64, unit, engine string) Figure {
	if engine != "postgres" {
		c.postgres = 0
	}
	f.CPUStackbillUs, f.CPUPostgresUs = c.perUnit(units)
	note := fmt.Sprintf("CPU per %s: stackbill %.1f µs", unit, f.CPUStackbillUs)
	if c.postgres > 0 {
		note += fmt.Sprintf(", PostgreSQL %.1f µs", f.CPUPostgresUs)
	}
	if f.Note != "" {
		note = f.Note + "; " + note
	}
	f.Note = note
	return f
}

// Report is a whole pipeline benchmark run.
type Report struct {
	Database   string   `json:"database"`
	Machine    string   `json:"machine"`
	Go         string   `json:"go"`
	Figures    []Figure `json:"figures"`
	PeakRSSMiB float64  `json:"peakRssMiB"`
	Seconds    float64  `json:"seconds"`
}

// Sizes are the pipeline benchmark's data sizes.
type Sizes struct {
	// SustainedRates are the offered rates the sustained stage tries, in
	// order, stopping at the first that does not hold; SustainedSeconds is
	// each offer's length and SustainedHourMs the wall time of a simulated
	// hour.
	SustainedRates                    []int
	SustainedSeconds, SustainedHourMs int
	Events, Records                   int
	ForwardTenants, ForwardDays       int
	// CatchUpStamps stacks of CatchUpTenants tenants each hold
	// CatchUpHours hours of backlog for the catch-up stage.
	CatchUpStamps, CatchUpTenants, CatchUpHours int
	APIResources, APIDays                       int
	RegistrationClients, RegistrationMs         int
	// RegistrationTenants are the customers the clients share (each has its
	// own), as in `stackbill bench registration --tenants`.
	RegistrationTenants int
	// MemoryEvents are the stream lengths the memory stage compares (the
	// first is the baseline), offered at MemoryRate events per second.
	MemoryEvents []int
	MemoryRate   int
	// MemoryProfile, when set, is where the memory stage writes a heap
	// profile of each run at its peak live heap (MemoryProfile-EVENTS.pprof),
	// to compare two runs with go tool pprof -base.
	MemoryProfile string
}

// Stages are the pipeline's stages, in the order they run.
func Stages() []string {
	return append(DefaultStages(), "memory")
}

// DefaultStages are the stages a plain `stackbill bench` runs: all but
// memory, whose ten-million-event stream takes about twenty minutes here.
func DefaultStages() []string {
	return []string{"sustained", "floor", "intake", "aggregation", "forward", "ingest", "catch-up", "rating", "usage-api", "registration"}
}

// stageDB hands each stage a fresh database: a SQLite file in a temporary
// folder, or a schema of its own in the PostgreSQL database given.
type stageDB struct {
	base string
	dir  string
	made []string
}

func (s *stageDB) next(ctx context.Context, stage string) (string, error) {
	if !store.IsPostgresDSN(s.base) {
		return filepath.Join(s.dir, stage+".db"), nil
	}
	schema := "bench_" + strings.ReplaceAll(stage, "-", "_") + "_" + tenancy.NewGUID()[:8]
	db, err := sql.Open("pgx", s.base)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", err
	}
	s.made = append(s.made, schema)
	u, err := url.Parse(s.base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (s *stageDB) cleanup() {
	if len(s.made) > 0 {
		if db, err := sql.Open("pgx", s.base); err == nil {
			for _, sc := range s.made {
				_, _ = db.Exec("DROP SCHEMA " + sc + " CASCADE")
			}
			db.Close()
		}
	}
	os.RemoveAll(s.dir)
}

// heapPeak samples the Go heap in use while a stage runs; stop returns the
// peak in bytes.
func heapPeak() (stop func() uint64) {
	stopBoth := heapPeaks("")
	return func() uint64 { inuse, _ := stopBoth(); return inuse }
}

// heapPeaks samples the Go heap while a stage runs; stop returns the peak of
// the heap in use (live objects and garbage not yet collected, which moves
// with the collector's timing) and the peak of the live heap as the last
// collection marked it (what the process holds on to).
func heapPeaks(profile string) (stop func() (inuse, live uint64)) {
	runtime.GC()
	var peak, peakLive atomic.Uint64
	done, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var written uint64
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 && sample[0].Value.Uint64() > peakLive.Load() {
				// A heap profile describes the last collection's live heap,
				// so one written at each new peak (5 % above the last
				// written, to bound the writes) is the peak's.
				if live := sample[0].Value.Uint64(); profile != "" && live > written+written/20 {
					writeHeapProfile(profile)
					written = live
				}
				peakLive.Store(sample[0].Value.Uint64())
			}
			select {
			case <-done:
				return
			case <-time.After(25 * time.Millisecond):
			}
		}
	}()
	return func() (uint64, uint64) {
		close(done)
		<-sampled
		return peak.Load(), peakLive.Load()
	}
}

// writeHeapProfile replaces path with a heap profile; a failure only loses
// the profile, so it is not the run's error.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup("heap").WriteTo(f, 0)
}

func ptr[T any](v T) *T { return &v }

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func target(value, want float64, atLeast bool, text string) (string, *bool) {
	met := value >= want
	if !atLeast {
		met = value < want
	}
	return text, &met
}

// Pipeline runs the chosen stages, each on a fresh database that openDB
// builds an instance on, and returns their figures. dsn is a PostgreSQL
// database to give each stage a schema of (empty: SQLite files).
func Pipeline(ctx context.Context, openDB Open, dsn string, stages []string, sz Sizes, progress Progress) (Report, error) {
	started := time.Now()
	dir, err := os.MkdirTemp("", "stackbill-bench-")
	if err != nil {
		return Report{}, err
	}
	dbs := &stageDB{base: dsn, dir: dir}
	defer dbs.cleanup()
	rep := Report{Database: "sqlite", Go: runtime.Version(), Machine: machine()}
	if store.IsPostgresDSN(dsn) {
		rep.Database = "postgres"
	}
	want := map[string]bool{}
	for _, s := range stages {
		want[s] = true
	}
	add := func(f Figure) { rep.Figures = append(rep.Figures, f) }

	open := func(stage string) (*Instance, string, func(), error) {
		d, err := dbs.next(ctx, stage)
		if err != nil {
			return nil, "", nil, err
		}
		return openDB(ctx, d, nil)
	}
	if want["sustained"] {
		if err := sustainedStage(ctx, openDB, dbs, rep.Database, sz, progress, add); err != nil {
			return rep, err
		}
	}
	if want["memory"] {
		if err := memoryStage(ctx, openDB, dbs, rep.Database, sz, progress, add); err != nil {
			return rep, err
		}
	}
	var floor float64
	if want["floor"] || want["intake"] {
		// The floor: parse the generated input, nothing else.
		_, events := intakeEvents(clock.HourStart(time.Now()), sz.Events)
		var batches [][]byte
		bar := progress.start(int64(len(events)), "generating events")
		for i := 0; i < len(events); i += 1000 {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			for j := i; j < min(i+1000, len(events)); j++ {
				_ = enc.Encode(&events[j])
			}
			batches = append(batches, buf.Bytes())
			if bar != nil {
				_ = bar.Add(min(1000, len(events)-i))
			}
		}
		parser := usage.NewParser()
		t0 := time.Now()
		for _, b := range batches {
			batch, err := parser.Parse(usage.NDJSON, b)
			if err != nil {
				return rep, fmt.Errorf("floor: parse: %v", err)
			}
			if rej := batch.Rejected(); len(rej) > 0 {
				return rep, fmt.Errorf("floor: parse: %v", rej)
			}
		}
		floor = float64(len(events)) / time.Since(t0).Seconds()
		add(Figure{Stage: "floor", Figure: "parse the NDJSON input only", Value: floor, Unit: "events/s", Note: fmt.Sprintf("%d events", len(events))})
	}
	if want["intake"] {
		app, token, closeApp, err := open("intake")
		if err != nil {
			return rep, err
		}
		stop := heapPeak()
		res, err := Intake(ctx, app, token, sz.Events, 4, progress, nil)
		peak := mib(stop())
		if err != nil {
			closeApp()
			return rep, err
		}
		v := float64(res.Events) / res.Duration.Seconds()
		base, err := bulkInsertBaseline(ctx, app.DB, sz.Events)
		if err != nil {
			closeApp()
			return rep, err
		}
		text, met := target(v, 250000, true, "≥ 250,000 events/s (SQLite)")
		if rep.Database != "sqlite" {
			text, met = "(target stated for SQLite)", nil
		}
		name := "bulk INSERT of the same events (SQLite)"
		if rep.Database == "postgres" {
			name = "COPY of the same events (PostgreSQL)"
		}
		add(Figure{Stage: "intake", Figure: "HTTP NDJSON batches of 1,000, 4 producers, durable, deduplicated", Value: v, Unit: "events/s",
			BaselineName: name, Baseline: &base, Ratio: ptr(v / base), Target: text, Met: met, PeakHeapMiB: peak,
			Note: fmt.Sprintf("%.1f%% of the parse-only floor", 100*v/floor)})
		add(withCPU(Figure{Stage: "intake", Figure: "the same, until every event is in the hourly records (aggregation behind the intake log)", Value: float64(res.Events) / res.Aggregated.Seconds(), Unit: "events/s",
			Note: fmt.Sprintf("acknowledged in %.2f s, aggregated in %.2f s", res.Duration.Seconds(), res.Aggregated.Seconds())}, res.CPU, float64(res.Events), "event", rep.Database))
		if want["aggregation"] {
			records, _, err := app.Usage.Totals(ctx)
			if err != nil {
				closeApp()
				return rep, err
			}
			stop := heapPeak()
			t0 := time.Now()
			now := app.Clock.Now()
			pts, err := app.Usage.Series(ctx, usage.SeriesQuery{From: now.Add(-31 * 24 * time.Hour), To: now, Granularity: usage.Daily, By: usage.BySubscription})
			d := time.Since(t0)
			peak := mib(stop())
			if err != nil {
				closeApp()
				return rep, err
			}
			add(Figure{Stage: "aggregation", Figure: "hourly records rolled up to daily totals per subscription (exact decimals)", Value: float64(records) / d.Seconds(),
				Unit: "records/s", PeakHeapMiB: peak, Note: fmt.Sprintf("%d records into %d daily points", records, len(pts))})
		}
		closeApp()
	}
	if want["forward"] || want["ingest"] {
		comDSN, err := dbs.next(ctx, "forward-commerce")
		if err != nil {
			return rep, err
		}
		stackDSN, err := dbs.next(ctx, "forward-stack")
		if err != nil {
			return rep, err
		}
		com, _, closeCom, err := openDB(ctx, comDSN, nil)
		if err != nil {
			return rep, err
		}
		stack, _, closeStack, err := openDB(ctx, stackDSN, nil)
		if err != nil {
			closeCom()
			return rep, err
		}
		stop := heapPeak()
		res, err := Forward(ctx, com, stack, sz.ForwardTenants, sz.ForwardDays, progress, "")
		peak := mib(stop())
		closeStack()
		closeCom()
		if err != nil {
			return rep, err
		}
		if want["forward"] {
			v := float64(res.Records) / res.Duration.Seconds()
			text, met := target(v, 200000, true, "≥ 200,000 records/s")
			add(Figure{Stage: "forward", Figure: "bridge catch-up over HTTP, acknowledged by commerce (mapped, deduplicated, durable)", Value: v, Unit: "records/s",
				Target: text, Met: met, PeakHeapMiB: peak, Note: fmt.Sprintf("%d records (%d tenants × %d days)", res.Records, sz.ForwardTenants, sz.ForwardDays)})
			add(withCPU(Figure{Stage: "forward", Figure: "bridge catch-up until every record is in commerce_usage (billing's table)", Value: float64(res.Records) / res.Materialized.Seconds(), Unit: "records/s",
				Note: "same run, measured from the same start; stack and commerce in one process"}, res.CPU, float64(res.Records), "record", rep.Database))
			add(Figure{Stage: "forward", Figure: "stack seals closed hours into its outbox (done as each hour closes, before the catch-up)", Value: float64(res.Records) / res.Sealed.Seconds(), Unit: "records/s",
				Note: "same backlog"})
		}
		if want["ingest"] && res.Ingest > 0 {
			add(Figure{Stage: "ingest", Figure: "commerce ingest with tenant mapping and dedup (server time of the bridge's batches)", Value: float64(res.Records) / res.Ingest.Seconds(),
				Unit: "records/s", Note: fmt.Sprintf("per batch; two batches are in flight, so commerce's server time sums to %.0f%% of the catch-up's", 100*res.Ingest.Seconds()/res.Duration.Seconds())})
		}
	}
	if want["catch-up"] {
		com, _, closeCom, err := open("catchup-commerce")
		if err != nil {
			return rep, err
		}
		stop := heapPeak()
		// The stacks are SQLite files, whichever engine commerce runs on.
		res, err := CatchUp(ctx, com, openDB, dbs.dir, sz.CatchUpStamps, sz.CatchUpTenants, sz.CatchUpHours, progress)
		peak := mib(stop())
		closeCom()
		if err != nil {
			return rep, err
		}
		note := fmt.Sprintf("%d stamps × %d tenants × %d hours × 2 meters = %d records, every stamp forwarding at once (%d catch-ups turned away and started again); acknowledged in %s, billable in %s (building the stamps took %s, not counted)",
			res.Stamps, res.Tenants, sz.CatchUpHours, res.Records, res.Retries, res.Acked.Round(time.Millisecond), res.Billable.Round(time.Millisecond), res.Setup.Round(time.Second))
		add(withCPU(Figure{Stage: "catch-up", Figure: fmt.Sprintf("%d stamps catching up after an outage, until every record is billable", res.Stamps),
			Value: res.Billable.Seconds(), Unit: "s", PeakHeapMiB: peak, Note: note}, res.CPU, float64(res.Records), "record", rep.Database))
		add(Figure{Stage: "catch-up", Figure: "the same, as a rate", Value: float64(res.Records) / res.Billable.Seconds(), Unit: "records/s",
			Note: fmt.Sprintf("acknowledged at %s records/s", Human(float64(res.Records)/res.Acked.Seconds()))})
	}
	if want["rating"] {
		app, _, closeApp, err := open("rating")
		if err != nil {
			return rep, err
		}
		res, err := Rating(ctx, app, int64(sz.Records), 200, true)
		closeApp()
		if err != nil {
			return rep, err
		}
		v := res.RecordsPerSecond()
		text, met := target(v, 1e6, true, "≥ 1,000,000 records/s, flat memory, at 10M records (bench rating --records 10000000)")
		f := Figure{Stage: "rating", Figure: "rating + invoice drafts of a month", Value: v, Unit: "records/s", Target: text, Met: met,
			PeakHeapMiB: mib(res.PeakHeapBytes), Note: fmt.Sprintf("%d records, invoice total %s", res.Records, res.Total)}
		if res.Baseline > 0 {
			b := float64(res.Records) / res.Baseline.Seconds()
			f.BaselineName, f.Baseline, f.Ratio = "hand-written SQL (COPY + INSERT…SELECT…GROUP BY), same total", &b, ptr(v/b)
			if rep.Database == "sqlite" {
				f.BaselineName = "hand-written SQL (bulk INSERT + INSERT…SELECT…GROUP BY, REAL arithmetic)"
				f.Note += fmt.Sprintf("; SQL baseline total %s (floating point)", res.BaselineTotal)
			}
			f.Note += fmt.Sprintf("; the baseline's INSERT…SELECT alone, after its load: %s records/s (%.2f×)",
				Human(float64(res.Records)/res.BaselineQuery.Seconds()), res.BaselineQuery.Seconds()/res.Rate.Seconds())
		}
		add(withCPU(f, res.CPU, float64(res.Records), "record", rep.Database))
	}
	if want["usage-api"] {
		app, token, closeApp, err := open("usage-api")
		if err != nil {
			return rep, err
		}
		res, err := UsageAPI(ctx, app, token, sz.APIResources, sz.APIDays, 3, progress)
		closeApp()
		if err != nil {
			return rep, err
		}
		p99 := float64(res.P99.Microseconds()) / 1000
		text, met := target(p99, 50, false, "p99 < 50 ms")
		add(Figure{Stage: "usage-api", Figure: "one page (1,000 rows) of Hourly data, p50", Value: float64(res.P50.Microseconds()) / 1000, Unit: "ms",
			Note: fmt.Sprintf("%d resources × %d days, %d requests", sz.APIResources, sz.APIDays, res.Requests)})
		add(Figure{Stage: "usage-api", Figure: "one page (1,000 rows) of Hourly data, p99", Value: p99, Unit: "ms", Target: text, Met: met})
	}
	if want["registration"] {
		app, token, closeApp, err := open("registration")
		if err != nil {
			return rep, err
		}
		res, err := Registration(ctx, app, token, sz.RegistrationClients, time.Duration(sz.RegistrationMs)*time.Millisecond, 0, sz.RegistrationTenants, progress)
		closeApp()
		if err != nil {
			return rep, err
		}
		v := res.PutsPerSecond()
		text, met := target(v, 2000, true, "≥ 2,000 PUT/s")
		add(withCPU(Figure{Stage: "registration", Figure: fmt.Sprintf("customerSubscriptions PUT, %d clients (each with a GET)", res.Clients), Value: v, Unit: "PUT/s",
			Target: text, Met: met, Note: fmt.Sprintf("p50 %s, p99 %s, %d errors", res.PutP50.Round(time.Microsecond), res.PutP99.Round(time.Microsecond), res.Errors)}, res.CPU, float64(res.Puts), "PUT and its GET", rep.Database))
		add(Figure{Stage: "registration", Figure: "customerSubscriptions PUT p99", Value: float64(res.PutP99.Microseconds()) / 1000, Unit: "ms"})
	}
	rep.PeakRSSMiB = peakRSS()
	rep.Seconds = time.Since(started).Seconds()
	return rep, nil
}

// bulkInsertBaseline loads the intake benchmark's events into a bare table
// in batches of 1,000 (one transaction each, as intake commits per batch):
// SQLite multi-row INSERTs, PostgreSQL COPY. It is what storing the events
// costs with nothing else done.
func bulkInsertBaseline(ctx context.Context, db *store.DB, n int) (float64, error) {
	_, events := intakeEvents(clock.HourStart(time.Now()), n)
	if err := db.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE bench_raw_events (id TEXT PRIMARY KEY, subscription_id TEXT, meter_id TEXT, quantity TEXT, start_us BIGINT, end_us BIGINT, resource_uri TEXT)`)
		return err
	}); err != nil {
		return 0, err
	}
	cols := []string{"id", "subscription_id", "meter_id", "quantity", "start_us", "end_us", "resource_uri"}
	t0 := time.Now()
	for i := 0; i < len(events); i += 1000 {
		part := events[i:min(i+1000, len(events))]
		if err := loadRecords(ctx, db, "bench_raw_events", cols, int64(len(part)), func(j int64) []any {
			e := part[j]
			return []any{e.ID, e.SubscriptionID, e.MeterID, e.Quantity.String(), clock.Micros(*e.StartTime), clock.Micros(*e.EndTime), e.ResourceURI}
		}); err != nil {
			return 0, err
		}
	}
	return float64(len(events)) / time.Since(t0).Seconds(), nil
}

// peakRSS is the process's peak resident memory (VmHWM), 0 where unknown.
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d cores, %s", runtime.NumCPU(), cpu)
}

// Human prints a figure with thousands separators, or two decimals below 100.
func Human(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.2f", v)
	}
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// StartCPUProfile profiles the process into path until stop; an empty path
// profiles nothing.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return sync.OnceFunc(func() { pprof.StopCPUProfile(); f.Close() }), nil
}

// streamPair opens a commerce on the engine benchmarked and a stack on a
// SQLite file (beside its cloud), both fresh and on one simulated clock
// from the start of this month (a stream stays inside it, and nothing is
// in the future), for Sustained. close closes both.
func streamPair(ctx context.Context, openDB Open, dbs *stageDB, name string) (com, stack *Instance, token string, close func(), err error) {
	comDSN, err := dbs.next(ctx, name+"-commerce")
	if err != nil {
		return nil, nil, "", nil, err
	}
	clk := clock.Manual(clock.MonthStart(time.Now()).Add(30 * time.Minute))
	com, _, closeCom, err := openDB(ctx, comDSN, clk)
	if err != nil {
		return nil, nil, "", nil, err
	}
	stack, token, closeStack, err := openDB(ctx, filepath.Join(dbs.dir, name+"-stack.db"), clk)
	if err != nil {
		closeCom()
		return nil, nil, "", nil, err
	}
	return com, stack, token, func() { closeStack(); closeCom() }, nil
}

// memoryStage streams each of sz.MemoryEvents events through the whole
// pipeline (Sustained, on fresh databases, at sz.MemoryRate) and reports the
// peak Go heap of each run; every later run's baseline is the first run's
// peak. Memory that followed the usage held (a key set, a backlog, a cache)
// would show as a ratio near the ratio of the event counts; flat means the
// heap depends on the rate and the batch sizes, not on how much usage went
// through.
func memoryStage(ctx context.Context, openDB Open, dbs *stageDB, engine string, sz Sizes, progress Progress, add func(Figure)) error {
	var base float64
	for i, n := range sz.MemoryEvents {
		com, stack, token, closePair, err := streamPair(ctx, openDB, dbs, fmt.Sprint("memory-", i))
		if err != nil {
			return err
		}
		d := time.Duration(n) * time.Second / time.Duration(sz.MemoryRate)
		profile := ""
		if sz.MemoryProfile != "" {
			profile = fmt.Sprintf("%s-%d.pprof", sz.MemoryProfile, n)
		}
		stop := heapPeaks(profile)
		res, err := Sustained(ctx, com, stack, token, sz.MemoryRate, d, time.Duration(sz.SustainedHourMs)*time.Millisecond, 100, progress)
		inuse, live := stop()
		closePair()
		if err != nil {
			return err
		}
		f := Figure{Stage: "memory", Figure: fmt.Sprintf("peak live Go heap, %s events streamed intake to rated (stack on SQLite, commerce on %s)", Human(float64(res.Events)), engine),
			Value: mib(live), Unit: "MiB", PeakHeapMiB: mib(inuse),
			Note: fmt.Sprintf("%s events: offered %s events/s, acknowledged in %.1f s, drained in %.1f s, peak backlog %s events; live heap as the collector marked it, peak heap in use (with garbage) %.0f MiB",
				Human(float64(res.Events)), Human(float64(sz.MemoryRate)), res.Acked.Seconds(), res.Drain.Seconds(), Human(float64(res.PeakBacklog)), mib(inuse))}
		if i == 0 {
			base = mib(live)
		} else {
			text, met := target(mib(live)/base, 1.25, false, "≤ 1.25× the first run's peak")
			f.BaselineName, f.Baseline, f.Ratio, f.Target, f.Met = fmt.Sprintf("peak of the %s-event run", Human(float64(sz.MemoryEvents[0]))), ptr(base), ptr(mib(live)/base), text, met
		}
		add(f)
	}
	return nil
}

// sustainedStage runs Sustained at each of sz.SustainedRates until one does
// not hold, each on fresh databases (the stack on SQLite, beside its cloud;
// commerce on the engine benchmarked), and adds the highest rate that held,
// with the same run's bulk load of as many events into an indexed table as
// its baseline.
func sustainedStage(ctx context.Context, openDB Open, dbs *stageDB, engine string, sz Sizes, progress Progress, add func(Figure)) error {
	var best *SustainedResult
	var tried []string
	var baseline float64
	for i, rate := range sz.SustainedRates {
		com, stack, token, closePair, err := streamPair(ctx, openDB, dbs, fmt.Sprint("sustained-", i))
		if err != nil {
			return err
		}
		res, err := Sustained(ctx, com, stack, token, rate, time.Duration(sz.SustainedSeconds)*time.Second, time.Duration(sz.SustainedHourMs)*time.Millisecond, 100, progress)
		if err == nil && baseline == 0 {
			baseline, err = bulkInsertBaseline(ctx, com.DB, 200000)
		}
		closePair()
		if err != nil {
			return err
		}
		tried = append(tried, fmt.Sprintf("%s/s offered: acknowledged in %.1f s of the %.0f s planned, drained in %.1f s, end to end %s events/s, peak backlog %s events — %s",
			Human(float64(rate)), res.Acked.Seconds(), res.Planned.Seconds(), res.Drain.Seconds(), Human(res.EndToEnd()), Human(float64(res.PeakBacklog)),
			map[bool]string{true: "held", false: "did not hold"}[res.Holds()]))
		if !res.Holds() {
			break
		}
		best = &res
	}
	name := "bulk INSERT of as many events into an indexed table (SQLite)"
	if engine == "postgres" {
		name = "COPY of as many events into an indexed table (PostgreSQL)"
	}
	v := 0.0
	if best != nil {
		v = float64(best.Rate)
	}
	text, met := target(v, 100000, true, "≥ 100,000 events/s")
	f := Figure{Stage: "sustained", Figure: fmt.Sprintf("highest offered rate that held for %d s, intake to rated in the invoice draft (stack on SQLite, commerce on %s)", sz.SustainedSeconds, engine),
		Value: v, Unit: "events/s", BaselineName: name, Baseline: &baseline, Ratio: ptr(v / baseline), Target: text, Met: met,
		Note: "one hourly record per event; held = acknowledged at the offered pace (within a second of the planned end) and drained within a quarter of the planned time; " + strings.Join(tried, "; ")}
	if best != nil {
		f = withCPU(f, best.CPU, float64(best.Events), "event at the highest rate held, producers included", engine)
	}
	add(f)
	return nil
}
