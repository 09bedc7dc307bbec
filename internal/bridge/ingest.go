package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/drainer"
	"github.com/stackbill/stackbill/internal/idempotency"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/usage"
)

// SetID gives r the ID its cloud's stack derives for it (RecordID); tools
// and tests that build records by hand use it.
func (r *Record) SetID(cloudID string) {
	key, _ := meter.Normalize(r.MeterID)
	r.ID = RecordID(cloudID, r.SubscriptionID, key, usage.InstanceKey(r.ResourceURI), clock.Micros(r.UsageHour), clock.Micros(r.ReportedHour))
}

// Record is one hourly usage record as a stack forwards it: the local facts,
// like Azure's azureStack.* additional info.
type Record struct {
	ID             string          `json:"id"`
	SubscriptionID string          `json:"subscriptionId"`
	TenantID       string          `json:"tenantId"`
	MeterID        string          `json:"meterId"`
	Quantity       money.Quantity  `json:"quantity"`
	UsageHour      time.Time       `json:"usageHour"`
	ReportedHour   time.Time       `json:"reportedHour"`
	ResourceURI    string          `json:"resourceUri"`
	Location       string          `json:"location"`
	Tags           json.RawMessage `json:"tags,omitempty"`
	AdditionalInfo json.RawMessage `json:"additionalInfo,omitempty"`

	// quantityText is Quantity's canonical text, and tagsText and addlText
	// the JSON's, when the decoder already has them as strings (the binary
	// layout), so that ingest does not format or copy them again.
	quantityText, tagsText, addlText string
}

// RecordID is the deterministic ID of a stack's hourly record, so that a
// re-sent record is recognised on commerce whatever batch carries it.
// The hashed text is "cloud|subscription|meter|instance|usageHour|reportedHour"
// with the hours in decimal microseconds; it may never change, or records
// re-sent across an upgrade would get new IDs and be counted twice.
func RecordID(cloudID, sub, meterKey, instance string, usageHour, reportedHour int64) string {
	var buf [256]byte
	b := append(buf[:0], cloudID...)
	b = append(append(b, '|'), sub...)
	b = append(append(b, '|'), meterKey...)
	b = append(append(b, '|'), instance...)
	b = strconv.AppendInt(append(b, '|'), usageHour, 10)
	b = strconv.AppendInt(append(b, '|'), reportedHour, 10)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// Batch is what the bridge posts.
type Batch struct {
	CloudID string   `json:"cloudId"`
	Records []Record `json:"records"`
}

// IngestResult reports a batch's outcome.
type IngestResult struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	// Quarantined counts records held for the operator (usage outside the
	// registration's window); they are acknowledged, not billed.
	Quarantined int `json:"quarantined,omitempty"`
}

// Ingestor is commerce's usage ingestion.
type Ingestor struct {
	db      *store.DB
	regs    *registration.Service
	billing *meter.BillingMap
	clock   *clock.Clock
	series  seriesCache
	dedup   idempotency.Keys
	logger  *slog.Logger
	// loop materialises the log behind ingestion, giving way to a stack
	// that is catching up, as intake's aggregation does.
	loop *drainer.Loop
}

// NewIngestor builds an Ingestor.
func NewIngestor(db *store.DB, regs *registration.Service, billing *meter.BillingMap, c *clock.Clock, logger *slog.Logger) *Ingestor {
	in := &Ingestor{db: db, regs: regs, billing: billing, clock: c, dedup: idempotency.New(db, "commerce_dedup"), logger: logger}
	in.loop = drainer.New(func(ctx context.Context) (int, error) { return in.drain(ctx, false, math.MaxInt64) }, MaterializeDelay, maxCommerceBacklog)
	return in
}

// MaxRecords bounds one batch.
const MaxRecords = 20000

// KeyRetention is how long commerce remembers a record ID in memory (and
// its key blocks). A bridge re-sends within minutes of a failure; a record
// re-sent later still counts once, because commerce_usage's primary key
// refuses it when it is materialised.
const KeyRetention = 3 * 24 * time.Hour

// Ingest charges a batch of records. The caller must be the bridge
// credential of a live registration whose cloudId the batch names and whose
// billing model reports usage. Each record is charged, for its usage hour, to
// the customer subscription its tenant was mapped to then, or else to the
// registration's default subscription; the reason is stored with it. Records
// are deduplicated by ID in the same transaction that logs them, and the
// batch is acknowledged once that commits: commerce_usage follows from the
// log (Run), and every reader settles it first.
func (in *Ingestor) Ingest(ctx context.Context, p auth.Principal, b Batch) (IngestResult, error) {
	if p.Role != auth.RoleBridge || p.RegistrationUID == "" {
		return IngestResult{}, arm.Forbidden(p.Actor(), "bridge/usage/write", "/v1/bridge/usage")
	}
	if len(b.Records) > MaxRecords {
		return IngestResult{}, arm.Errorf(arm.TooLarge, "BatchTooLarge", "A bridge batch holds at most %d records; this one has %d.", MaxRecords, len(b.Records))
	}
	reg, live, err := in.regs.ByUID(ctx, p.RegistrationUID)
	if err != nil {
		return IngestResult{}, err
	}
	switch {
	case !live:
		return IngestResult{}, arm.Errorf(arm.Denied, "RegistrationNotActive", "The registration of this bridge credential was deleted; register and activate the stack again.")
	case !strings.EqualFold(reg.CloudID, b.CloudID):
		return IngestResult{}, arm.Errorf(arm.Denied, "CloudIdMismatch",
			"This bridge credential belongs to the registration of cloud %s; it cannot push usage for cloud %s.", reg.CloudID, b.CloudID)
	case !reg.UsageReportingEnabled:
		return IngestResult{}, arm.Errorf(arm.Denied, "UsageReportingDisabled",
			"Registration %s (billing model %s) does not report usage.", reg.Key.Name, reg.BillingModel)
	}
	intervals, err := in.regs.Mappings(ctx, reg.UID)
	if err != nil {
		return IngestResult{}, err
	}
	since, err := in.regs.CloudSince(ctx, reg.CloudID)
	if err != nil {
		return IngestResult{}, err
	}
	// Each record looks only at its own tenant's intervals, still in
	// (valid from, id) order: a registration with thousands of mapped
	// tenants would otherwise cost thousands of comparisons per record.
	byTenant := make(map[string][]registration.MappingInterval, len(intervals))
	for _, m := range intervals {
		byTenant[m.TenantID] = append(byTenant[m.TenantID], m)
	}
	defer in.loop.Begin()()
	// Mapping is per record and independent: a large batch (a stack
	// catching up) is split across the cores, each record landing in its
	// own slot, and the first refusal in record order is the answer.
	n := len(b.Records)
	mapped := make([]charged, n)
	ids := make([][16]byte, n)
	now := in.clock.Now()
	m := recordMapper{in: in, byTenant: byTenant, def: reg.Key.SubscriptionID, cloud: reg.CloudID, one: money.MustQuantity("1"),
		earliest: clock.HourStart(since.Add(-PreRegistrationUsage)), latest: now.Add(time.Hour)}
	parts := max(1, min(runtime.GOMAXPROCS(0), n/mapChunk))
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			instances := map[string]string{}
			for i := p * n / parts; i < (p+1)*n/parts; i++ {
				if errs[p] = m.mapRecord(ctx, i, &b.Records[i], &mapped[i], &ids[i], instances); errs[p] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return IngestResult{}, err
		}
	}
	recs := mapped[:0]
	keys := ids[:0]
	inBatch := make(map[[16]byte]struct{}, n)
	for i := range mapped {
		if _, dup := inBatch[ids[i]]; dup {
			continue
		}
		inBatch[ids[i]] = struct{}{}
		recs, keys = append(recs, mapped[i]), append(keys, ids[i])
	}
	var stored, held int
	err = in.db.Write(ctx, func(tx *store.Tx) error {
		now = in.clock.Now()
		held = 0
		// A held record's key is claimed too, so that a re-send is a
		// duplicate and not held twice.
		fresh, err := in.dedup.Claim(ctx, tx, keys, clock.Micros(now.Add(KeyRetention)))
		if err != nil {
			return err
		}
		batch := make([]charged, 0, len(recs))
		for i := range recs {
			switch {
			case !fresh[i]:
			case recs[i].held != "":
				held++
				c := &recs[i]
				hour := clock.FromMicros(c.usageUs)
				if err := quarantine.Add(ctx, tx, quarantine.Item{At: now, Stage: quarantine.Ingest, Key: c.id, Reason: c.held, RegistrationUID: reg.UID,
					SubscriptionID: c.subscription, MeterKey: c.meterKey, UsageHour: &hour, Quantity: c.qty, Records: 1,
					Payload: encodeCharged(reg.UID, reg.CloudID, []charged{*c})}); err != nil {
					return err
				}
			default:
				batch = append(batch, recs[i])
			}
		}
		stored = len(batch)
		if stored > 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO commerce_usage_log (received_us, records, payload) VALUES (?, ?, ?)`,
				clock.Micros(now), stored, encodeCharged(reg.UID, reg.CloudID, batch)); err != nil {
				return fmt.Errorf("store forwarded usage: %w", err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO ingest_hours (registration_uid, cloud_id, hour_us, records, duplicates, batches, last_at_us) VALUES (?, ?, ?, ?, ?, 1, ?)
			ON CONFLICT (registration_uid, hour_us) DO UPDATE SET records = ingest_hours.records + excluded.records, duplicates = ingest_hours.duplicates + excluded.duplicates,
			batches = ingest_hours.batches + 1, last_at_us = excluded.last_at_us`, reg.UID, reg.CloudID, clock.Micros(clock.HourStart(now)), stored, len(b.Records)-stored-held, clock.Micros(now))
		return err
	})
	if err != nil {
		return IngestResult{}, err
	}
	if stored > 0 {
		in.loop.Logged(int64(stored))
	}
	return IngestResult{Accepted: stored, Duplicates: len(b.Records) - stored - held, Quarantined: held}, nil
}

// PreRegistrationUsage is how long before its cloud was first registered a
// forwarded record's usage may lie: a stack may run for a while before it
// registers, and keeps its usage meanwhile, but its intake takes no event
// older than usage.MaxEventAge (34 days). Older usage, or usage in the
// future, is held in quarantine for the operator to judge: a stamp with a
// wrong clock must not bill years 1969 or 9999, and must not stop the rest
// of its batch either.
const PreRegistrationUsage = 35 * 24 * time.Hour

// Release takes a record that ingestion held outside its registration's
// window into billing as it is: the operator has judged it genuine. It is
// logged anew as received now.
func (in *Ingestor) Release(ctx context.Context, tx *store.Tx, it quarantine.Item, now time.Time) error {
	return in.relog(ctx, tx, it, now)
}

// relog appends a held log payload to commerce's usage log again.
func (in *Ingestor) relog(ctx context.Context, tx *store.Tx, it quarantine.Item, now time.Time) error {
	_, _, recs, err := decodeCharged(it.Payload)
	if err != nil {
		return arm.InvalidRequest("", "Quarantined item %d does not decode (%v), so it cannot be taken again; drop it.", it.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO commerce_usage_log (received_us, records, payload) VALUES (?, ?, ?)`, clock.Micros(now), len(recs), it.Payload); err != nil {
		return err
	}
	tx.AfterEnd(func(committed bool) {
		if committed {
			in.loop.Logged(int64(len(recs)))
		}
	})
	return nil
}

// mapChunk is the fewest records worth a goroutine of their own.
const mapChunk = 2000

// recordMapper maps one batch's records; it is shared, read-only, by the
// goroutines of a batch.
type recordMapper struct {
	in       *Ingestor
	byTenant map[string][]registration.MappingInterval
	def      string // the registration's default subscription
	cloud    string // the registration's cloud, whose records alone it takes
	one      money.Quantity
	// earliest and latest bound a record's usage and reported hours.
	earliest, latest time.Time
}

// mapRecord checks record i and maps it into c, with its ID's bytes in id.
// instances caches resource URIs' instance keys for one goroutine.
func (m *recordMapper) mapRecord(ctx context.Context, i int, r *Record, c *charged, id *[16]byte, instances map[string]string) error {
	key, ok := meter.Normalize(r.MeterID)
	switch {
	case len(r.ID) != 32 || hexDecode(id[:], r.ID) != nil:
		return arm.InvalidRequest(fmt.Sprintf("records[%d].id", i), "Record IDs are 32 hex digits.")
	case !ok:
		return arm.InvalidRequest(fmt.Sprintf("records[%d].meterId", i), "'%s' is not a meter ID.", r.MeterID)
	}
	if why := r.check(); why != "" {
		return arm.InvalidRequest(fmt.Sprintf("records[%d]", i), "%s.", why)
	}
	// A record's ID is derived from its cloud and its own key, so a bridge
	// can neither claim nor probe another stack's records: deduplication
	// is in effect per cloud, and a registration's cloud is its stack's.
	inst, seen := instances[r.ResourceURI]
	if !seen {
		inst = usage.InstanceKey(r.ResourceURI)
		instances[r.ResourceURI] = inst
	}
	if want := RecordID(m.cloud, r.SubscriptionID, key, inst, clock.Micros(r.UsageHour), clock.Micros(r.ReportedHour)); !strings.EqualFold(want, r.ID) {
		return arm.InvalidRequest(fmt.Sprintf("records[%d].id", i), "The record ID is not the one this cloud's stack derives from the record's subscription, meter, resource and hours.")
	}
	tenant, _ := arm.CanonicalGUID(r.TenantID)
	qty := r.quantityText
	if qty == "" {
		qty = r.Quantity.String()
	}
	*c = charged{id: strings.ToLower(r.ID), subscription: m.def, localSub: strings.ToLower(r.SubscriptionID), tenant: tenant, meterKey: key,
		qty: qty, usageUs: clock.Micros(r.UsageHour), reportedUs: clock.Micros(r.ReportedHour),
		uri: r.ResourceURI, location: r.Location, tags: rawOr(r.tagsText, r.Tags), addl: rawOr(r.addlText, r.AdditionalInfo)}
	switch {
	case r.UsageHour.Before(m.earliest):
		c.held = fmt.Sprintf("the usage hour %s is more than 35 days before the cloud was first registered (%s)", r.UsageHour.Format(time.RFC3339), m.earliest.Add(PreRegistrationUsage).Format(time.RFC3339))
	case r.UsageHour.After(m.latest) || r.ReportedHour.After(m.latest):
		c.held = fmt.Sprintf("the usage hour %s or reported hour %s is in the future", r.UsageHour.Format(time.RFC3339), r.ReportedHour.Format(time.RFC3339))
	}
	for _, iv := range m.byTenant[tenant] {
		if !iv.From.After(r.UsageHour) && (iv.To.IsZero() || iv.To.After(r.UsageHour)) {
			c.subscription, c.mapped = iv.CustomerSubscription, true
		}
	}
	bm, version, billed, err := m.in.billing.At(ctx, key, r.UsageHour)
	if err != nil {
		return err
	}
	c.mapVersion, c.billingMeter, c.billingQty = version, bm.ID, "0"
	if billed {
		// Every shipped factor is 1: the billed quantity is the local one.
		c.billingQty = qty
		if !bm.Factor.Equal(m.one) {
			c.billingQty = r.Quantity.Mul(bm.Factor).String()
		}
		c.units, c.hasUnits = money.TextUnits(c.billingQty)
	}
	return nil
}

func hexDecode(dst []byte, s string) error {
	_, err := hex.Decode(dst, []byte(s))
	return err
}

// rawOr is a record's JSON as stored: its text when decoded as one, else
// the raw message, or null.
func rawOr(text string, r json.RawMessage) string {
	switch {
	case text != "":
		return text
	case len(r) == 0:
		return "null"
	}
	return string(r)
}

// ChargedTotal is forwarded usage summed per charged subscription, billing
// meter (empty for local-only meters) and usage day.
type ChargedTotal struct {
	SubscriptionID string         `json:"subscriptionId"`
	BillingMeterID string         `json:"billingMeterId"`
	LocalMeterID   string         `json:"localMeterId"`
	Day            time.Time      `json:"day"`
	Quantity       money.Quantity `json:"quantity"`
	Mapped         bool           `json:"mapped"`
}

// Totals sums forwarded usage for the given charged subscriptions over
// [from, to) of usage time. Exact decimal sums are done here, not in SQL.
func (in *Ingestor) Totals(ctx context.Context, subscriptions []string, from, to time.Time) ([]ChargedTotal, error) {
	if len(subscriptions) == 0 {
		return nil, nil
	}
	if err := in.Settle(ctx); err != nil {
		return nil, err
	}
	args := []any{clock.Micros(from), clock.Micros(to)}
	for _, s := range subscriptions {
		args = append(args, s)
	}
	rows, err := in.db.QueryContext(ctx, `SELECT charged_subscription_id, billing_meter_id, local_meter_key, usage_hour_us, billing_quantity, quantity, mapped FROM commerce_usage
		WHERE usage_hour_us >= ? AND usage_hour_us < ? AND charged_subscription_id IN (`+store.Placeholders(len(subscriptions))+`)
		ORDER BY charged_subscription_id, billing_meter_id, local_meter_key, usage_hour_us`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ChargedTotal
	for rows.Next() {
		var t ChargedTotal
		var hour int64
		var bq, q money.Quantity
		if err := rows.Scan(&t.SubscriptionID, &t.BillingMeterID, &t.LocalMeterID, &hour, &bq, &q, &t.Mapped); err != nil {
			return nil, err
		}
		t.Day = clock.DayStart(clock.FromMicros(hour))
		t.Quantity = bq
		if t.BillingMeterID == "" {
			t.Quantity = q
		}
		if n := len(out); n > 0 && out[n-1].SubscriptionID == t.SubscriptionID && out[n-1].BillingMeterID == t.BillingMeterID &&
			out[n-1].LocalMeterID == t.LocalMeterID && out[n-1].Day.Equal(t.Day) && out[n-1].Mapped == t.Mapped {
			out[n-1].Quantity = out[n-1].Quantity.Add(t.Quantity)
			continue
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// StampHealth is what commerce has received from one registered stamp.
type StampHealth struct {
	RegistrationUID string      `json:"registrationUid"`
	CloudID         string      `json:"cloudId"`
	LastReceived    time.Time   `json:"lastReceived"`
	Records24h      int64       `json:"records24h"`
	Duplicates24h   int64       `json:"duplicates24h"`
	Batches24h      int64       `json:"batches24h"`
	Records         int64       `json:"records"`
	Hours           []HourCount `json:"hours"`
}

// Health reports, per stamp, what was received and when, with hourly counts
// from since on; the last 24 hours are summed separately.
func (in *Ingestor) Health(ctx context.Context, since time.Time) ([]StampHealth, error) {
	rows, err := in.db.QueryContext(ctx, `SELECT registration_uid, cloud_id, hour_us, records, duplicates, batches, last_at_us FROM ingest_hours ORDER BY registration_uid, hour_us`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	day := clock.Micros(in.clock.Now().Add(-24 * time.Hour))
	var out []StampHealth
	for rows.Next() {
		var uid, cloud string
		var hour, recs, dups, batches, last int64
		if err := rows.Scan(&uid, &cloud, &hour, &recs, &dups, &batches, &last); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || out[n-1].RegistrationUID != uid {
			out = append(out, StampHealth{RegistrationUID: uid, CloudID: cloud})
		}
		h := &out[len(out)-1]
		h.Records += recs
		if t := clock.FromMicros(last); t.After(h.LastReceived) {
			h.LastReceived = t
		}
		if hour >= day {
			h.Records24h, h.Duplicates24h, h.Batches24h = h.Records24h+recs, h.Duplicates24h+dups, h.Batches24h+batches
		}
		if hour >= clock.Micros(since) {
			h.Hours = append(h.Hours, HourCount{Hour: clock.FromMicros(hour), Records: recs, Batches: batches})
		}
	}
	return out, rows.Err()
}
