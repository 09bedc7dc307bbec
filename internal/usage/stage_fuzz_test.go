package usage

import (
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/money"
)

// FuzzAggregationStage feeds aggregation's per-event work (decoding a log
// payload, parsing and splitting each event across its hours, adding the
// parts to records) arbitrary payloads and arbitrary events. It must never
// panic, a payload either decodes or is refused whole, and an event's parts
// always sum exactly to it: aggregation is the stage that a bad record once
// stopped for every tenant.
func FuzzAggregationStage(f *testing.F) {
	f.Add([]byte{}, "1", int64(0), int64(3600_000_000), false)
	f.Add(encodeLog(nil, []logged{{sub: "s", meterKey: "m", qty: "2.5", startUs: 1, endUs: 7200_000_001, uri: "/r", tags: "null", addl: "null"}}), "0.000000000001", int64(59), int64(90061_000_000), true)
	f.Add([]byte{1, 200, 1}, "1000000000000", int64(-1), int64(744*3600_000_000), true)
	f.Add([]byte{1, 1, 0}, "99999999999999999999999999999999999999.99", int64(1<<40), int64(1), false)
	f.Fuzz(func(t *testing.T, payload []byte, qty string, startUs, spanUs int64, level bool) {
		if evs, err := decodeLog(payload); err == nil {
			g := newGroups()
			for i := range evs {
				if parts, err := g.parts(&evs[i]); err == nil {
					for _, p := range parts {
						g.add(recordKey{evs[i].sub, evs[i].meterKey, g.instance(evs[i].uri), p.hour.UnixMicro(), 0}, p.qty, &evs[i])
					}
				}
			}
			// What decodes encodes back to the same events.
			if again, err := decodeLog(encodeLog(nil, evs)); err != nil || len(again) != len(evs) {
				t.Fatalf("round trip of %d events: %d, %v", len(evs), len(again), err)
			}
		}
		// One event as validation would have let it through: a bounded
		// quantity over at most 31 days.
		q, err := money.ParseQuantity(qty)
		if err != nil || q.Sign() < 0 || q.Above(money.MaxEventQuantity) {
			return
		}
		span := spanUs % int64(maxSpan/time.Microsecond)
		if span < 0 {
			span = -span
		}
		start := startUs % (1 << 50)
		e := logged{sub: "s", meterKey: "m", level: level, qty: q.String(), startUs: start, endUs: start + span, uri: "/r"}
		g := newGroups()
		parts, err := g.parts(&e)
		if err != nil {
			t.Fatalf("a valid quantity %q did not parse: %v", qty, err)
		}
		sum, total := money.Zero, q
		if level {
			total = q.MulFrac(span, int64(time.Hour/time.Microsecond), partPlaces)
		}
		for _, p := range parts {
			if p.qty.Sign() < 0 {
				t.Fatalf("negative part %s of %s", p.qty, q)
			}
			sum = sum.Add(p.qty)
			if g.add(recordKey{hour: p.hour.UnixMicro()}, p.qty, &e).Above(money.MaxRecordQuantity) {
				t.Fatalf("one valid event's part %s exceeds a record's bound", p.qty)
			}
		}
		if !sum.Equal(total) {
			t.Fatalf("parts sum to %s, want %s", sum, total)
		}
	})
}
