package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/drainer"
	"github.com/stackbill/stackbill/internal/quarantine"
	"github.com/stackbill/stackbill/internal/store"
	"github.com/stackbill/stackbill/internal/varbuf"
)

// Charged is one forwarded record after ingestion mapped it: what
// commerce_usage will hold, less what follows from the rest (the reason, the
// usage day, the series). Ingestion logs it; materialisation writes it.
type Charged struct {
	ID                     string
	Subscription           string // the Charged subscription
	Mapped                 bool
	LocalSub, Tenant       string
	MeterKey, BillingMeter string // BillingMeter is empty for local-only meters
	Qty, BillingQty        string
	Units                  int64
	HasUnits               bool
	MapVersion             int
	UsageUs, ReportedUs    int64
	URI, Location          string
	Tags, Addl             string
	// Held is why ingestion holds the record in quarantine instead of
	// logging it ("" for a record it takes); never encoded.
	Held string
}

// Reason says why the record is Charged where it is.
func (c *Charged) Reason() string {
	if c.Mapped {
		return "mapped via tenant " + c.Tenant + " → subscription " + c.Subscription
	}
	return "tenant " + c.Tenant + " not registered → default subscription " + c.Subscription
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

// Encode is a log payload: a version byte, the registration and
// cloud, a count, then each record (varbuf, strings through a table). It is
// private to this package and read back only by Decode.
func Encode(regUID, cloudID string, recs []Charged) []byte {
	b := make([]byte, 0, 64+96*len(recs))
	b = append(b, chargedVersion)
	b = varbuf.AppendString(b, regUID)
	b = varbuf.AppendString(b, cloudID)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	t := stringTable{}
	for i := range recs {
		c := &recs[i]
		b = varbuf.AppendString(b, c.ID) // unique: never worth a table entry
		b = t.append(b, c.Subscription)
		b = varbuf.AppendBool(b, c.Mapped)
		b = t.append(b, c.LocalSub)
		b = t.append(b, c.Tenant)
		b = t.append(b, c.MeterKey)
		b = t.append(b, c.BillingMeter)
		b = t.append(b, c.Qty)
		b = t.append(b, c.BillingQty)
		b = varbuf.AppendBool(b, c.HasUnits)
		b = binary.AppendVarint(b, c.Units)
		b = binary.AppendVarint(b, int64(c.MapVersion))
		b = binary.AppendVarint(b, c.UsageUs)
		b = binary.AppendVarint(b, c.ReportedUs-c.UsageUs)
		b = t.append(b, c.URI)
		b = t.append(b, c.Location)
		b = t.append(b, c.Tags)
		b = t.append(b, c.Addl)
	}
	return b
}

// ErrCorruptLog means a log payload does not decode;
// materialisation stops rather than guess, and says which row.
var ErrCorruptLog = errors.New("corrupt commerce usage log payload")

func Decode(b []byte) (regUID, cloudID string, recs []Charged, err error) {
	r := varbuf.NewSharedReader(b)
	sr := &stringReader{r: r}
	switch r.Byte() {
	case chargedV1:
	case chargedVersion:
		sr.table = true
	default:
		return "", "", nil, ErrCorruptLog
	}
	regUID, cloudID = r.Text(), r.Text()
	n := r.Count()
	recs = make([]Charged, 0, n)
	for i := 0; i < n && r.Err() == nil; i++ {
		var c Charged
		c.ID = r.Text()
		c.Subscription = sr.text()
		c.Mapped = r.Bool()
		c.LocalSub = sr.text()
		c.Tenant = sr.text()
		c.MeterKey = sr.text()
		c.BillingMeter = sr.text()
		c.Qty = sr.text()
		c.BillingQty = sr.text()
		c.HasUnits = r.Bool()
		c.Units = r.Varint()
		c.MapVersion = int(r.Varint())
		c.UsageUs = r.Varint()
		c.ReportedUs = c.UsageUs + r.Varint()
		c.URI = sr.text()
		c.Location = sr.text()
		c.Tags = sr.text()
		c.Addl = sr.text()
		recs = append(recs, c)
	}
	if r.Done() != nil {
		return "", "", nil, ErrCorruptLog
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
func (l *Ledger) drain(ctx context.Context, settle bool, upTo int64) (int, error) {
	var batches, records int
	var created map[SeriesKey]int64
	err := l.db.Write(ctx, func(tx *store.Tx) error {
		batches, records, created = 0, 0, nil
		type logged struct {
			regUID, cloudID string
			received        int64
			recs            []Charged
		}
		var batch []logged
		var held []quarantine.Item
		ids, err := drainer.Take(ctx, tx, "commerce_usage_log", "id <= ?", upTo, drainRows, settle, func(id, received int64, payload []byte) error {
			reg, cloud, recs, err := Decode(payload)
			if err != nil {
				// Guessing would bill wrongly and stopping would bill
				// nobody: the row is held for the operator.
				held = append(held, quarantine.Item{At: l.clock.Now(), Stage: quarantine.Materialise, Key: fmt.Sprintf("log-%d-%d", id, received),
					Reason: "the commerce usage log row does not decode: " + err.Error(), Payload: payload})
				return nil
			}
			// In ID order, consecutive inserts land on the same pages of the
			// primary key index (IDs are hashes, so a batch's own order is
			// random there).
			slices.SortFunc(recs, func(a, b Charged) int { return strings.Compare(a.ID, b.ID) })
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
		// On another connection, before this transaction touches
		// commerce_usage (a partition is made under a lock on the table that
		// this one's inserts would hold).
		if err := l.EnsurePartitions(ctx); err != nil {
			// Records of a month without its partition go to the default
			// one: correct, only slower to purge.
			l.logger.Warn("making the partitions of forwarded usage failed", "err", err)
		}
		for _, it := range held {
			if err := quarantine.Add(ctx, tx, it); err != nil {
				return err
			}
		}
		for _, lg := range batch {
			made, err := l.insert(ctx, tx, lg.regUID, lg.cloudID, lg.received, lg.recs)
			if err != nil {
				return err
			}
			if created == nil {
				created = made
			} else {
				maps.Copy(created, made)
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
	l.series.remember(created)
	if batches > 0 {
		l.loop.Drained(int64(records))
	}
	return batches, nil
}

// insert materialises one registration's charged records, received at
// receivedUs, into commerce_usage, resolving their rating series first. It
// answers the series it created, for the cache once the transaction commits.
func (l *Ledger) insert(ctx context.Context, tx *store.Tx, regUID, cloudID string, receivedUs int64, recs []Charged) (map[SeriesKey]int64, error) {
	keys := make([]SeriesKey, 0, 16)
	for i := range recs {
		if c := &recs[i]; c.BillingMeter != "" {
			keys = append(keys, SeriesKey{regUID, c.Subscription, c.BillingMeter})
		}
	}
	found, missing := l.series.lookup(keys)
	created, err := resolveSeries(ctx, tx, missing)
	if err != nil {
		return nil, err
	}
	for k, id := range created {
		found[k] = id
	}
	if tx.DB().Dialect == store.Postgres {
		return created, l.copyInsert(ctx, tx, regUID, cloudID, receivedUs, recs, found)
	}
	const chunk = 200
	placeholders := "(" + store.Placeholders(23) + ")"
	for start := 0; start < len(recs); start += chunk {
		part := recs[start:min(start+chunk, len(recs))]
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
			if c.HasUnits {
				units = c.Units
			}
			var series int64 // 0 for local-only meters, which are never rated
			if c.BillingMeter != "" {
				series = found[SeriesKey{regUID, c.Subscription, c.BillingMeter}]
			}
			args = append(args, c.ID, regUID, cloudID, c.Subscription, store.Bool(c.Mapped), c.Reason(), c.LocalSub, c.Tenant, c.MeterKey,
				c.BillingMeter, c.Qty, c.BillingQty, units, c.MapVersion, c.UsageUs, clock.Micros(clock.DayStart(clock.FromMicros(c.UsageUs))), c.ReportedUs, receivedUs,
				c.URI, c.Location, c.Tags, c.Addl, series)
		}
		// A record whose key expired from the idempotency store and was
		// re-sent is refused here.
		sb.WriteString(` ON CONFLICT (id) DO NOTHING`)
		if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
			return nil, fmt.Errorf("store forwarded usage: %w", err)
		}
	}
	return created, nil
}

// usageColumns are commerce_usage's columns in the order materialisation
// writes them.
var usageColumns = []string{"id", "registration_uid", "cloud_id", "charged_subscription_id", "mapped", "reason", "local_subscription_id", "tenant_id", "local_meter_key",
	"billing_meter_id", "quantity", "billing_quantity", "billing_units", "meter_map_version", "usage_hour_us", "usage_day_us", "reported_hour_us", "received_at_us",
	"resource_uri", "location", "tags", "additional_info", "series_id"}

// copyInsert is insert on PostgreSQL: the records are copied into a
// staging table and moved from there in one INSERT … SELECT, which keeps
// the primary key's refusal of a re-sent record (COPY itself cannot skip
// conflicts). Measured against the 200-row multi-row INSERT it replaces in
// docs/scale.md.
func (l *Ledger) copyInsert(ctx context.Context, tx *store.Tx, regUID, cloudID string, receivedUs int64, recs []Charged, series map[SeriesKey]int64) error {
	i := 0
	row := make([]any, len(usageColumns))
	next := func() ([]any, error) {
		if i == len(recs) {
			return nil, nil
		}
		c := &recs[i]
		i++
		var units any
		if c.HasUnits {
			units = c.Units
		}
		var id int64
		if c.BillingMeter != "" {
			id = series[SeriesKey{regUID, c.Subscription, c.BillingMeter}]
		}
		row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8] = c.ID, regUID, cloudID, c.Subscription, int32(store.Bool(c.Mapped)), c.Reason(), c.LocalSub, c.Tenant, c.MeterKey
		row[9], row[10], row[11], row[12], row[13], row[14] = c.BillingMeter, c.Qty, c.BillingQty, units, int32(c.MapVersion), c.UsageUs
		row[15], row[16], row[17] = clock.Micros(clock.DayStart(clock.FromMicros(c.UsageUs))), c.ReportedUs, receivedUs
		row[18], row[19], row[20], row[21], row[22] = c.URI, c.Location, c.Tags, c.Addl, id
		return row, nil
	}
	cols := strings.Join(usageColumns, ", ")
	return tx.Staged(ctx, "commerce_usage", usageColumns, next, func(stage string) error {
		// A record whose key expired from the idempotency store and was
		// re-sent is refused here, as in insert. The partitioned table's key
		// includes the usage day, which a record's ID fixes, so the conflict
		// is the same as on id alone.
		if _, err := tx.ExecContext(ctx, `INSERT INTO commerce_usage (`+cols+`) SELECT `+cols+` FROM `+stage+` ON CONFLICT (id, usage_day_us) DO NOTHING`); err != nil {
			return fmt.Errorf("store forwarded usage: %w", err)
		}
		return nil
	})
}

// Load materialises charged records directly, without the log: for loading
// a known volume (benchmarks, restores) where the log's acknowledgement
// buys nothing. Records already present are kept, as in materialisation.
func (l *Ledger) Load(ctx context.Context, regUID, cloudID string, received time.Time, recs []Charged) error {
	if err := l.EnsurePartitions(ctx); err != nil {
		return err
	}
	var created map[SeriesKey]int64
	if err := l.db.Write(ctx, func(tx *store.Tx) (err error) {
		created, err = l.insert(ctx, tx, regUID, cloudID, clock.Micros(received), recs)
		return err
	}); err != nil {
		return err
	}
	l.series.remember(created)
	return nil
}

// ReleaseLog takes a log row that materialisation held back into the log,
// to be materialised again (it is held again if it still does not decode).
func (l *Ledger) ReleaseLog(ctx context.Context, tx *store.Tx, it quarantine.Item, now time.Time) error {
	return l.Relog(ctx, tx, it, now)
}

// Relog appends a held log payload to the log again, as received now.
func (l *Ledger) Relog(ctx context.Context, tx *store.Tx, it quarantine.Item, now time.Time) error {
	_, cloudID, recs, err := Decode(it.Payload)
	if err != nil {
		return arm.InvalidRequest("", "Quarantined item %d does not decode (%v), so it cannot be taken again; drop it.", it.ID, err)
	}
	return l.append(ctx, tx, now, cloudID, len(recs), it.Payload)
}

// Log appends a mapped batch to the log inside tx. It is acknowledged once
// tx commits; commerce_usage follows from the log (Run), and every reader
// settles it first.
func (l *Ledger) Log(ctx context.Context, tx *store.Tx, now time.Time, regUID, cloudID string, recs []Charged) error {
	if len(recs) == 0 {
		return nil
	}
	return l.append(ctx, tx, now, cloudID, len(recs), Encode(regUID, cloudID, recs))
}

func (l *Ledger) append(ctx context.Context, tx *store.Tx, now time.Time, cloudID string, records int, payload []byte) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO commerce_usage_log (received_us, records, payload, cloud_id) VALUES (?, ?, ?, ?)`,
		clock.Micros(now), records, payload, strings.ToLower(cloudID)); err != nil {
		return fmt.Errorf("store forwarded usage: %w", err)
	}
	tx.AfterEnd(func(committed bool) {
		if committed {
			l.loop.Logged(int64(records))
		}
	})
	return nil
}

// Claim records keys (forwarded record IDs) inside tx until the instant
// until, and says which were new: a key seen before is a duplicate.
func (l *Ledger) Claim(ctx context.Context, tx *store.Tx, keys [][16]byte, until time.Time) ([]bool, error) {
	return l.dedup.Claim(ctx, tx, keys, clock.Micros(until))
}

// CountHour adds one batch to a registration's ingestion counters for the
// hour of now.
func (l *Ledger) CountHour(ctx context.Context, tx *store.Tx, regUID, cloudID string, now time.Time, records, duplicates int) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO ingest_hours (registration_uid, cloud_id, hour_us, records, duplicates, batches, last_at_us) VALUES (?, ?, ?, ?, ?, 1, ?)
		ON CONFLICT (registration_uid, hour_us) DO UPDATE SET records = ingest_hours.records + excluded.records, duplicates = ingest_hours.duplicates + excluded.duplicates,
		batches = ingest_hours.batches + 1, last_at_us = excluded.last_at_us`, regUID, cloudID, clock.Micros(clock.HourStart(now)), records, duplicates, clock.Micros(now))
	return err
}

// Begin marks a batch in flight: background materialisation gives way while
// batches keep arriving. Call the returned function when it is done.
func (l *Ledger) Begin() func() { return l.loop.Begin() }

// Settle materialises every batch acknowledged before it was called, so
// that commerce_usage is complete. Everything that reads commerce_usage
// calls it first; it costs one short transaction when nothing is pending.
// Batches logged meanwhile are left to the next settle or the background,
// so a steady stream of batches cannot keep a reader waiting.
func (l *Ledger) Settle(ctx context.Context) error {
	// Every acknowledged batch has committed, so its row is visible here;
	// log ids only grow.
	var upTo int64
	if err := l.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM commerce_usage_log`).Scan(&upTo); err != nil {
		return fmt.Errorf("read commerce usage log: %w", err)
	}
	if upTo == 0 {
		return nil
	}
	return drainer.Settle(ctx, func(ctx context.Context) (int, error) { return l.drain(ctx, true, upTo) })
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
func (l *Ledger) Run(ctx context.Context) {
	l.loop.Run(ctx, func(ctx context.Context) (n int64, err error) {
		err = l.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(records), 0) FROM commerce_usage_log`).Scan(&n)
		return n, err
	}, l.logger, "materialising forwarded usage failed")
}

// Materialised is the number of logged records this process has taken into
// commerce_usage since it started (a duplicate the primary key refused
// counts too): an in-memory count, free to read as often as wanted, where
// Stored counts rows.
func (l *Ledger) Materialised() int64 { return l.loop.Total() }

// Backlog is the number of acknowledged records not yet materialised, as
// this process counts them.
func (l *Ledger) Backlog() int64 { return l.loop.Backlog() }

// PurgeExpiredKeys forgets record IDs whose claim has expired.
func (l *Ledger) PurgeExpiredKeys(ctx context.Context) (int64, error) {
	return l.dedup.Purge(ctx, l.db, clock.Micros(l.clock.Now()))
}
