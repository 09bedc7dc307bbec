package bridge

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/money"
	"github.com/stackbill/stackbill/internal/varbuf"
)

// FuzzVerifyActivationKey edits a genuine activation key: verification never
// panics, every refusal is ErrActivation, and whatever it accepts carries
// exactly the claims commerce signed (an edit can only be harmless, such as
// base64 padding bits, never a change of registration, cloud or credential).
func FuzzVerifyActivationKey(f *testing.F) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	kid := keyID(&key.PublicKey)
	keys := JWKS{Keys: []JWK{toJWK(&key.PublicKey, kid)}}
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	claims := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AzureStack/registrations/r",
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.AddDate(1, 0, 0))},
		RegistrationName: "r", RegistrationUID: "uid", CloudID: "5bf881b2-6be7-42a1-9f47-d6fcb6737747", BillingModel: "PayAsYouUse",
		UsageReportingEnabled: true, UsageEndpoint: "https://commerce", BridgeToken: "sbk_secret", Version: "1.0"}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	genuine, err := tok.SignedString(key)
	if err != nil {
		f.Fatal(err)
	}
	want, err := Verify(genuine, keys, now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine, 10, byte('A'))
	f.Add(genuine, len(genuine)-1, byte('B'))
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJzdGFja2JpbGwifQ.", 0, byte('e'))
	f.Fuzz(func(t *testing.T, base string, at int, b byte) {
		edited := base
		if len(edited) > 0 {
			i := ((at % len(edited)) + len(edited)) % len(edited)
			edited = edited[:i] + string(b) + edited[i+1:]
		}
		got, err := Verify(edited, keys, now)
		if err != nil {
			if !errors.Is(err, ErrActivation) {
				t.Fatalf("refusal %v is not ErrActivation", err)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("an edited key verified with other claims: %+v", got)
		}
	})
}

// TestBinaryBatchRoundTrip: the binary layout carries every field exactly,
// and a truncated, extended or corrupted batch is refused, never misread.
func TestBinaryBatchRoundTrip(t *testing.T) {
	in := benchBatch(50)
	in.Records[3].Tags = json.RawMessage(`{"env":"prod"}`)
	in.Records[4].AdditionalInfo = nil
	in.Records[5].Quantity = money.MustQuantity("0.000000000001")
	in.Records[6].ReportedHour = in.Records[6].UsageHour.Add(49 * time.Hour) // late usage
	raw, err := in.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var out Batch
	if err := out.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	if out.CloudID != in.CloudID || len(out.Records) != len(in.Records) {
		t.Fatalf("batch header: %q %d", out.CloudID, len(out.Records))
	}
	for i := range in.Records {
		a, b := in.Records[i], out.Records[i]
		if !a.Quantity.Equal(b.Quantity) || !a.UsageHour.Equal(b.UsageHour) || !a.ReportedHour.Equal(b.ReportedHour) ||
			string(a.Tags) != string(b.Tags) || string(a.AdditionalInfo) != string(b.AdditionalInfo) {
			t.Fatalf("record %d: %+v became %+v", i, a, b)
		}
		if b.quantityText != a.Quantity.String() {
			t.Fatalf("record %d: decoded quantity text %q, want %q", i, b.quantityText, a.Quantity.String())
		}
		if (b.tagsText != "" && b.tagsText != string(b.Tags)) || (b.addlText != "" && b.addlText != string(b.AdditionalInfo)) {
			t.Fatalf("record %d: JSON texts %q %q, raw %s %s", i, b.tagsText, b.addlText, b.Tags, b.AdditionalInfo)
		}
		a.Quantity, b.Quantity, b.quantityText, b.tagsText, b.addlText = money.Zero, money.Zero, "", "", ""
		a.Tags, b.Tags, a.AdditionalInfo, b.AdditionalInfo = nil, nil, nil, nil
		a.UsageHour, b.UsageHour, a.ReportedHour, b.ReportedHour = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("record %d: %+v became %+v", i, a, b)
		}
	}
	for cut := 0; cut < len(raw); cut += 97 {
		if err := new(Batch).UnmarshalBinary(raw[:cut]); !errors.Is(err, ErrWire) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
	}
	if err := new(Batch).UnmarshalBinary(append(raw, 0)); !errors.Is(err, ErrWire) {
		t.Fatalf("trailing byte: %v", err)
	}
	bad := benchBatch(1)
	bad.Records[0].Tags = json.RawMessage(`{not json`)
	if raw, _ := bad.MarshalBinary(); !errors.Is(new(Batch).UnmarshalBinary(raw), ErrWire) {
		t.Fatal("tags that are not JSON were accepted")
	}
}

// FuzzBinaryBatch: any input decodes to a batch or ErrWire, never a panic;
// what decodes re-encodes to a batch that decodes alike.
func FuzzBinaryBatch(f *testing.F) {
	raw, _ := benchBatch(3).MarshalBinary()
	f.Add(raw)
	f.Fuzz(func(t *testing.T, p []byte) {
		var b Batch
		if err := b.UnmarshalBinary(p); err != nil {
			if !errors.Is(err, ErrWire) {
				t.Fatalf("error %v is not ErrWire", err)
			}
			return
		}
		again, _ := b.MarshalBinary()
		var c Batch
		if err := c.UnmarshalBinary(again); err != nil || len(c.Records) != len(b.Records) {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
	})
}

// TestChargedLogRoundTrip: commerce's log carries every mapped field, and a
// damaged payload is refused rather than materialised wrongly.
func TestChargedLogRoundTrip(t *testing.T) {
	in := []charged{
		{id: "0123456789abcdef0123456789abcdef", subscription: "s", mapped: true, localSub: "l", tenant: "t", meterKey: "m", billingMeter: "b",
			qty: "1.5", billingQty: "3", units: 3_000_000_000, hasUnits: true, mapVersion: 2, usageUs: 1_790_000_000_000_000, reportedUs: 1_790_003_600_000_000,
			uri: "/r", location: "local", tags: `{"a":"b"}`, addl: "null"},
		{id: "fedcba9876543210fedcba9876543210", tenant: "u", subscription: "d", meterKey: "x", qty: "0", billingQty: "0", usageUs: 5, reportedUs: 5, tags: "null", addl: "null"},
	}
	// A third record repeats the first's strings: they travel as
	// back-references and come back the same.
	third := in[0]
	third.id, third.units = "00000000000000000000000000000003", 7
	in = append(in, third)
	b := encodeCharged("reg", "cloud", in)
	reg, cloud, out, err := decodeCharged(b)
	if err != nil || reg != "reg" || cloud != "cloud" || !reflect.DeepEqual(in, out) {
		t.Fatalf("%q %q %+v %v", reg, cloud, out, err)
	}
	if v1 := encodeChargedV1("reg", "cloud", in); len(b) >= len(v1) {
		t.Errorf("the string table saved nothing: %d bytes against %d", len(b), len(v1))
	} else if reg, cloud, out, err := decodeCharged(v1); err != nil || reg != "reg" || cloud != "cloud" || !reflect.DeepEqual(in, out) {
		// A log written before the upgrade is still materialised.
		t.Fatalf("version 1: %q %q %+v %v", reg, cloud, out, err)
	}
	// A back-reference past the strings seen so far is corrupt.
	bad := append([]byte{chargedVersion}, varbuf.AppendString(varbuf.AppendString(nil, "reg"), "cloud")...)
	bad = binary.AppendUvarint(bad, 1)
	bad = binary.AppendUvarint(varbuf.AppendString(bad, in[0].id), 9)
	if _, _, _, err := decodeCharged(bad); err == nil {
		t.Fatal("a dangling back-reference decoded")
	}
	if in[0].reason() != "mapped via tenant t → subscription s" || in[1].reason() != "tenant u not registered → default subscription d" {
		t.Fatalf("reasons %q, %q", in[0].reason(), in[1].reason())
	}
	for cut := 0; cut < len(b); cut++ {
		if _, _, _, err := decodeCharged(b[:cut]); err == nil {
			t.Fatalf("a payload cut at %d of %d bytes decoded", cut, len(b))
		}
	}
}

// TestRecordIDIsStable pins record IDs: a change would make records re-sent
// across an upgrade look new to commerce and count twice.
func TestRecordIDIsStable(t *testing.T) {
	got := RecordID("5bf881b2-6be7-42a1-9f47-d6fcb6737747", "sub", "fab6eb84500b4a09a8ca7358f8bbaea5", "0123abcd", 1790000000000000, -1)
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%s|%s|%s|%d|%d", "5bf881b2-6be7-42a1-9f47-d6fcb6737747", "sub", "fab6eb84500b4a09a8ca7358f8bbaea5", "0123abcd", 1790000000000000, -1)))
	// The literal is the ID stackbill has always produced for this record.
	if want := hex.EncodeToString(sum[:16]); got != want || got != "f63d7752a0f3379dba1f0c5b1c45834d" {
		t.Fatalf("RecordID %s, want %s", got, want)
	}
}

// encodeChargedV1 is the log layout before the string table, as the
// version 1 writer laid it out.
func encodeChargedV1(regUID, cloudID string, recs []charged) []byte {
	b := varbuf.AppendString(varbuf.AppendString([]byte{chargedV1}, regUID), cloudID)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for _, c := range recs {
		for _, s := range []string{c.id, c.subscription} {
			b = varbuf.AppendString(b, s)
		}
		b = varbuf.AppendBool(b, c.mapped)
		for _, s := range []string{c.localSub, c.tenant, c.meterKey, c.billingMeter, c.qty, c.billingQty} {
			b = varbuf.AppendString(b, s)
		}
		b = varbuf.AppendBool(b, c.hasUnits)
		for _, v := range []int64{c.units, int64(c.mapVersion), c.usageUs, c.reportedUs - c.usageUs} {
			b = binary.AppendVarint(b, v)
		}
		for _, s := range []string{c.uri, c.location, c.tags, c.addl} {
			b = varbuf.AppendString(b, s)
		}
	}
	return b
}

// FuzzIngestAndMaterialiseStages feeds commerce's stages arbitrary input:
// records through the check both sides of the wire share, and arbitrary
// bytes to the decoder of commerce's log, which materialisation runs
// behind every acknowledged batch. Nothing may panic; a record that passes
// the check survives the wire unchanged and stays within every bound.
func FuzzIngestAndMaterialiseStages(f *testing.F) {
	f.Add("5bf881b2-6be7-42a1-9f47-d6fcb6737747", "1.5", int64(1_790_000_000_000_000), "/r/vm1", "local", `{"a":"b"}`, []byte{2})
	f.Add("x", "-1", int64(0), "\x00", "", "nope", []byte{1, 0, 0, 0})
	f.Add("", strings.Repeat("9", 40), int64(-1), strings.Repeat("é", 2000), "\u202e", `{"a":"\u0000"}`, encodeCharged("r", "c", []charged{{id: "i", qty: "1"}}))
	f.Fuzz(func(t *testing.T, sub, qty string, usageUs int64, uri, loc, tags string, logPayload []byte) {
		_, _, _, _ = decodeCharged(logPayload)
		q, err := money.ParseQuantity(qty)
		if err != nil {
			return
		}
		hour := clock.HourStart(clock.FromMicros(usageUs % (1 << 52)))
		r := Record{SubscriptionID: sub, TenantID: sub, MeterID: "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", Quantity: q, UsageHour: hour, ReportedHour: hour,
			ResourceURI: uri, Location: loc}
		if json.Valid([]byte(tags)) {
			r.Tags = json.RawMessage(tags)
		}
		r.SetID("5bf881b2-6be7-42a1-9f47-d6fcb6737747")
		if r.check() != "" {
			return
		}
		if r.Quantity.Above(money.MaxRecordQuantity) || r.Quantity.Sign() < 0 || !utf8.ValidString(r.ResourceURI) || strings.ContainsRune(r.ResourceURI+r.Location, 0) {
			t.Fatalf("a record past its bounds passed the check: %+v", r)
		}
		raw, err := Batch{CloudID: "5bf881b2-6be7-42a1-9f47-d6fcb6737747", Records: []Record{r}}.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back Batch
		if err := back.UnmarshalBinary(raw); err != nil || len(back.Records) != 1 || back.Records[0].check() != "" || !back.Records[0].Quantity.Equal(r.Quantity) || back.Records[0].ID != r.ID {
			t.Fatalf("a record that passed the check did not survive the wire: %v", err)
		}
	})
}
