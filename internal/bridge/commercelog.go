package bridge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/drainer"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/varbuf"
)

// charged is one forwarded record after mapping: what commerce_usage will
// hold, less what follows from the rest (the reason, the usage day, the
// series). Ingest logs it; materialisation writes it.
type charged struct {
	id                     string
	subscription           string // the charged subscription
	mapped                 bool
	localSub, tenant       string
	meterKey, billingMeter string // billingMeter is empty for local-only meters
	qty, billingQty        string
	units                  int64
	hasUnits               bool
	mapVersion             int
	usageUs, reportedUs    int64
	uri, location          string
	tags, addl             string
	// held is why ingestion holds the record in quarantine instead of
	// logging it ("" for a record it takes); never encoded.
	held string
}

// reason says why the record is charged where it is.
func (c *charged) reason() string {
	if c.mapped {
		return "mapped via tenant " + c.tenant + " → subscription " + c.subscription
	}
	return "tenant " + c.tenant + " not registered → default subscription " + c.subscription
}

// The log payload's layouts. Version 1 wrote every string in full; version
// 2 writes each distinct string once per payload and refers back to it
// after (a batch repeats its subscriptions, tenants, meters, locations and
// JSON on every record), which made payloads about a quarter the size and
// the acknowledging insert cheaper. Version 1 payloads are still read: a
// log may hold them across an upgrade.
const (
	chargedV1      = 1
	chargedVersion = 2
)

// stringTable writes repeated strings as back-references: a 0 and the
// string the first time, the string's 1-based index after.
type stringTable map[string]uint64

func (t stringTable) append(b []byte, s string) []byte {
	if i, ok := t[s]; ok {
		return binary.AppendUvarint(b, i)
	}
	t[s] = uint64(len(t) + 1)
	return varbuf.AppendString(append(b, 0), s)
}

// stringReader reads what a stringTable wrote, or plain strings (version 1).
type stringReader struct {
	r     *varbuf.Reader
	table bool
	seen  []string
}

func (sr *stringReader) text() string {
	if !sr.table {
		return sr.r.Text()
	}
	i := sr.r.Uvarint()
	if i == 0 {
		s := sr.r.Text()
		sr.seen = append(sr.seen, s)
		return s
	}
	if i > uint64(len(sr.seen)) {
		sr.r.Fail()
		return ""
	}
	return sr.seen[i-1]
}

// encodeCharged is a log payload: a version byte, the registration and
// cloud, a count, then each record (varbuf, strings through a table). It is
// private to this package and read back only by decodeCharged.
func encodeCharged(regUID, cloudID string, recs []charged) []byte {
	b := make([]byte, 0, 64+96*len(recs))
	b = append(b, chargedVersion)
	b = varbuf.AppendString(b, regUID)
	b = varbuf.AppendString(b, cloudID)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	t := stringTable{}
	for i := range recs {
		c := &recs[i]
		b = varbuf.AppendString(b, c.id) // unique: never worth a table entry
		b = t.append(b, c.subscription)
		b = varbuf.AppendBool(b, c.mapped)
		b = t.append(b, c.localSub)
		b = t.append(b, c.tenant)
		b = t.append(b, c.meterKey)
		b = t.append(b, c.billingMeter)
		b = t.append(b, c.qty)
		b = t.append(b, c.billingQty)
		b = varbuf.AppendBool(b, c.hasUnits)
		b = binary.AppendVarint(b, c.units)
		b = binary.AppendVarint(b, int64(c.mapVersion))
		b = binary.AppendVarint(b, c.usageUs)
		b = binary.AppendVarint(b, c.reportedUs-c.usageUs)
		b = t.append(b, c.uri)
		b = t.append(b, c.location)
		b = t.append(b, c.tags)
		b = t.append(b, c.addl)
	}
	return b
}

// errCorruptCommerceLog means a log payload does not decode;
// materialisation stops rather than guess, and says which row.
var errCorruptCommerceLog = errors.New("corrupt commerce usage log payload")

func decodeCharged(b []byte) (regUID, cloudID string, recs []charged, err error) {
	r := varbuf.NewSharedReader(b)
	sr := &stringReader{r: r}
	switch r.Byte() {
	case chargedV1:
	case chargedVersion:
		sr.table = true
	default:
		return "", "", nil, errCorruptCommerceLog
	}
	regUID, cloudID = r.Text(), r.Text()
	n := r.Count()
	recs = make([]charged, 0, n)
	for i := 0; i < n && r.Err() == nil; i++ {
		var c charged
		c.id = r.Text()
		c.subscription = sr.text()
		c.mapped = r.Bool()
		c.localSub = sr.text()
		c.tenant = sr.text()
		c.meterKey = sr.text()
		c.billingMeter = sr.text()
		c.qty = sr.text()
		c.billingQty = sr.text()
		c.hasUnits = r.Bool()
		c.units = r.Varint()
		c.mapVersion = int(r.Varint())
		c.usageUs = r.Varint()
		c.reportedUs = c.usageUs + r.Varint()
		c.uri = sr.text()
		c.location = sr.text()
		c.tags = sr.text()
		c.addl = sr.text()
		recs = append(recs, c)
	}
	if r.Done() != nil {
		return "", "", nil, errCorruptCommerceLog
	}
	return regUID, cloudID, recs, nil
}

// drainRows is how many logged batches one materialisation transaction
// takes: up to 40,000 records at the forwarder's batch size.
const drainRows = 2

// drain materialises logged batches up to log id upTo into commerce_usage
// and deletes them from the log, in one transaction. settle waits for
// batches another instance is materialising (PostgreSQL); the background
// loop skips those instead.
func (in *Ingestor) drain(ctx context.Context, settle bool, upTo int64) (int, error) {
	var batches, records int
	var created map[SeriesKey]int64
	err := in.db.Write(ctx, func(tx *store.Tx) error {
		batches, records, created = 0, 0, nil
		type logged struct {
			regUID, cloudID string
			received        int64
			recs            []charged
		}
		var batch []logged
		var held []quarantine.Item
		ids, err := drainer.Take(ctx, tx, "commerce_usage_log", "id <= ?", upTo, drainRows, settle, func(id, received int64, payload []byte) error {
			reg, cloud, recs, err := decodeCharged(payload)
			if err != nil {
				// Guessing would bill wrongly and stopping would bill
				// nobody: the row is held for the operator.
				held = append(held, quarantine.Item{At: in.clock.Now(), Stage: quarantine.Materialise, Key: fmt.Sprintf("log-%d-%d", id, received),
					Reason: "the commerce usage log row does not decode: " + err.Error(), Payload: payload})
				return nil
			}
			// In ID order, consecutive inserts land on the same pages of the
			// primary key index (IDs are hashes, so a batch's own order is
			// random there).
			slices.SortFunc(recs, func(a, b charged) int { return strings.Compare(a.id, b.id) })
			batch = append(batch, logged{reg, cloud, received, recs})
			records += len(recs)
			return nil
		})
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		for _, it := range held {
			if err := quarantine.Add(ctx, tx, it); err != nil {
				return err
			}
		}
		keys := make([]SeriesKey, 0, 16)
		for _, l := range batch {
			for i := range l.recs {
				if c := &l.recs[i]; c.billingMeter != "" {
					keys = append(keys, SeriesKey{l.regUID, c.subscription, c.billingMeter})
				}
			}
		}
		found, missing := in.series.lookup(keys)
		if created, err = ResolveSeries(ctx, tx, missing); err != nil {
			return err
		}
		for k, id := range created {
			found[k] = id
		}
		const chunk = 200
		placeholders := "(" + store.Placeholders(23) + ")"
		for _, l := range batch {
			for start := 0; start < len(l.recs); start += chunk {
				part := l.recs[start:min(start+chunk, len(l.recs))]
				var sb strings.Builder
				args := make([]any, 0, 23*len(part))
				sb.WriteString(`INSERT INTO commerce_usage (id, registration_uid, cloud_id, charged_subscription_id, mapped, reason, local_subscription_id, tenant_id, local_meter_key,
					billing_meter_id, quantity, billing_quantity, billing_units, meter_map_version, usage_hour_us, usage_day_us, reported_hour_us, received_at_us, resource_uri, location, tags, additional_info,
					series_id) VALUES `)
				for i := range part {
					c := &part[i]
					if i > 0 {
						sb.WriteString(", ")
					}
					sb.WriteString(placeholders)
					var units any
					if c.hasUnits {
						units = c.units
					}
					var series int64 // 0 for local-only meters, which are never rated
					if c.billingMeter != "" {
						series = found[SeriesKey{l.regUID, c.subscription, c.billingMeter}]
					}
					args = append(args, c.id, l.regUID, l.cloudID, c.subscription, store.Bool(c.mapped), c.reason(), c.localSub, c.tenant, c.meterKey,
						c.billingMeter, c.qty, c.billingQty, units, c.mapVersion, c.usageUs, clock.Micros(clock.DayStart(clock.FromMicros(c.usageUs))), c.reportedUs, l.received,
						c.uri, c.location, c.tags, c.addl, series)
				}
				// A record whose key expired from the idempotency store
				// and was re-sent is refused here.
				sb.WriteString(` ON CONFLICT (id) DO NOTHING`)
				if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
					return fmt.Errorf("store forwarded usage: %w", err)
				}
			}
		}
		if err := drainer.Trim(ctx, tx, "commerce_usage_log", ids); err != nil {
			return err
		}
		batches = len(ids)
		return nil
	})
	if err != nil {
		return 0, err
	}
	in.series.remember(created)
	if batches > 0 {
		in.loop.Drained(int64(records))
	}
	return batches, nil
}

// ReleaseLog takes a log row that materialisation held back into the log,
// to be materialised again (it is held again if it still does not decode).
func (in *Ingestor) ReleaseLog(ctx context.Context, tx *store.Tx, it quarantine.Item, now time.Time) error {
	return in.relog(ctx, tx, it, now)
}

// Settle materialises every batch acknowledged before it was called, so
// that commerce_usage is complete. Everything that reads commerce_usage
// calls it first; it costs one short transaction when nothing is pending.
// Batches logged meanwhile are left to the next settle or the background,
// so a steady stream of batches cannot keep a reader waiting.
func (in *Ingestor) Settle(ctx context.Context) error {
	// Every acknowledged batch has committed, so its row is visible here;
	// log ids only grow.
	var upTo int64
	if err := in.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM commerce_usage_log`).Scan(&upTo); err != nil {
		return fmt.Errorf("read commerce usage log: %w", err)
	}
	if upTo == 0 {
		return nil
	}
	return drainer.Settle(ctx, func(ctx context.Context) (int, error) { return in.drain(ctx, true, upTo) })
}

// MaterializeDelay is how long background materialisation gives way to a
// stack that keeps sending batches: a catch-up shorter than this is
// acknowledged at full speed and materialised after it. Readers never wait
// for it: they Settle.
const MaterializeDelay = 10 * time.Second

// maxCommerceBacklog bounds the records waiting in the log before
// materialisation stops giving way.
const maxCommerceBacklog = 2_000_000

// Run materialises the log in the background until ctx ends.
func (in *Ingestor) Run(ctx context.Context) {
	var pending int64
	_ = in.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(records), 0) FROM commerce_usage_log`).Scan(&pending)
	in.loop.Run(ctx, pending, in.logger, "materialising forwarded usage failed")
}

// Backlog is the number of acknowledged records not yet materialised, as
// this process counts them.
func (in *Ingestor) Backlog() int64 { return in.loop.Backlog() }

// PurgeExpiredKeys forgets record IDs older than KeyRetention.
func (in *Ingestor) PurgeExpiredKeys(ctx context.Context) (int64, error) {
	return in.dedup.Purge(ctx, in.db, clock.Micros(in.clock.Now()))
}
