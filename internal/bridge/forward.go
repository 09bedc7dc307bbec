package bridge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/usage"
	"github.com/stackbill/stackbill/internal/wire"
)

const (
	watermarkSetting = "bridge.watermark"
	sealedSetting    = "bridge.sealed"
	// streamedSetting is where the last stream batch sealed ends: the next
	// one starts after it. It differs from sealedSetting when a chunk of
	// records was held whole, which seals no batch.
	streamedSetting = "bridge.streamed"
)

// Grace is how long after an hour closes the forwarder waits before reading
// it, so that intake transactions that began inside the hour have committed.
const Grace = 2 * time.Minute

// Owners tells the forwarder which directory tenants have owned a
// subscription: owners[i] from since[i] on.
type Owners interface {
	Owners(ctx context.Context, subscriptionID string) (since []time.Time, owners []string, err error)
}

// ownerAt picks the owner at t from an ownership history.
func ownerAt(since []time.Time, owners []string, t time.Time) string {
	owner := ""
	for i, from := range since {
		if from.After(t) {
			break
		}
		owner = owners[i]
	}
	return owner
}

// Watermark is the last record forwarded, in (reported hour, id) order.
type Watermark = wire.Position

// Status is what operators see of the bridge.
type Status struct {
	Activated      bool       `json:"activated"`
	Registration   string     `json:"registration,omitempty"`
	UsageReporting bool       `json:"usageReporting"`
	Watermark      Watermark  `json:"watermark"`
	Backlog        int64      `json:"backlogRecords"`
	LagSeconds     float64    `json:"lagSeconds"`
	LastSuccess    *time.Time `json:"lastSuccess,omitempty"`
	LastError      string     `json:"lastError,omitempty"`
	LastErrorAt    *time.Time `json:"lastErrorAt,omitempty"`
	Forwarded      int64      `json:"forwardedRecords"`
	// ForwardedThrough is the instant before which every reported hour has
	// been forwarded whole: usage acknowledged by intake before it is in
	// commerce. It trails the clock by at least Grace, since open hours
	// are never forwarded.
	ForwardedThrough *time.Time `json:"forwardedThrough,omitempty"`
}

// Usage is the stack's hourly records, as the forwarder reads them: Settle
// completes those of reported hours before an instant (the stack aggregates
// intake asynchronously), and ClosedAfter and ClosedBacklog read them in
// forwarding order.
type Usage interface {
	Settle(ctx context.Context, until time.Time) error
	ClosedAfter(ctx context.Context, horizonUs, reportedUs, seq int64, limit int) ([]usage.Closed, error)
	ClosedBacklog(ctx context.Context, horizonUs, reportedUs, seq int64) (n int64, oldestUs *int64, err error)
}

// Holds applies commerce's budget holds to the stack's user subscriptions:
// the tenants held, each with the budget that holds it.
type Holds interface {
	ApplyHolds(ctx context.Context, held map[string]string) (disabled, enabled int, err error)
}

// Forwarder sends a stack's closed hourly records to commerce, at least
// once; commerce's deduplication makes billing exactly once.
type Forwarder struct {
	db     *store.DB
	usage  Usage
	clock  *clock.Clock
	owners Owners
	holds  Holds
	logger *slog.Logger
	client *http.Client
	batch  int
	// zstd compresses batches: at its fastest level it took a quarter of
	// gzip's default CPU to compress (1.0 against 3.9 µs per record) and
	// half to decompress, with a smaller body (BenchmarkWire).
	zstd *zstd.Encoder
	// MaxBackoff caps the wait between failed attempts.
	MaxBackoff time.Duration

	mu     sync.Mutex
	status Status
}

// NewForwarder builds a Forwarder that sends batches of batch records.
func NewForwarder(db *store.DB, c *clock.Clock, owners Owners, holds Holds, use Usage, logger *slog.Logger, batch int) *Forwarder {
	if batch <= 0 || batch > wire.MaxRecords {
		// Measured over loopback with mapping and dedup: 1,000 records per
		// batch caught up at 7.6k records/s, 5,000 at 9.5k, 20,000 at 14.5k;
		// commerce's commit cost is per batch.
		batch = wire.MaxRecords
	}
	// The level is a constant and valid, so NewWriter cannot fail here.
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	return &Forwarder{db: db, usage: use, clock: c, owners: owners, holds: holds, logger: logger, batch: batch, zstd: enc,
		client: &http.Client{Timeout: 60 * time.Second}, MaxBackoff: time.Minute}
}

// PinCA makes the forwarder trust only the given CAs for commerce's TLS
// certificate, instead of the system's roots.
func (f *Forwarder) PinCA(pool *x509.CertPool) {
	f.client.Transport = &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second}
}

// DeliverTo makes the forwarder hand its batches to commerce's handler h in
// this process instead of sending them over the network. It is for
// replaying history (the demo's backfill) through a commerce instance whose
// clock stands in the past, so that each batch is received when a live
// stamp's would have been.
func (f *Forwarder) DeliverTo(h http.Handler) { f.client.Transport = handlerTransport{h} }

// handlerTransport answers requests from a handler in this process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func (f *Forwarder) watermark(ctx context.Context) (Watermark, error) {
	var w Watermark
	text, err := f.db.Setting(ctx, watermarkSetting, func() (string, error) { return `{"reportedHour":0,"id":0}`, nil })
	if err != nil {
		return w, err
	}
	return w, json.Unmarshal([]byte(text), &w)
}

// sealed reads the last record sealed into the outbox, and the setting's
// text for a compare and set. A stack that forwarded before the outbox
// existed starts sealing after its watermark.
func (f *Forwarder) sealed(ctx context.Context) (Watermark, string, error) {
	var w Watermark
	text, err := f.db.Setting(ctx, sealedSetting, func() (string, error) {
		w, err := f.watermark(ctx)
		text, _ := json.Marshal(w)
		return string(text), err
	})
	if err != nil {
		return w, "", err
	}
	return w, text, json.Unmarshal([]byte(text), &w)
}

// horizon is the end of the reported hours that may be forwarded now.
func (f *Forwarder) horizon() int64 { return clock.Micros(clock.HourStart(f.clock.Now().Add(-Grace))) }

// ErrNotActivated means the stack has no activation that reports usage.
var ErrNotActivated = errors.New("the stack is not activated for usage reporting")

// Step forwards one batch and returns how many records it sent.
func (f *Forwarder) Step(ctx context.Context) (int, error) {
	return f.forward(ctx, 1)
}

// CatchUp forwards every closed hour's records and returns how many it
// sent. It keeps inFlight batches posted at once; the watermark still
// advances one acknowledged batch at a time, in order, so a failure
// re-sends from the first batch not acknowledged.
func (f *Forwarder) CatchUp(ctx context.Context) (int, error) {
	return f.forward(ctx, 0)
}

// active returns the activation when it reports usage.
func (f *Forwarder) active(ctx context.Context) (*Activation, error) {
	a, err := LoadActivation(ctx, f.db)
	if err != nil {
		return nil, err
	}
	if a == nil || !a.Claims.UsageReportingEnabled {
		return nil, ErrNotActivated
	}
	return a, nil
}

// Seal completes intake's aggregation of the closed hours and seals their
// records into the outbox; it returns how many records it sealed. Run seals
// before every attempt to post, so the outbox keeps up while commerce is
// unreachable.
func (f *Forwarder) Seal(ctx context.Context) (int, error) {
	a, err := f.active(ctx)
	if err != nil {
		return 0, err
	}
	return f.seal(ctx, a, f.horizon())
}

func (f *Forwarder) seal(ctx context.Context, a *Activation, horizon int64) (int, error) {
	if err := f.usage.Settle(ctx, clock.FromMicros(horizon)); err != nil {
		err = fmt.Errorf("aggregate usage before forwarding: %w", err)
		f.failed(err)
		return 0, err
	}
	total := 0
	for {
		from, was, err := f.sealed(ctx)
		if err != nil {
			return total, err
		}
		p, err := f.prepare(ctx, a, from, horizon)
		if err != nil || p.last == from {
			return total, err
		}
		streamed, streamedWas, err := f.streamed(ctx, from)
		if err != nil {
			return total, err
		}
		var payload []byte
		if len(p.Records) > 0 {
			p.Batch.Stream = &wire.Stream{After: streamed, Through: p.last}
			raw, err := p.Batch.MarshalBinary()
			if err != nil {
				return total, err
			}
			payload = f.zstd.EncodeAll(raw, make([]byte, 0, len(raw)/4))
		}
		now, _ := json.Marshal(p.last)
		sealed := false
		if err := f.db.Write(ctx, func(tx *store.Tx) error {
			// Compare and set: another instance of this stack that sealed
			// the same records first wins, and this batch is dropped.
			swapped, err := tx.SwapSetting(ctx, sealedSetting, was, string(now))
			if err != nil || !swapped {
				return err
			}
			sealed = true
			for _, it := range p.held {
				if err := quarantine.Add(ctx, tx, it); err != nil {
					return err
				}
			}
			if len(p.Records) == 0 {
				return nil
			}
			through, _ := json.Marshal(p.last)
			if swapped, err := tx.SwapSetting(ctx, streamedSetting, streamedWas, string(through)); err != nil || !swapped {
				if err == nil {
					err = errors.New("the stream position moved while sealing")
				}
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO bridge_outbox (first_reported_hour_us, last_reported_hour_us, last_record_id, records, payload) VALUES (?, ?, ?, ?, ?)`,
				clock.Micros(p.Records[0].ReportedHour), p.last.ReportedHour, p.last.ID, len(p.Records), payload)
			return err
		}); err != nil {
			return total, fmt.Errorf("seal usage for forwarding: %w", err)
		}
		if sealed {
			total += len(p.Records)
		}
	}
}

// streamed reads where the last stream batch sealed ends, and the setting's
// text for a compare and set; a stack that sealed before streams existed
// starts its stream where sealing stands (from).
func (f *Forwarder) streamed(ctx context.Context, from Watermark) (Watermark, string, error) {
	var w Watermark
	text, err := f.db.Setting(ctx, streamedSetting, func() (string, error) {
		text, err := json.Marshal(from)
		return string(text), err
	})
	if err != nil {
		return w, "", err
	}
	if err := json.Unmarshal([]byte(text), &w); err != nil {
		return w, "", err
	}
	// The stream never runs ahead of sealing. Were it to (a database put
	// back in part, the settings of another time), batches would claim to
	// follow records commerce never had and be taken whole while they
	// repeat: start it where sealing stands, and commerce will look at them.
	if w.Compare(from) > 0 {
		w = from
	}
	return w, text, nil
}

// Release seals a record that sealing held, once it passes the checks that
// held it (an operator's release after the cause was fixed), as a batch of
// its own. It carries no stream position, so commerce deduplicates it by
// record ID and its place in the order does not matter; the batch commits the watermark where sealing stands, as
// every batch before it in the outbox ends at or before that.
func (f *Forwarder) Release(ctx context.Context, tx *store.Tx, it quarantine.Item, now time.Time) error {
	var r wire.Record
	if err := json.Unmarshal(it.Payload, &r); err != nil {
		return arm.InvalidRequest("", "Quarantined item %d does not decode (%v), so it cannot be sealed; drop it.", it.ID, err)
	}
	if why := r.Check(); why != "" {
		return arm.InvalidRequest("", "Quarantined item %d still cannot be forwarded: %s. Drop it.", it.ID, why)
	}
	a, err := f.active(ctx)
	if err != nil {
		return arm.InvalidRequest("", "The stack is not activated for usage reporting, so nothing can be sealed.")
	}
	text, _, err := tx.Setting(ctx, sealedSetting)
	if err != nil {
		return err
	}
	var at Watermark
	if err := json.Unmarshal([]byte(text), &at); err != nil {
		return err
	}
	raw, err := (wire.Batch{CloudID: a.Claims.CloudID, Records: []wire.Record{r}}).MarshalBinary()
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO bridge_outbox (first_reported_hour_us, last_reported_hour_us, last_record_id, records, payload) VALUES (?, ?, ?, 1, ?)`,
		clock.Micros(r.ReportedHour), at.ReportedHour, at.ID, f.zstd.EncodeAll(raw, nil))
	return err
}

// outboxRow is a sealed batch.
type outboxRow struct {
	id      int64
	records int
	last    Watermark
	payload []byte
}

// nextSealed reads the first sealed batch after outbox row id.
func (f *Forwarder) nextSealed(ctx context.Context, after int64) (outboxRow, bool, error) {
	var r outboxRow
	err := f.db.QueryRowContext(ctx, `SELECT id, records, last_reported_hour_us, last_record_id, payload FROM bridge_outbox WHERE id > ? ORDER BY id LIMIT 1`, after).
		Scan(&r.id, &r.records, &r.last.ReportedHour, &r.last.ID, &r.payload)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	return r, err == nil, err
}

// inFlight is how many sealed batches the forwarder has posted and not yet
// seen acknowledged. Two let commerce decode and map one batch while it
// writes the other; acknowledgements are still taken in order.
const inFlight = 2

// forward sends up to maxBatches batches (0: until none is left).
func (f *Forwarder) forward(ctx context.Context, maxBatches int) (int, error) {
	a, err := f.active(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := f.seal(ctx, a, f.horizon()); err != nil {
		return 0, err
	}
	next, more, err := f.nextSealed(ctx, 0)
	if err != nil {
		return 0, err
	}
	if !more {
		f.succeeded(0)
		return 0, nil
	}
	type posting struct {
		row  outboxRow
		done chan error
	}
	var window []posting
	// A failure leaves later batches in flight; they finish (commerce may
	// well keep them, and recognises them when they are sent again) before
	// forward returns, so no post outlives it.
	defer func() {
		for _, p := range window {
			<-p.done
		}
	}()
	sent, started := 0, 0
	var readErr error
	// prev is closed when the post before the newest one has finished, and
	// ok says whether commerce acknowledged it.
	var prev chan struct{}
	var prevOK *bool
	for {
		for more && readErr == nil && len(window) < inFlight && (maxBatches == 0 || started < maxBatches) {
			p := posting{row: next, done: make(chan error, 1)}
			wait, waitOK := prev, prevOK
			finished, ok := make(chan struct{}), new(bool)
			go func() {
				defer close(finished)
				err := f.post(ctx, a, p.row.payload)
				// Commerce took the batch before its predecessor (two are in
				// flight): once that one is in, this one fits.
				var order *OutOfOrderError
				if errors.As(err, &order) && wait != nil {
					<-wait
					if *waitOK {
						err = f.post(ctx, a, p.row.payload)
					}
				}
				*ok = err == nil
				p.done <- err
			}()
			prev, prevOK = finished, ok
			window, started = append(window, p), started+1
			next, more, readErr = f.nextSealed(ctx, p.row.id)
		}
		if len(window) == 0 {
			return sent, readErr
		}
		head := window[0]
		window = window[1:]
		if err := <-head.done; err != nil {
			var order *OutOfOrderError
			if errors.As(err, &order) {
				// Commerce has not got what this stack took as
				// acknowledged (its database was restored): forward again
				// from where commerce stands.
				for _, p := range window {
					<-p.done
				}
				window = nil
				if rerr := f.rewind(ctx, order.At); rerr != nil {
					err = fmt.Errorf("%w; rewinding failed: %v", err, rerr)
				}
			}
			f.failed(err)
			return sent, err
		}
		// Only after commerce acknowledged, and in order: a crash before
		// this line re-sends the batch, which commerce recognises by its
		// stream position.
		if err := f.commit(ctx, head.row); err != nil {
			return sent, err
		}
		sent += head.row.records
	}
}

// OutOfOrderError is commerce's answer to a stream batch that does not
// start where the stack's stream stands on commerce: At.
type OutOfOrderError struct {
	At      Watermark
	Message string
}

func (e *OutOfOrderError) Error() string { return e.Message }

// rewindOutbox drops the sealed stream batches, which will be sealed again
// from at, and keeps the records released from quarantine (batches without
// a stream position, which no sealing would make again), moving their
// watermark to at.
func rewindOutbox(ctx context.Context, tx *store.Tx, at Watermark) error {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return err
	}
	defer dec.Close()
	type row struct {
		id      int64
		payload []byte
	}
	var rows []row
	rs, err := tx.QueryContext(ctx, `SELECT id, payload FROM bridge_outbox ORDER BY id`)
	if err != nil {
		return err
	}
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.id, &r.payload); err != nil {
			rs.Close()
			return err
		}
		rows = append(rows, r)
	}
	if err := errors.Join(rs.Err(), rs.Close()); err != nil {
		return err
	}
	for _, r := range rows {
		var b wire.Batch
		raw, err := dec.DecodeAll(r.payload, nil)
		if err == nil {
			err = b.UnmarshalBinary(raw)
		}
		if err == nil && b.Stream == nil {
			if _, err := tx.ExecContext(ctx, `UPDATE bridge_outbox SET last_reported_hour_us = ?, last_record_id = ? WHERE id = ?`, at.ReportedHour, at.ID, r.id); err != nil {
				return err
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM bridge_outbox WHERE id = ?`, r.id); err != nil {
			return err
		}
	}
	return nil
}

// rewind forwards again from at, where commerce's stream stands: the
// outbox is dropped and the records after at sealed anew. Records before
// at stay forwarded. It only ever moves back.
func (f *Forwarder) rewind(ctx context.Context, at Watermark) error {
	w, err := f.watermark(ctx)
	if err != nil || at.Compare(w) >= 0 {
		return err
	}
	text, _ := json.Marshal(at)
	f.logger.Warn("bridge: commerce does not have usage this stack forwarded and saw acknowledged (was its database restored?); forwarding again from commerce's position",
		"stack_watermark", w, "commerce_position", at)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.db.Write(ctx, func(tx *store.Tx) error {
		if err := rewindOutbox(ctx, tx, at); err != nil {
			return err
		}
		for _, key := range []string{watermarkSetting, sealedSetting, streamedSetting} {
			if err := tx.PutSetting(ctx, key, string(text)); err != nil {
				return err
			}
		}
		return nil
	})
}

// prepared is a batch ready to seal, the last record it covers, and the
// records it holds back because commerce could not take them.
type prepared struct {
	wire.Batch
	last Watermark
	held []quarantine.Item
}

// prepare reads the next batch of closed-hour records after w, each with
// the tenant that owned its subscription in its usage hour.
func (f *Forwarder) prepare(ctx context.Context, a *Activation, w Watermark, horizon int64) (prepared, error) {
	out := prepared{Batch: wire.Batch{CloudID: a.Claims.CloudID}, last: w}
	rs, err := f.usage.ClosedAfter(ctx, horizon, w.ReportedHour, w.ID, f.batch)
	if err != nil {
		return out, err
	}
	type history struct {
		since  []time.Time
		owners []string
	}
	owners := map[string]history{}
	out.Records = make([]wire.Record, 0, len(rs))
	for _, r := range rs {
		// The tenant that owned the subscription in the usage hour: a
		// subscription that changed hands bills each hour to its owner then.
		h, seen := owners[r.Subscription]
		if !seen {
			if h.since, h.owners, err = f.owners.Owners(ctx, r.Subscription); err != nil {
				return out, err
			}
			owners[r.Subscription] = h
		}
		owner := ownerAt(h.since, h.owners, clock.FromMicros(r.HourUs))
		rec := wire.Record{ID: wire.RecordID(a.Claims.CloudID, r.Subscription, r.Meter, r.Instance, r.HourUs, r.ReportedUs), SubscriptionID: r.Subscription, TenantID: owner,
			MeterID: r.Meter, Quantity: r.Quantity, UsageHour: clock.FromMicros(r.HourUs), ReportedHour: clock.FromMicros(r.ReportedUs), ResourceURI: r.ResourceURI, Location: r.Location,
			Tags: json.RawMessage(r.Tags), AdditionalInfo: json.RawMessage(r.AdditionalInfo)}
		out.last = Watermark{ReportedHour: r.ReportedUs, ID: r.Seq}
		if why := rec.Check(); why != "" {
			// Commerce would refuse the whole batch for it, and the stack's
			// other tenants would wait forever: hold it instead.
			payload, _ := json.Marshal(rec)
			hour := rec.UsageHour
			out.held = append(out.held, quarantine.Item{At: f.clock.Now(), Stage: quarantine.Seal, Key: rec.ID, Reason: why, SubscriptionID: r.Subscription,
				MeterKey: r.Meter, UsageHour: &hour, Quantity: r.Quantity.String(), Records: 1, Payload: payload})
			continue
		}
		out.Records = append(out.Records, rec)
	}
	return out, nil
}

// commit advances the watermark past an acknowledged sealed batch and
// removes it from the outbox.
func (f *Forwarder) commit(ctx context.Context, r outboxRow) error {
	text, _ := json.Marshal(r.last)
	hour := clock.Micros(clock.HourStart(f.clock.Now()))
	// The watermark and the in-memory counters change together under mu, so
	// a Status never shows the new backlog with the old count.
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.Write(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM bridge_outbox WHERE id = ?`, r.id); err != nil {
			return err
		}
		if err := tx.PutSetting(ctx, watermarkSetting, string(text)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO bridge_forward_hours (hour_us, records, batches) VALUES (?, ?, 1)
			ON CONFLICT (hour_us) DO UPDATE SET records = bridge_forward_hours.records + excluded.records, batches = bridge_forward_hours.batches + 1`, hour, r.records)
		return err
	}); err != nil {
		return err
	}
	f.succeededLocked(r.records)
	return nil
}

func (f *Forwarder) post(ctx context.Context, a *Activation, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(a.Claims.UsageEndpoint, "/")+"/v1/bridge/usage", bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", wire.ContentTypeBinary)
	req.Header.Set("Content-Encoding", "zstd")
	req.Header.Set("Authorization", "Bearer "+a.Claims.BridgeToken)
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("post usage to commerce: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusConflict && resp.Header.Get(wire.StreamAtHeader) != "" {
		e := &OutOfOrderError{Message: fmt.Sprintf("commerce answered %d: %s", resp.StatusCode, bytes.TrimSpace(body))}
		if json.Unmarshal([]byte(resp.Header.Get(wire.StreamAtHeader)), &e.At) == nil {
			return e
		}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("commerce answered %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

func (f *Forwarder) succeeded(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.succeededLocked(n)
}

func (f *Forwarder) succeededLocked(n int) {
	now := f.clock.Now()
	f.status.LastSuccess = &now
	f.status.Forwarded += int64(n)
}

func (f *Forwarder) failed(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	f.status.LastError, f.status.LastErrorAt = err.Error(), &now
}

// Run forwards until ctx ends: batches back to back while there is backlog,
// a pause when caught up, and exponential backoff with jitter after errors,
// so an outage is ridden out and caught up in order.
func (f *Forwarder) Run(ctx context.Context) {
	failures := 0
	var synced time.Time
	for ctx.Err() == nil {
		// Budget holds change rarely and matter within minutes: once a
		// minute, whatever forwarding does.
		if time.Since(synced) >= time.Minute {
			synced = time.Now()
			if err := f.SyncHolds(ctx); err != nil && ctx.Err() == nil {
				f.logger.Warn("bridge: budget holds not synced", "err", err)
			}
		}
		n, err := f.CatchUp(ctx)
		wait := time.Duration(0)
		switch {
		case errors.Is(err, ErrNotActivated):
			wait = min(10*time.Second, f.MaxBackoff)
		case err != nil:
			failures++
			backoff := min(time.Second<<min(failures, 6), f.MaxBackoff)
			wait = backoff/2 + rand.N(backoff/2+1)
			f.logger.Warn("bridge: forwarding failed; backing off", "err", err, "retry_in", wait.Round(time.Millisecond))
		case n == 0:
			failures = 0
			wait = min(5*time.Second, f.MaxBackoff)
		default:
			failures = 0
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
}

// SyncHolds asks commerce which of this stamp's tenants a budget holds
// disabled, and disables or re-enables their user subscriptions to match.
// A stack not activated has nothing to ask; a commerce that predates holds
// answers 404, which is no hold.
func (f *Forwarder) SyncHolds(ctx context.Context) error {
	a, err := f.active(ctx)
	if errors.Is(err, ErrNotActivated) {
		return nil
	}
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(a.Claims.UsageEndpoint, "/")+"/v1/bridge/holds", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.Claims.BridgeToken)
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("ask commerce for budget holds: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("commerce answered %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	var page struct {
		Value []struct {
			TenantID string `json:"tenantId"`
			BudgetID string `json:"budgetId"`
		} `json:"value"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("commerce's budget holds: %w", err)
	}
	held := map[string]string{}
	for _, h := range page.Value {
		held[h.TenantID] = h.BudgetID
	}
	disabled, enabled, err := f.holds.ApplyHolds(ctx, held)
	if err == nil && disabled+enabled > 0 {
		f.logger.Info("bridge: budget holds applied", "held_tenants", len(held), "subscriptions_disabled", disabled, "subscriptions_enabled", enabled)
	}
	return err
}

// HourCount is how many records were forwarded or received in one hour.
type HourCount struct {
	Hour    time.Time `json:"hour"`
	Records int64     `json:"records"`
	Batches int64     `json:"batches"`
}

// ForwardedPerHour reports the records forwarded in each hour from since on,
// hours without forwarding left out.
func (f *Forwarder) ForwardedPerHour(ctx context.Context, since time.Time) ([]HourCount, error) {
	rows, err := f.db.QueryContext(ctx, `SELECT hour_us, records, batches FROM bridge_forward_hours WHERE hour_us >= ? ORDER BY hour_us`, clock.Micros(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []HourCount
	for rows.Next() {
		var h HourCount
		var us int64
		if err := rows.Scan(&us, &h.Records, &h.Batches); err != nil {
			return nil, err
		}
		h.Hour = clock.FromMicros(us)
		out = append(out, h)
	}
	return out, rows.Err()
}

// Status reports the bridge's state, with the backlog counted now. It
// settles intake first, so acknowledged events not yet aggregated count in
// the backlog rather than hiding from it.
func (f *Forwarder) Status(ctx context.Context) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	a, err := LoadActivation(ctx, f.db)
	if err != nil {
		return st, err
	}
	if a != nil {
		st.Activated, st.Registration, st.UsageReporting = true, a.Claims.RegistrationName, a.Claims.UsageReportingEnabled
	}
	if st.Watermark, err = f.watermark(ctx); err != nil {
		return st, err
	}
	horizon := f.horizon()
	if err := f.usage.Settle(ctx, clock.FromMicros(horizon)); err != nil {
		return st, err
	}
	// The backlog is what is sealed and not acknowledged, and what is not
	// sealed yet.
	sealed, _, err := f.sealed(ctx)
	if err != nil {
		return st, err
	}
	var oldestSealed *int64
	unsealed, oldest, err := f.usage.ClosedBacklog(ctx, horizon, sealed.ReportedHour, sealed.ID)
	if err != nil {
		return st, err
	}
	if err := f.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(records), 0), MIN(first_reported_hour_us) FROM bridge_outbox`).Scan(&st.Backlog, &oldestSealed); err != nil {
		return st, err
	}
	st.Backlog += unsealed
	if oldestSealed != nil {
		oldest = oldestSealed
	}
	through := horizon
	if oldest != nil {
		st.LagSeconds = f.clock.Now().Sub(clock.FromMicros(*oldest).Add(time.Hour)).Seconds()
		through = *oldest
	}
	if st.Activated && st.UsageReporting {
		t := clock.FromMicros(through)
		st.ForwardedThrough = &t
	}
	return st, nil
}

// PurgeOutbox deletes sealed batches that end before cutoff, with the
// records they were sealed from (RetentionCutoff): a stack that stopped
// reporting usage keeps neither past its retention.
func (f *Forwarder) PurgeOutbox(ctx context.Context, cutoff time.Time) (int64, error) {
	return f.db.DeleteInBatches(ctx, `DELETE FROM bridge_outbox WHERE id IN (SELECT id FROM bridge_outbox WHERE last_reported_hour_us < ? ORDER BY id LIMIT 50)`, clock.Micros(cutoff))
}

// RetentionCutoff is how far back a stack may delete its hourly records
// when it keeps them for keep: never past what the bridge has forwarded,
// unless the stack does not report usage (no activation, or reporting off),
// when age alone decides.
func (f *Forwarder) RetentionCutoff(ctx context.Context, keep time.Duration) (time.Time, error) {
	cutoff := clock.HourStart(f.clock.Now().Add(-keep))
	a, err := LoadActivation(ctx, f.db)
	if err != nil {
		return time.Time{}, err
	}
	if a == nil || !a.Claims.UsageReportingEnabled {
		return cutoff, nil
	}
	w, err := f.watermark(ctx)
	if err != nil {
		return time.Time{}, err
	}
	// Records of the watermark's hour may not all be forwarded yet.
	if forwarded := clock.FromMicros(w.ReportedHour); forwarded.Before(cutoff) {
		return forwarded, nil
	}
	return cutoff, nil
}
