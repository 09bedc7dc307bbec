// Package ingest is commerce's side of the bridge: it takes a stack's batch
// (package wire), verifies it against the bridge credential's registration,
// maps each record to the subscription it is charged to at its usage hour
// and to its billing meter, decides what in it is new (by the batch's place
// in its stack's stream, or record by record where the place cannot
// decide), and appends the batch to the ledger, which acknowledges it.
package ingest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/meter"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/registration"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/usage"
	"github.com/stackbill/stackbill/internal/wire"
)

// Ingestor is commerce's usage ingestion: it verifies a bridge's batch,
// maps each record to the subscription it is charged to and the billing
// meter it is billed as, and appends the batch to the ledger.
type Ingestor struct {
	db      *store.DB
	regs    *registration.Service
	billing *meter.BillingMap
	ledger  *ledger.Ledger
	clock   *clock.Clock
	logger  *slog.Logger
}

// New builds an Ingestor.
func New(db *store.DB, regs *registration.Service, billing *meter.BillingMap, l *ledger.Ledger, c *clock.Clock, logger *slog.Logger) *Ingestor {
	return &Ingestor{db: db, regs: regs, billing: billing, ledger: l, clock: c, logger: logger}
}

// KeyRetention is how long commerce remembers a record ID it deduplicated
// by ID (a batch without a stream position, a repeated stream hour) in
// memory (and its key blocks). A bridge re-sends within minutes of a failure; a record
// re-sent later still counts once, because commerce_usage's primary key
// refuses it when it is materialised.
const KeyRetention = 3 * 24 * time.Hour

// Ingest charges a batch of records. The caller must be the bridge
// credential of a live registration whose cloudId the batch names and whose
// billing model reports usage. Each record is ledger.Charged, for its usage hour, to
// the customer subscription its tenant was mapped to then, or else to the
// registration's default subscription; the reason is stored with it. Records
// are deduplicated (write) in the same transaction that logs them, and the
// batch is acknowledged once that commits: commerce_usage follows from the
// log (Run), and every reader settles it first.
func (in *Ingestor) Ingest(ctx context.Context, p auth.Principal, b wire.Batch) (wire.Result, error) {
	if p.Role != auth.RoleBridge || p.RegistrationUID == "" {
		return wire.Result{}, arm.Forbidden(p.Actor(), "bridge/usage/write", "/v1/bridge/usage")
	}
	if len(b.Records) > wire.MaxRecords {
		return wire.Result{}, arm.Errorf(arm.TooLarge, "BatchTooLarge", "A bridge batch holds at most %d records; this one has %d.", wire.MaxRecords, len(b.Records))
	}
	reg, live, err := in.regs.ByUID(ctx, p.RegistrationUID)
	if err != nil {
		return wire.Result{}, err
	}
	switch {
	case !live:
		return wire.Result{}, arm.Errorf(arm.Denied, "RegistrationNotActive", "The registration of this bridge credential was deleted; register and activate the stack again.")
	case !strings.EqualFold(reg.CloudID, b.CloudID):
		return wire.Result{}, arm.Errorf(arm.Denied, "CloudIdMismatch",
			"This bridge credential belongs to the registration of cloud %s; it cannot push usage for cloud %s.", reg.CloudID, b.CloudID)
	case !reg.UsageReportingEnabled:
		return wire.Result{}, arm.Errorf(arm.Denied, "UsageReportingDisabled",
			"Registration %s (billing model %s) does not report usage.", reg.Key.Name, reg.BillingModel)
	}
	if st := b.Stream; st != nil {
		// The place of a record decides whether a repeated batch holds it
		// already, so a record must lie where its batch says.
		if why := st.Check(); why != "" {
			return wire.Result{}, arm.InvalidRequest("stream", "%s.", why)
		}
		for i := range b.Records {
			if h := clock.Micros(b.Records[i].ReportedHour); h < st.After.ReportedHour || h > st.Through.ReportedHour {
				return wire.Result{}, arm.InvalidRequest(fmt.Sprintf("records[%d].reportedHour", i),
					"The record's reported hour lies outside the batch's stream positions.")
			}
		}
	}
	intervals, err := in.regs.Mappings(ctx, reg.UID)
	if err != nil {
		return wire.Result{}, err
	}
	since, err := in.regs.CloudSince(ctx, reg.CloudID)
	if err != nil {
		return wire.Result{}, err
	}
	// Each record looks only at its own tenant's intervals, still in
	// (valid from, id) order: a registration with thousands of mapped
	// tenants would otherwise cost thousands of comparisons per record.
	byTenant := make(map[string][]registration.MappingInterval, len(intervals))
	for _, m := range intervals {
		byTenant[m.TenantID] = append(byTenant[m.TenantID], m)
	}
	defer in.ledger.Begin()()
	// Mapping is per record and independent: a large batch (a stack
	// catching up) is split across the cores, each record landing in its
	// own slot, and the first refusal in record order is the answer.
	n := len(b.Records)
	mapped := make([]ledger.Charged, n)
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
			return wire.Result{}, err
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
	stored, held, err := in.write(ctx, reg, b.Stream, recs, keys, len(b.Records))
	if err != nil {
		return wire.Result{}, err
	}
	return wire.Result{Accepted: stored, Duplicates: len(b.Records) - stored - held, Quarantined: held}, nil
}

// OutOfOrderError answers a stream batch that does not start where its
// cloud's stream stands on commerce, At; httpapi sends At with the 409.
type OutOfOrderError struct {
	At  wire.Position
	Err *arm.Error
}

func (e *OutOfOrderError) Error() string { return e.Err.Error() }
func (e *OutOfOrderError) Unwrap() error { return e.Err }

// write claims and logs a mapped batch in one transaction and answers how
// many records it stored and held.
//
// A stream batch (one a stack sealed in its forwarding order) that starts
// where its cloud's stream stands is new as a whole: nothing is looked up
// per record, and the stream moves to its end, as Kafka's idempotent
// producer deduplicates by producer and sequence. A batch that starts
// before it repeats what commerce took (a stack restored from a backup, or
// a re-send after a lost answer): records of earlier reported hours are
// duplicates by their place, and those of the stream's own last hour, whose
// sequence a restored stack may number differently, are looked up by ID.
// A batch that starts after it arrived before its predecessor (two are in
// flight) or follows batches commerce lost; the stack is told where the
// stream stands. A batch without a stream position (a record released from
// quarantine, or written by hand), and the first stream batch of a cloud
// that forwarded before streams, are checked record by record against the
// claimed keys and commerce_usage; so are a stream batch's records of hours
// that a batch without a position reached (the stream may repeat those).
// received counts the batch's records before its own repeats were dropped,
// for the hour's duplicate counter.
func (in *Ingestor) write(ctx context.Context, reg registration.Registration, stream *wire.Stream, recs []ledger.Charged, keys [][16]byte, received int) (stored, held int, err error) {
	err = in.db.Write(ctx, func(tx *store.Tx) error {
		now := in.clock.Now()
		held = 0
		fresh := make([]bool, len(recs))
		var check []int // records to look up by ID
		st, err := in.ledger.Stream(ctx, tx, reg.CloudID)
		if err != nil {
			return err
		}
		switch {
		case stream == nil, !st.Known && stream.After != (wire.Position{}):
			check = allIndices(len(recs))
		case stream.After.Compare(st.At) > 0:
			at, _ := json.Marshal(st.At)
			return &OutOfOrderError{At: st.At, Err: arm.Errorf(arm.Conflict, "BatchOutOfOrder",
				"This batch starts after position %s of the cloud's stream, where commerce stands; send the batches from there.", at)}
		default:
			replay := stream.After.Compare(st.At) < 0
			for i := range recs {
				switch hour := recs[i].ReportedUs; {
				case replay && hour > st.CoveredFrom && hour < st.At.ReportedHour:
					// Taken with the stream's contiguous run: a duplicate by
					// its place.
				case replay && hour <= st.At.ReportedHour, hour <= st.UnorderedThrough:
					check = append(check, i)
				default:
					fresh[i] = true
				}
			}
		}
		if err := in.claim(ctx, tx, reg, recs, keys, check, fresh, now); err != nil {
			return err
		}
		batch := make([]ledger.Charged, 0, len(recs))
		for i := range recs {
			switch {
			case !fresh[i]:
			case recs[i].Held != "":
				held++
				c := &recs[i]
				hour := clock.FromMicros(c.UsageUs)
				if err := quarantine.Add(ctx, tx, quarantine.Item{At: now, Stage: quarantine.Ingest, Key: c.ID, Reason: c.Held, RegistrationUID: reg.UID,
					SubscriptionID: c.Subscription, MeterKey: c.MeterKey, UsageHour: &hour, Quantity: c.Qty, Records: 1,
					Payload: ledger.Encode(reg.UID, reg.CloudID, []ledger.Charged{*c})}); err != nil {
					return err
				}
			default:
				batch = append(batch, recs[i])
			}
		}
		stored = len(batch)
		if err := in.ledger.Log(ctx, tx, now, reg.UID, reg.CloudID, batch); err != nil {
			return err
		}
		if stream != nil {
			if err := in.ledger.AdvanceStream(ctx, tx, reg.CloudID, *stream); err != nil {
				return err
			}
		} else if len(batch) > 0 {
			latest := int64(0)
			for i := range batch {
				latest = max(latest, batch[i].ReportedUs)
			}
			if err := in.ledger.MarkUnordered(ctx, tx, reg.CloudID, latest); err != nil {
				return err
			}
		}
		return in.ledger.CountHour(ctx, tx, reg.UID, reg.CloudID, now, stored, received-stored-held)
	})
	return stored, held, err
}

// claim decides the records that need more than their place, in one
// claim of keys (a transaction claims once): records[i] for i in check are
// fresh when their keys were not claimed before and commerce_usage does not
// hold them; a fresh record to be held for the operator has its key
// claimed too, so that a re-send without a stream position is a duplicate
// and not held twice.
func (in *Ingestor) claim(ctx context.Context, tx *store.Tx, reg registration.Registration, recs []ledger.Charged, keys [][16]byte, check []int, fresh []bool, now time.Time) error {
	ids := make([]string, len(check))
	for j, i := range check {
		ids[j] = recs[i].ID
	}
	claim := slices.Clone(check)
	for i := range recs {
		if fresh[i] && recs[i].Held != "" {
			claim = append(claim, i)
		}
	}
	if len(claim) == 0 {
		return nil
	}
	claimed := make([][16]byte, len(claim))
	for j, i := range claim {
		claimed[j] = keys[i]
	}
	ok, err := in.ledger.Claim(ctx, tx, claimed, now.Add(KeyRetention))
	if err != nil {
		return err
	}
	known, err := in.ledger.Known(ctx, tx, reg.CloudID, ids)
	if err != nil {
		return err
	}
	for j, i := range claim {
		fresh[i] = ok[j] && !known[recs[i].ID]
	}
	return nil
}

func allIndices(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
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
	return in.ledger.Relog(ctx, tx, it, now)
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
func (m *recordMapper) mapRecord(ctx context.Context, i int, r *wire.Record, c *ledger.Charged, id *[16]byte, instances map[string]string) error {
	key, ok := meter.Normalize(r.MeterID)
	switch {
	case len(r.ID) != 32 || hexDecode(id[:], r.ID) != nil:
		return arm.InvalidRequest(fmt.Sprintf("records[%d].id", i), "Record IDs are 32 hex digits.")
	case !ok:
		return arm.InvalidRequest(fmt.Sprintf("records[%d].meterId", i), "'%s' is not a meter ID.", r.MeterID)
	}
	if why := r.Check(); why != "" {
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
	if want := wire.RecordID(m.cloud, r.SubscriptionID, key, inst, clock.Micros(r.UsageHour), clock.Micros(r.ReportedHour)); !strings.EqualFold(want, r.ID) {
		return arm.InvalidRequest(fmt.Sprintf("records[%d].id", i), "The record ID is not the one this cloud's stack derives from the record's subscription, meter, resource and hours.")
	}
	tenant, _ := arm.CanonicalGUID(r.TenantID)
	qty := r.QuantityText()
	*c = ledger.Charged{ID: strings.ToLower(r.ID), Subscription: m.def, LocalSub: strings.ToLower(r.SubscriptionID), Tenant: tenant, MeterKey: key,
		Qty: qty, UsageUs: clock.Micros(r.UsageHour), ReportedUs: clock.Micros(r.ReportedHour),
		URI: r.ResourceURI, Location: r.Location, Tags: r.TagsJSON(), Addl: r.AdditionalInfoJSON()}
	switch {
	case r.UsageHour.Before(m.earliest):
		c.Held = fmt.Sprintf("the usage hour %s is more than 35 days before the cloud was first registered (%s)", r.UsageHour.Format(time.RFC3339), m.earliest.Add(PreRegistrationUsage).Format(time.RFC3339))
	case r.UsageHour.After(m.latest) || r.ReportedHour.After(m.latest):
		c.Held = fmt.Sprintf("the usage hour %s or reported hour %s is in the future", r.UsageHour.Format(time.RFC3339), r.ReportedHour.Format(time.RFC3339))
	}
	for _, iv := range m.byTenant[tenant] {
		if !iv.From.After(r.UsageHour) && (iv.To.IsZero() || iv.To.After(r.UsageHour)) {
			c.Subscription, c.Mapped = iv.CustomerSubscription, true
		}
	}
	bm, version, billed, err := m.in.billing.At(ctx, key, r.UsageHour)
	if err != nil {
		return err
	}
	c.MapVersion, c.BillingMeter, c.BillingQty = version, bm.ID, "0"
	if billed {
		// Every shipped factor is 1: the billed quantity is the local one.
		c.BillingQty = qty
		if !bm.Factor.Equal(m.one) {
			c.BillingQty = r.Quantity.Mul(bm.Factor).String()
		}
		c.Units, c.HasUnits = money.TextUnits(c.BillingQty)
	}
	return nil
}

func hexDecode(dst []byte, s string) error {
	_, err := hex.Decode(dst, []byte(s))
	return err
}
