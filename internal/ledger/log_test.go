package ledger

import (
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/stackbill/stackbill/internal/varbuf"
)

// TestChargedLogRoundTrip: commerce's log carries every mapped field, and a
// damaged payload is refused rather than materialised wrongly.
func TestChargedLogRoundTrip(t *testing.T) {
	in := []Charged{
		{ID: "0123456789abcdef0123456789abcdef", Subscription: "s", Mapped: true, LocalSub: "l", Tenant: "t", MeterKey: "m", BillingMeter: "b",
			Qty: "1.5", BillingQty: "3", Units: 3_000_000_000, HasUnits: true, MapVersion: 2, UsageUs: 1_790_000_000_000_000, ReportedUs: 1_790_003_600_000_000,
			URI: "/r", Location: "local", Tags: `{"a":"b"}`, Addl: "null"},
		{ID: "fedcba9876543210fedcba9876543210", Tenant: "u", Subscription: "d", MeterKey: "x", Qty: "0", BillingQty: "0", UsageUs: 5, ReportedUs: 5, Tags: "null", Addl: "null"},
	}
	// A third record repeats the first's strings: they travel as
	// back-references and come back the same.
	third := in[0]
	third.ID, third.Units = "00000000000000000000000000000003", 7
	in = append(in, third)
	b := Encode("reg", "cloud", in)
	reg, cloud, out, err := Decode(b)
	if err != nil || reg != "reg" || cloud != "cloud" || !reflect.DeepEqual(in, out) {
		t.Fatalf("%q %q %+v %v", reg, cloud, out, err)
	}
	if v1 := encodeChargedV1("reg", "cloud", in); len(b) >= len(v1) {
		t.Errorf("the string table saved nothing: %d bytes against %d", len(b), len(v1))
	} else if reg, cloud, out, err := Decode(v1); err != nil || reg != "reg" || cloud != "cloud" || !reflect.DeepEqual(in, out) {
		// A log written before the upgrade is still materialised.
		t.Fatalf("version 1: %q %q %+v %v", reg, cloud, out, err)
	}
	// A back-reference past the strings seen so far is corrupt.
	bad := append([]byte{chargedVersion}, varbuf.AppendString(varbuf.AppendString(nil, "reg"), "cloud")...)
	bad = binary.AppendUvarint(bad, 1)
	bad = binary.AppendUvarint(varbuf.AppendString(bad, in[0].ID), 9)
	if _, _, _, err := Decode(bad); err == nil {
		t.Fatal("a dangling back-reference decoded")
	}
	if in[0].Reason() != "mapped via tenant t → subscription s" || in[1].Reason() != "tenant u not registered → default subscription d" {
		t.Fatalf("reasons %q, %q", in[0].Reason(), in[1].Reason())
	}
	for cut := 0; cut < len(b); cut++ {
		if _, _, _, err := Decode(b[:cut]); err == nil {
			t.Fatalf("a payload cut at %d of %d bytes decoded", cut, len(b))
		}
	}
}

// encodeChargedV1 is the log layout before the string table, as the
// version 1 writer laid it out.
func encodeChargedV1(regUID, cloudID string, recs []Charged) []byte {
	b := varbuf.AppendString(varbuf.AppendString([]byte{chargedV1}, regUID), cloudID)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for _, c := range recs {
		for _, s := range []string{c.ID, c.Subscription} {
			b = varbuf.AppendString(b, s)
		}
		b = varbuf.AppendBool(b, c.Mapped)
		for _, s := range []string{c.LocalSub, c.Tenant, c.MeterKey, c.BillingMeter, c.Qty, c.BillingQty} {
			b = varbuf.AppendString(b, s)
		}
		b = varbuf.AppendBool(b, c.HasUnits)
		for _, v := range []int64{c.Units, int64(c.MapVersion), c.UsageUs, c.ReportedUs - c.UsageUs} {
			b = binary.AppendVarint(b, v)
		}
		for _, s := range []string{c.URI, c.Location, c.Tags, c.Addl} {
			b = varbuf.AppendString(b, s)
		}
	}
	return b
}
