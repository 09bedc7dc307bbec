package bridge

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
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
	"github.com/stackbill/stackbill/internal/ledger"
	"github.com/stackbill/stackbill/internal/money"
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
