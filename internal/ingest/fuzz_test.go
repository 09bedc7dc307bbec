package ingest_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/wire"
)

// FuzzIngestAndMaterialiseStages feeds commerce's stages arbitrary input:
// records through the check both sides of the wire share, and arbitrary
// bytes to the decoder of commerce's log, which materialisation runs
// behind every acknowledged batch. Nothing may panic; a record that passes
// the check survives the wire unchanged and stays within every bound.
func FuzzIngestAndMaterialiseStages(f *testing.F) {
	f.Add("5bf881b2-6be7-42a1-9f47-d6fcb6737747", "1.5", int64(1_790_000_000_000_000), "/r/vm1", "local", `{"a":"b"}`, []byte{2})
	f.Add("x", "-1", int64(0), "\x00", "", "nope", []byte{1, 0, 0, 0})
	f.Add("", strings.Repeat("9", 40), int64(-1), strings.Repeat("é", 2000), "\u202e", `{"a":"\u0000"}`, ledger.Encode("r", "c", []ledger.Charged{{ID: "i", Qty: "1"}}))
	f.Fuzz(func(t *testing.T, sub, qty string, usageUs int64, uri, loc, tags string, logPayload []byte) {
		_, _, _, _ = ledger.Decode(logPayload)
		q, err := money.ParseQuantity(qty)
		if err != nil {
			return
		}
		hour := clock.HourStart(clock.FromMicros(usageUs % (1 << 52)))
		r := wire.Record{SubscriptionID: sub, TenantID: sub, MeterID: "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", Quantity: q, UsageHour: hour, ReportedHour: hour,
			ResourceURI: uri, Location: loc}
		if json.Valid([]byte(tags)) {
			r.Tags = json.RawMessage(tags)
		}
		r.SetID("5bf881b2-6be7-42a1-9f47-d6fcb6737747")
		if r.Check() != "" {
			return
		}
		if r.Quantity.Above(money.MaxRecordQuantity) || r.Quantity.Sign() < 0 || !utf8.ValidString(r.ResourceURI) || strings.ContainsRune(r.ResourceURI+r.Location, 0) {
			t.Fatalf("a record past its bounds passed the check: %+v", r)
		}
		raw, err := wire.Batch{CloudID: "5bf881b2-6be7-42a1-9f47-d6fcb6737747", Records: []wire.Record{r}}.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back wire.Batch
		if err := back.UnmarshalBinary(raw); err != nil || len(back.Records) != 1 || back.Records[0].Check() != "" || !back.Records[0].Quantity.Equal(r.Quantity) || back.Records[0].ID != r.ID {
			t.Fatalf("a record that passed the check did not survive the wire: %v", err)
		}
	})
}
