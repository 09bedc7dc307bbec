// Package usage is the stack's usage pipeline: intake of raw usage events from
// resource providers, idempotency, splitting into hourly records, and the
// Azure-compatible usage APIs (Microsoft.Commerce UsageAggregates for tenants,
// Microsoft.Commerce.Admin subscriberUsageAggregates for providers).
//
// # Records
//
// Each accepted event is split across the UTC hours it covers, in proportion
// to time, and added to the hourly record of its subscription, meter,
// resource instance, usage hour and reported hour (the hour in which stackbill
// received it). Each part is the difference of the event's running total,
// rounded to 12 decimal places, at the end and at the start of its hour, so
// parts are never negative and always sum exactly to the event. A record changes
// only while its reported hour is open; the APIs answer only closed reported
// hours (reportedEndTime may not be in the future and must lie on an hour
// boundary), so what a client or the bridge has read never changes. A late
// event lands in its own usage hour under the current reported hour, as a new
// record.
//
// # Batches
//
// A batch is processed event by event: valid events are kept, and every
// rejected event is reported by its index with the reason. Accepted events
// and their idempotency keys are committed in one transaction before the
// response is sent, so an acknowledged event survives a crash and a failed
// write never marks an event as seen. A re-sent event ID is acknowledged as a
// duplicate and not counted again for at least 35 days.
package usage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/bytedance/sonic"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/drainer"
	"github.com/stackbill/stackbill/internal/idempotency"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/store"
)

// DedupRetention is how long an event ID is remembered.
const DedupRetention = 35 * 24 * time.Hour

// MaxEventAge bounds how old an event's usage may be when it arrives: a
// month of backfill and a few days' slack. It is inside DedupRetention on
// purpose: an event is first received no earlier than its start, so by the
// time its ID is forgotten the event itself is too old to be taken again,
// and a re-sent event can never be counted twice.
const MaxEventAge = 34 * 24 * time.Hour

// Bounds of an event's strings. Stored strings must also be valid UTF-8
// without NUL, which PostgreSQL's TEXT refuses: an event that one engine
// could not store would stop aggregation for every tenant.
const (
	maxURI       = 2048
	maxLocation  = 128
	maxTags      = 50
	maxTagKey    = 512
	maxTagValue  = 256
	maxAddlBytes = 16 << 10
)

// storable reports whether s can be stored as TEXT by both engines.
func storable(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// MaxBatch bounds the events in one request.
const MaxBatch = 10000

// maxLine bounds one NDJSON line.
const maxLine = 1 << 20

// partPlaces is the precision of the hourly parts of a split event.
const partPlaces = 12

// Event is one usage event from a resource provider.
type Event struct {
	ID             string            `json:"id"`
	Source         string            `json:"source,omitempty"`
	SubscriptionID string            `json:"subscriptionId"`
	MeterID        string            `json:"meterId"`
	Quantity       *money.Quantity   `json:"quantity"`
	StartTime      *time.Time        `json:"startTime"`
	EndTime        *time.Time        `json:"endTime"`
	ResourceURI    string            `json:"resourceUri,omitempty"`
	Location       string            `json:"location,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
	AdditionalInfo json.RawMessage   `json:"additionalInfo,omitempty"`
}

// Rejection reports one refused event.
type Rejection struct {
	Index  int    `json:"index"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

// Result reports what happened to a batch.
type Result struct {
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Rejected   []Rejection `json:"rejected"`
}

// Format is the wire format of a batch.
type Format int

const (
	NDJSON Format = iota
	JSONArray
	CloudEventsBatch
)

// FormatOf picks the format from the Content-Type and the body's first byte.
func FormatOf(contentType string, body []byte) Format {
	ct := strings.ToLower(contentType)
	switch {
	case strings.HasPrefix(ct, "application/cloudevents-batch+json"):
		return CloudEventsBatch
	case strings.HasPrefix(ct, "application/x-ndjson"), strings.HasPrefix(ct, "application/ndjson"), strings.HasPrefix(ct, "application/jsonl"):
		return NDJSON
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		return JSONArray
	}
	return NDJSON
}

// cloudEvent is the CloudEvents 1.0 envelope; the usage event is in data.
type cloudEvent struct {
	SpecVersion string          `json:"specversion"`
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	Type        string          `json:"type"`
	Time        string          `json:"time,omitempty"`
	Data        json.RawMessage `json:"data"`
	ContentType string          `json:"datacontenttype,omitempty"`
	Subject     string          `json:"subject,omitempty"`
}

// wireEvent is an event as intake decodes it. Every field is a string or a
// raw JSON token, so the decoder allocates little and its strings point into
// the request body (which outlives the batch); the quantity keeps its text
// and the times are parsed by validate. Decoding into Event's typed fields
// took 4.1 µs per simulator event, this 2.4 µs (BenchmarkDecodeEvent).
type wireEvent struct {
	ID             string            `json:"id"`
	Source         string            `json:"source,omitempty"`
	SubscriptionID string            `json:"subscriptionId"`
	MeterID        string            `json:"meterId"`
	Quantity       json.RawMessage   `json:"quantity"`
	StartTime      string            `json:"startTime"`
	EndTime        string            `json:"endTime"`
	ResourceURI    string            `json:"resourceUri,omitempty"`
	Location       string            `json:"location,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
	AdditionalInfo json.RawMessage   `json:"additionalInfo,omitempty"`

	parsed bool // false where parsing already refused the element
}

// wire is e as intake would have decoded it from JSON.
func (e *Event) wire() wireEvent {
	w := wireEvent{ID: e.ID, Source: e.Source, SubscriptionID: e.SubscriptionID, MeterID: e.MeterID, ResourceURI: e.ResourceURI,
		Location: e.Location, Tags: e.Tags, AdditionalInfo: e.AdditionalInfo, parsed: true}
	if e.Quantity != nil {
		w.Quantity = json.RawMessage(e.Quantity.String())
	}
	if e.StartTime != nil {
		w.StartTime = e.StartTime.Format(time.RFC3339Nano)
	}
	if e.EndTime != nil {
		w.EndTime = e.EndTime.Format(time.RFC3339Nano)
	}
	return w
}

// Batch is a parsed intake body: its elements, and those refused while
// parsing, by index.
type Batch struct {
	events   []wireEvent
	rejected []Rejection
}

// Len is the number of elements in the body.
func (b *Batch) Len() int { return len(b.events) }

// Rejected lists the elements refused while parsing.
func (b *Batch) Rejected() []Rejection { return b.rejected }

// Parse splits a body into events. Each element is decoded on its own, so a
// malformed element is rejected by index and does not sink the batch; only a
// body whose framing is broken (an array that does not parse) is an error.
// The batch refers to body, which must not change while the batch is in use.
func (p *Parser) Parse(format Format, body []byte) (*Batch, error) {
	var raws []json.RawMessage
	switch format {
	case NDJSON:
		// Lines are slices of body, not copies.
		for rest := body; len(rest) > 0; {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			if len(line) > maxLine {
				return nil, arm.InvalidRequest("", "The NDJSON body could not be read: a line is longer than %d bytes", maxLine)
			}
			if line = bytes.TrimSpace(line); len(line) > 0 {
				raws = append(raws, line)
			}
		}
	default:
		if err := p.api.Unmarshal(body, &raws); err != nil {
			return nil, arm.InvalidRequest("", "The body must be a JSON array of events: %v", err)
		}
	}
	if len(raws) > MaxBatch {
		return nil, arm.Errorf(arm.TooLarge, "BatchTooLarge", "A batch holds at most %d events; this one has %d. Split it.", MaxBatch, len(raws))
	}
	b := &Batch{events: make([]wireEvent, len(raws))}
	for i, raw := range raws {
		if err := p.decodeEvent(format, raw, &b.events[i]); err != nil {
			b.events[i] = wireEvent{}
			b.rejected = append(b.rejected, Rejection{Index: i, ID: peekID(raw), Reason: err.Error()})
			continue
		}
		b.events[i].parsed = true
	}
	return b, nil
}

func (p *Parser) decodeEvent(format Format, raw json.RawMessage, e *wireEvent) error {
	if format == CloudEventsBatch {
		var ce cloudEvent
		if err := p.strictDecode(raw, &ce); err != nil {
			return fmt.Errorf("malformed CloudEvent: %v", err)
		}
		if ce.SpecVersion != "1.0" {
			return fmt.Errorf("malformed CloudEvent: specversion %q, want \"1.0\"", ce.SpecVersion)
		}
		if ce.ID == "" || ce.Source == "" {
			return fmt.Errorf("malformed CloudEvent: id and source are required")
		}
		if len(ce.Data) == 0 {
			return fmt.Errorf("malformed CloudEvent: data holds the usage event and is missing")
		}
		if err := p.strictDecode(ce.Data, e); err != nil {
			return fmt.Errorf("malformed value: %v", err)
		}
		e.ID, e.Source = ce.ID, ce.Source
		return nil
	}
	if err := p.strictDecode(raw, e); err != nil {
		return fmt.Errorf("malformed value: %v", err)
	}
	return nil
}

// strictDecode decodes one element. Intake spends most of its CPU here, so
// the decoder was chosen by measurement (BenchmarkDecodeEvent, simulator
// events of 450 bytes, two cores): bytedance/sonic decodes one into a
// wireEvent in 0.6 µs, encoding/json/v2's reference implementation in
// 1.4 µs; goccy/go-json, mailru/easyjson, valyala/fastjson and
// buger/jsonparser were slower than sonic on the same input. Sonic follows
// encoding/json's rules (names match case-insensitively, the last of
// repeated names wins) and falls back to encoding/json where its JIT does
// not run.
//
// raw is handed to sonic as a string without a copy (sonic's Unmarshal
// copies the input first, which was a third of its time), so decoded strings
// point into raw. That is safe because intake never writes to a body after
// reading it.
func (p *Parser) strictDecode(raw []byte, v any) error {
	if len(raw) == 0 {
		return p.api.UnmarshalFromString("", v)
	}
	return p.api.UnmarshalFromString(unsafe.String(&raw[0], len(raw)), v)
}

// Parser decodes intake bodies.
type Parser struct{ api sonic.API }

// NewParser builds a Parser that refuses unknown fields. Decoded strings
// are not copied: they point into the body.
func NewParser() *Parser {
	return &Parser{api: sonic.Config{DisallowUnknownFields: true}.Froze()}
}

func peekID(raw json.RawMessage) string {
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &v)
	if len(v.ID) > 256 {
		return v.ID[:256]
	}
	return v.ID
}

// part is one hour of one event.
type part struct {
	hour time.Time
	qty  money.Quantity
}

// split allocates an event's total to the hours it covers in proportion to
// time. A point event (start == end) lands wholly in its hour. Parts sum
// exactly to the total.
func split(total money.Quantity, start, end time.Time) []part {
	if !end.After(start) {
		return []part{{clock.HourStart(start), total}}
	}
	// Each part is the difference of the rounded running total at its
	// hour's end and at its start. A rounded running total never falls as
	// time goes on and never passes the total, so no part is negative (the
	// fuzzer found one when every part was rounded on its own and a month's
	// rounding errors landed on a last hour of 68 µs), and the parts still
	// sum exactly to the event.
	span := end.Sub(start).Microseconds()
	var parts []part
	before := money.Zero
	for h := clock.HourStart(start); h.Before(end); h = h.Add(time.Hour) {
		from, to := maxTime(h, start), minTime(h.Add(time.Hour), end)
		if !to.After(from) {
			continue
		}
		upTo := total
		if to.Before(end) {
			upTo = total.MulFrac(to.Sub(start).Microseconds(), span, partPlaces)
			if upTo.Above(total) {
				upTo = total
			}
		}
		parts = append(parts, part{h, upTo.Sub(before)})
		before = upTo
	}
	return parts
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// recordKey identifies an hourly record.
type recordKey struct {
	sub, meter, instance string
	hour, reported       int64
}

type recordVal struct {
	qty                               money.Quantity
	events                            int64
	resourceURI, location, tags, addl string
}

// SubscriptionLookup tells intake whether a subscription exists on the stack.
type SubscriptionLookup interface {
	Exists(ctx context.Context, id string) (bool, error)
}

// Service runs intake and the usage APIs.
type Service struct {
	db     *store.DB
	clock  *clock.Clock
	meters *meter.Catalogue
	subs   SubscriptionLookup
	dedup  idempotency.Keys
	parser *Parser
	// loop aggregates the intake log behind intake.
	loop        *drainer.Loop
	aggregated  atomic.Int64
	quarantined atomic.Int64

	knownMu sync.RWMutex
	known   map[string]time.Time // subscription → trusted until (wall clock)

	// floor is the earliest instant a batch may be received at
	// (microseconds): the latest instant one was, and on start the latest
	// reported hour stored, so the reported time of usage never goes back.
	// A clock that does (a stack restored on a host whose time is wrong,
	// an NTP step) would otherwise put new usage in reported hours the
	// bridge has sealed, which it never reads again. The bridge seals
	// through a record it read, so no batch was received after the hour it
	// sealed through. Only batches move it: a reader that settled through
	// a clock's far-future instant must not push usage there.
	floor       atomic.Int64
	floorLoaded atomic.Bool
	// behind counts batches received at the floor because the clock was
	// more than clockSlack behind it, and behindUs is by how much at the
	// latest batch (0 once it caught up): an operator must hear that the
	// host's time went back, because usage waits at the floor until it
	// catches up.
	behind   atomic.Int64
	behindUs atomic.Int64
	logger   *slog.Logger
}

// clockSlack is how far behind the floor the clock may read before intake
// calls it a step back: on PostgreSQL concurrent batches read the clock
// and raise the floor in either order.
const clockSlack = time.Second

// raiseFloor moves the floor up to t (microseconds), never down.
func (s *Service) raiseFloor(t int64) {
	for {
		f := s.floor.Load()
		if t <= f || s.floor.CompareAndSwap(f, t) {
			return
		}
	}
}

// loadFloor sets the floor from what is stored, once per process.
func (s *Service) loadFloor(ctx context.Context) error {
	if s.floorLoaded.Load() {
		return nil
	}
	var records, logged int64
	if err := s.db.QueryRowContext(ctx, `SELECT (SELECT COALESCE(MAX(reported_hour_us), 0) FROM usage_records), (SELECT COALESCE(MAX(received_us), 0) FROM usage_log)`).Scan(&records, &logged); err != nil {
		return fmt.Errorf("read the latest reported hour: %w", err)
	}
	s.raiseFloor(max(records, logged))
	s.floorLoaded.Store(true)
	return nil
}

// received is the instant a batch taken now is received at: the clock, or
// the floor when the clock is behind it. Called under intake's lock.
func (s *Service) received() time.Time {
	return s.notBefore(s.clock.Now())
}

// notBefore is now, or the floor when now is behind it; a clock more than
// clockSlack behind is counted and logged once as it goes behind and once
// as it catches up.
func (s *Service) notBefore(now time.Time) time.Time {
	f := s.floor.Load()
	lag := f - clock.Micros(now)
	if lag > clockSlack.Microseconds() {
		s.behind.Add(1)
		if s.behindUs.Swap(lag) == 0 {
			s.logger.Warn("the clock is behind usage already received; usage is taken at the latest instant received until the clock catches up",
				"clock", now.Format(time.RFC3339Nano), "received_through", clock.FromMicros(f).Format(time.RFC3339Nano), "behind", time.Duration(lag)*time.Microsecond)
		}
	} else if s.behindUs.Swap(0) != 0 {
		s.logger.Info("the clock caught up with usage already received", "clock", now.Format(time.RFC3339Nano))
	}
	if lag > 0 {
		return clock.FromMicros(f)
	}
	return now
}

// ClockBehind reports how many batches were received at the floor because
// the clock was behind it, and by how much it was at the latest batch (0
// when it no longer is).
func (s *Service) ClockBehind() (batches int64, behind time.Duration) {
	return s.behind.Load(), time.Duration(s.behindUs.Load()) * time.Microsecond
}

// NewService builds a Service.
func NewService(db *store.DB, c *clock.Clock, meters *meter.Catalogue, subs SubscriptionLookup, logger *slog.Logger) *Service {
	s := &Service{db: db, clock: c, meters: meters, subs: subs, logger: logger, dedup: idempotency.New(db, "usage_dedup"), parser: NewParser()}
	s.loop = drainer.New(func(ctx context.Context) (int, error) {
		n, err := s.drain(ctx, math.MaxInt64, false)
		if err == nil {
			// Behind intake, like aggregation: keys leave memory here.
			_, err = s.dedup.Freeze(ctx, db)
		}
		return n, err
	}, AggregateDelay, maxBacklog)
	s.known = map[string]time.Time{}
	return s
}

// knownFor is how long intake trusts that a subscription exists before it
// asks again. Only known subscriptions are remembered, so a new one is
// usable at once; batches arrive many times a second for the same few
// thousand subscriptions, and each lookup is a query.
const knownFor = 5 * time.Second

func (s *Service) subscriptionExists(ctx context.Context, sub string) (bool, error) {
	wall := time.Now()
	s.knownMu.RLock()
	until, ok := s.known[sub]
	s.knownMu.RUnlock()
	if ok && wall.Before(until) {
		return true, nil
	}
	exists, err := s.subs.Exists(ctx, sub)
	if err != nil || !exists {
		return exists, err
	}
	s.knownMu.Lock()
	if len(s.known) > 1_000_000 {
		clear(s.known)
	}
	s.known[sub] = wall.Add(knownFor)
	s.knownMu.Unlock()
	return true, nil
}

// maxSpan bounds one event; longer ones are almost certainly unit mistakes.
const maxSpan = 31 * 24 * time.Hour

// rejection is a reason to refuse one event, as opposed to an error that
// fails the whole request (the database is unreachable, say).
type rejection struct{ reason string }

func (r rejection) Error() string { return r.reason }

func reject(format string, args ...any) error { return rejection{fmt.Sprintf(format, args...)} }

// lookups remembers, for one batch, what validate learnt about each
// subscription and meter as sent: a batch of 1,000 events names a few of
// each, and every lookup costs a normalisation and a shared map.
type lookups struct {
	subs   map[string]subAnswer
	meters map[string]meterAnswer
}

type subAnswer struct {
	id            string
	valid, exists bool
}

type meterAnswer struct {
	key   string
	level bool
	found bool
}

func (s *Service) lookupSub(ctx context.Context, l *lookups, sent string) (subAnswer, error) {
	if a, ok := l.subs[sent]; ok {
		return a, nil
	}
	var a subAnswer
	a.id, a.valid = arm.CanonicalGUID(sent)
	if a.valid {
		var err error
		if a.exists, err = s.subscriptionExists(ctx, a.id); err != nil {
			return a, err
		}
	}
	l.subs[sent] = a
	return a, nil
}

func (s *Service) lookupMeter(ctx context.Context, l *lookups, sent string) meterAnswer {
	if a, ok := l.meters[sent]; ok {
		return a
	}
	var a meterAnswer
	if m, ok := s.meters.Lookup(ctx, sent); ok {
		a.key, _ = meter.Normalize(m.ID)
		a.level, a.found = m.Kind == meter.Level, true
	}
	l.meters[sent] = a
	return a
}

// quantityText is the decimal text of a quantity token, a JSON number or a
// string; empty when the token is missing or null.
func quantityText(tok json.RawMessage) (string, error) {
	tok = bytes.TrimSpace(tok)
	if len(tok) == 0 || string(tok) == "null" {
		return "", nil
	}
	if tok[0] != '"' {
		return string(tok), nil
	}
	if bytes.IndexByte(tok, '\\') < 0 && len(tok) >= 2 && tok[len(tok)-1] == '"' {
		return string(tok[1 : len(tok)-1]), nil
	}
	var str string
	if err := json.Unmarshal(tok, &str); err != nil {
		return "", err
	}
	return str, nil
}

// eventTime parses an RFC 3339 time as encoding/json does for time.Time.
func eventTime(name, text string) (time.Time, error) {
	var t time.Time
	if err := t.UnmarshalText([]byte(text)); err != nil {
		return time.Time{}, reject("malformed value: %s %q is not an RFC 3339 time", name, text)
	}
	return t.UTC(), nil
}

// validate checks one event and returns it as the log keeps it, with its
// idempotency key.
func (s *Service) validate(ctx context.Context, now time.Time, e *wireEvent, l *lookups) (logged, error) {
	e.ID = strings.TrimSpace(e.ID)
	switch {
	case e.ID == "":
		return logged{}, reject("missing id (the idempotency key)")
	case len(e.ID) > 256 || len(e.Source) > 256:
		return logged{}, reject("id and source are limited to 256 characters")
	}
	qtext, err := quantityText(e.Quantity)
	if err != nil {
		return logged{}, reject("malformed value: quantity: %v", err)
	}
	if qtext == "" {
		return logged{}, reject("missing quantity")
	}
	qty, sign, err := money.QuantityText(qtext)
	switch {
	case err != nil:
		return logged{}, reject("malformed value: %v", err)
	case sign < 0:
		return logged{}, reject("negative quantity %s", qty)
	case e.StartTime == "" || e.EndTime == "":
		return logged{}, reject("missing startTime or endTime")
	}
	start, err := eventTime("startTime", e.StartTime)
	if err != nil {
		return logged{}, err
	}
	end, err := eventTime("endTime", e.EndTime)
	switch {
	case err != nil:
		return logged{}, err
	case end.Before(start):
		return logged{}, reject("endTime %s is before startTime %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	case end.Sub(start) > maxSpan:
		return logged{}, reject("the event spans more than 31 days")
	case start.After(now.Add(5 * time.Minute)):
		return logged{}, reject("startTime %s is in the future", start.Format(time.RFC3339))
	case start.Before(now.Add(-MaxEventAge)):
		return logged{}, reject("startTime %s is more than 34 days ago; usage that old is refused, because a re-sent event must never be counted twice", start.Format(time.RFC3339))
	}
	if money.IntegerDigits(qty) >= 13 {
		if q, err := money.ParseQuantity(qty); err != nil || q.Above(money.MaxEventQuantity) {
			return logged{}, reject("quantity %s is above the bound of %s for one event", qty, money.MaxEventQuantity)
		}
	}
	switch {
	case len(e.ResourceURI) > maxURI || !storable(e.ResourceURI):
		return logged{}, reject("resourceUri must be valid UTF-8 of at most %d bytes, without NUL", maxURI)
	case len(e.Location) > maxLocation || !storable(e.Location):
		return logged{}, reject("location must be valid UTF-8 of at most %d bytes, without NUL", maxLocation)
	case len(e.Tags) > maxTags:
		return logged{}, reject("at most %d tags", maxTags)
	case len(e.AdditionalInfo) > maxAddlBytes:
		return logged{}, reject("additionalInfo is limited to %d bytes", maxAddlBytes)
	case !storable(string(e.AdditionalInfo)) || bytes.Contains(e.AdditionalInfo, []byte(`\u0000`)):
		// An escaped NUL decodes to one wherever the JSON is read.
		return logged{}, reject("additionalInfo must be valid UTF-8 without NUL")
	}
	for k, v := range e.Tags {
		if len(k) > maxTagKey || len(v) > maxTagValue || !storable(k) || !storable(v) {
			return logged{}, reject("tag names (at most %d bytes) and values (at most %d) must be valid UTF-8 without NUL", maxTagKey, maxTagValue)
		}
	}
	sub, err := s.lookupSub(ctx, l, e.SubscriptionID)
	switch {
	case err != nil:
		return logged{}, err
	case !sub.valid:
		return logged{}, reject("malformed value: subscriptionId %q is not a GUID", e.SubscriptionID)
	case !sub.exists:
		return logged{}, reject("unknown subscription %s", sub.id)
	}
	m := s.lookupMeter(ctx, l, e.MeterID)
	if !m.found {
		return logged{}, reject("unknown meter %q", e.MeterID)
	}
	tags := "null"
	if len(e.Tags) > 0 {
		b, _ := json.Marshal(e.Tags)
		tags = string(b)
	}
	addl := "null"
	if len(e.AdditionalInfo) > 0 {
		addl = string(e.AdditionalInfo)
	}
	return logged{sub: sub.id, meterKey: m.key, level: m.level, qty: qty, startUs: clock.Micros(start), endUs: clock.Micros(end),
		uri: e.ResourceURI, location: e.Location, tags: tags, addl: addl}, nil
}

// Parse splits a body into events with the service's parser.
func (s *Service) Parse(format Format, body []byte) (*Batch, error) {
	return s.parser.Parse(format, body)
}

// IngestBatch validates, deduplicates and stores a parsed batch.
func (s *Service) IngestBatch(ctx context.Context, b *Batch) (Result, error) {
	return s.ingest(ctx, time.Time{}, b.events, b.rejected)
}

// Ingest validates, deduplicates and stores events built in code (the
// simulator's, a demo's); they go through the same checks as a body's.
func (s *Service) Ingest(ctx context.Context, events []*Event) (Result, error) {
	return s.ingest(ctx, time.Time{}, wireEvents(events), nil)
}

func wireEvents(events []*Event) []wireEvent {
	out := make([]wireEvent, len(events))
	for i, e := range events {
		out[i] = e.wire()
	}
	return out
}

// IngestAt stores events as if they had been received at instant now. It
// lets benchmarks load a month of usage with realistic reported hours; the
// HTTP intake always uses the clock.
func (s *Service) IngestAt(ctx context.Context, now time.Time, events []*Event) (Result, error) {
	res, err := s.ingest(ctx, now, wireEvents(events), nil)
	if err != nil {
		return res, err
	}
	return res, s.Settle(ctx, time.Time{})
}

func (s *Service) ingest(ctx context.Context, at time.Time, events []wireEvent, rejected []Rejection) (Result, error) {
	defer s.loop.Begin()()
	now := at
	if now.IsZero() {
		now = s.clock.Now()
	}
	res := Result{Rejected: rejected}
	if res.Rejected == nil {
		res.Rejected = []Rejection{}
	}
	ok := make([]logged, 0, len(events))
	keys := make([][16]byte, 0, len(events))
	l := &lookups{subs: map[string]subAnswer{}, meters: map[string]meterAnswer{}}
	inBatch := make(map[[16]byte]struct{}, len(events))
	// Large quantities (at least 10^11, which no legitimate event reaches)
	// are summed per subscription, meter and resource, so that no request
	// can push one hourly record past money.MaxRecordQuantity. Fewer than
	// MaxBatch smaller events cannot reach it.
	var large map[[3]string]money.Quantity
	for i := range events {
		e := &events[i]
		if !e.parsed {
			continue
		}
		rec, err := s.validate(ctx, now, e, l)
		if err != nil {
			if _, ok := err.(rejection); !ok {
				return Result{}, err
			}
			res.Rejected = append(res.Rejected, Rejection{Index: i, ID: e.ID, Reason: err.Error()})
			continue
		}
		dk := dedupKey(e.Source, e.ID)
		if _, dup := inBatch[dk]; dup {
			res.Duplicates++
			continue
		}
		if money.IntegerDigits(rec.qty) >= 12 {
			if large == nil {
				large = map[[3]string]money.Quantity{}
			}
			k := [3]string{rec.sub, rec.meterKey, strings.ToLower(rec.uri)}
			// Every hourly part of an event is at most its quantity (a level
			// meter's part is at most its level).
			q, _ := money.ParseQuantity(rec.qty)
			if sum := large[k].Add(q); sum.Above(money.MaxRecordQuantity) {
				res.Rejected = append(res.Rejected, Rejection{Index: i, ID: e.ID,
					Reason: fmt.Sprintf("this request would push one hourly record of subscription %s past the bound of %s", rec.sub, money.MaxRecordQuantity)})
				continue
			} else {
				large[k] = sum
			}
		}
		inBatch[dk] = struct{}{}
		ok = append(ok, rec)
		keys = append(keys, dk)
	}
	sort.Slice(res.Rejected, func(i, j int) bool { return res.Rejected[i].Index < res.Rejected[j].Index })
	if len(ok) == 0 {
		return res, nil
	}
	var stored int
	if err := s.loadFloor(ctx); err != nil {
		return res, err
	}
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		if s.db.Dialect == store.Postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock_shared(?)`, intakeLock); err != nil {
				return err
			}
		}
		// The reported time is taken under the write lock (or the shared
		// intake lock), so a reader that settles an instant after it also
		// sees this batch.
		received := at
		if received.IsZero() {
			received = s.received()
			s.raiseFloor(clock.Micros(received))
		}
		fresh, err := s.dedup.Claim(ctx, tx, keys, clock.Micros(received.Add(DedupRetention)))
		if err != nil {
			return err
		}
		batch := make([]logged, 0, len(ok))
		for i := range ok {
			if fresh[i] {
				batch = append(batch, ok[i])
			}
		}
		stored = len(batch)
		if stored == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO usage_log (received_us, events, payload) VALUES (?, ?, ?)`,
			clock.Micros(received), stored, encodeLog(make([]byte, 0, 256*stored), batch)); err != nil {
			return fmt.Errorf("store usage events: %w", err)
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	res.Accepted = stored
	res.Duplicates += len(ok) - stored
	if stored > 0 {
		s.loop.Logged(int64(stored))
	}
	return res, nil
}

// InstanceKey identifies a resource instance in the record index: 16 bytes
// of SHA-256 of its lower-cased URI, hex encoded. URIs run to 150 bytes or
// more; the index stays a third of the size, and the URI itself is kept in the
// record. A forwarded record's ID is derived from it, so commerce computes it
// from the record's URI with this same function.
func InstanceKey(resourceURI string) string {
	if resourceURI == "" {
		return ""
	}
	h := sha256.Sum256([]byte(strings.ToLower(resourceURI)))
	return hex.EncodeToString(h[:16])
}

// dedupKey is the stored idempotency key of an event: 16 bytes of SHA-256 of
// its source and ID, hex encoded. Short keys keep the index small (a third of
// the pages of the raw IDs); at 128 bits a collision among even 10^12 events
// has probability below 10^-14.
func dedupKey(source, id string) [16]byte {
	var buf [2*256 + 1]byte // validate limits both to 256 bytes
	b := append(append(append(buf[:0], source...), 0), id...)
	h := sha256.Sum256(b)
	return [16]byte(h[:16])
}

// addRecords adds quantities to the hourly records of the open reported hour.
// PostgreSQL adds in SQL (copyRecords: NUMERIC arithmetic is exact, and
// concurrent transactions then cannot lose each other's additions). SQLite,
// whose + would go through floating point, inserts the new records first
// and then adds to the ones that already existed by reading and writing
// exact sums; that is safe because its single writer serialises intake.
func (s *Service) addRecords(ctx context.Context, tx *store.Tx, order []recordKey, groups map[recordKey]*recordVal) error {
	if s.db.Dialect == store.Postgres {
		return s.copyRecords(ctx, tx, order, groups)
	}
	const chunk = 200
	for start := 0; start < len(order); start += chunk {
		keys := order[start:min(start+chunk, len(order))]
		var sb strings.Builder
		args := make([]any, 0, 11*len(keys))
		sb.WriteString(`INSERT INTO usage_records (` + strings.Join(recordColumns, ", ") + `) VALUES `)
		for i, k := range keys {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			v := groups[k]
			args = append(args, k.sub, k.meter, k.instance, k.hour, k.reported, v.qty.String(), v.events, v.resourceURI, v.location, v.tags, v.addl)
		}
		sb.WriteString(` ON CONFLICT (subscription_id, meter_key, instance, usage_hour_us, reported_hour_us) `)
		sb.WriteString(`DO NOTHING RETURNING subscription_id, meter_key, instance, usage_hour_us, reported_hour_us`)
		rows, err := tx.QueryContext(ctx, sb.String(), args...)
		if err != nil {
			return fmt.Errorf("store usage records: %w", err)
		}
		inserted := make(map[recordKey]bool, len(keys))
		for rows.Next() {
			var k recordKey
			if err := rows.Scan(&k.sub, &k.meter, &k.instance, &k.hour, &k.reported); err != nil {
				rows.Close()
				return err
			}
			inserted[k] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, k := range keys {
			if inserted[k] {
				continue
			}
			if err := s.addToExisting(ctx, tx, k, groups[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordColumns are the hourly record's columns that aggregation writes.
var recordColumns = []string{"subscription_id", "meter_key", "instance", "usage_hour_us", "reported_hour_us", "quantity", "events", "resource_uri", "location", "tags", "additional_info"}

// copyRecords is addRecords on PostgreSQL: the records are copied into a
// staging table and added from there in one INSERT … SELECT … ON CONFLICT
// DO UPDATE, in index order. The guard keeps a record within its bound
// even when another instance added to it since this one looked; a row it
// refuses is missing from the count, and the careful path takes over.
func (s *Service) copyRecords(ctx context.Context, tx *store.Tx, order []recordKey, groups map[recordKey]*recordVal) error {
	i := 0
	row := make([]any, len(recordColumns))
	next := func() ([]any, error) {
		if i == len(order) {
			return nil, nil
		}
		k := order[i]
		v := groups[k]
		i++
		row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10] =
			k.sub, k.meter, k.instance, k.hour, k.reported, v.qty.String(), v.events, v.resourceURI, v.location, v.tags, v.addl
		return row, nil
	}
	cols := strings.Join(recordColumns, ", ")
	return tx.Staged(ctx, "usage_records", recordColumns, next, func(stage string) error {
		var n int
		if err := tx.QueryRowContext(ctx, `WITH added AS (INSERT INTO usage_records (`+cols+`)
			SELECT `+cols+` FROM `+stage+` ORDER BY subscription_id, meter_key, instance, usage_hour_us, reported_hour_us
			ON CONFLICT (subscription_id, meter_key, instance, usage_hour_us, reported_hour_us)
			DO UPDATE SET quantity = (usage_records.quantity::numeric + excluded.quantity::numeric)::text, events = usage_records.events + excluded.events,
				resource_uri = excluded.resource_uri, location = excluded.location, tags = excluded.tags, additional_info = excluded.additional_info
			WHERE usage_records.quantity::numeric + excluded.quantity::numeric <= `+money.MaxRecordQuantity.String()+` RETURNING 1)
			SELECT COUNT(*) FROM added`).Scan(&n); err != nil {
			return fmt.Errorf("store usage records: %w", err)
		}
		if n != len(order) {
			return poison{"an hourly record would exceed its bound"}
		}
		return nil
	})
}

// addToExisting adds v to a record that already exists (SQLite only).
func (s *Service) addToExisting(ctx context.Context, tx *store.Tx, k recordKey, v *recordVal) error {
	var q money.Quantity
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT quantity, events FROM usage_records
		WHERE subscription_id = ? AND meter_key = ? AND instance = ? AND usage_hour_us = ? AND reported_hour_us = ?`,
		k.sub, k.meter, k.instance, k.hour, k.reported).Scan(&q, &n); err != nil {
		return fmt.Errorf("read usage record: %w", err)
	}
	sum := q.Add(v.qty)
	if sum.Above(money.MaxRecordQuantity) {
		return poison{"an hourly record would exceed its bound"}
	}
	_, err := tx.ExecContext(ctx, `UPDATE usage_records SET quantity = ?, events = ?, resource_uri = ?, location = ?, tags = ?, additional_info = ?
		WHERE subscription_id = ? AND meter_key = ? AND instance = ? AND usage_hour_us = ? AND reported_hour_us = ?`,
		sum.String(), n+v.events, v.resourceURI, v.location, v.tags, v.addl, k.sub, k.meter, k.instance, k.hour, k.reported)
	if err != nil {
		return fmt.Errorf("update usage record: %w", err)
	}
	return nil
}

// PurgeExpiredKeys forgets idempotency keys older than the retention, in
// batches of purgeBatch rows, each its own short transaction, so a large
// purge never holds the writer (SQLite) or long row locks (PostgreSQL).
func (s *Service) PurgeExpiredKeys(ctx context.Context) (int64, error) {
	return s.dedup.Purge(ctx, s.db, clock.Micros(s.clock.Now()))
}

// PurgeRecords deletes hourly records reported before cutoff, in batches
// along the (reported hour, id) index. The caller decides the cutoff: the
// bridge never lets it pass records not yet forwarded.
func (s *Service) PurgeRecords(ctx context.Context, cutoff time.Time) (int64, error) {
	return s.db.DeleteInBatches(ctx, `DELETE FROM usage_records WHERE id IN (SELECT id FROM usage_records WHERE reported_hour_us < ? ORDER BY reported_hour_us, id LIMIT 5000)`,
		clock.Micros(cutoff))
}
