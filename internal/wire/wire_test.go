package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/money"
)

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
	// The stream position travels with the batch (layout 2); a batch of
	// layout 1, which has none, still decodes.
	in.Stream = &Stream{After: Position{ReportedHour: 1790000000000000, ID: 41}, Through: Position{ReportedHour: 1790003600000000, ID: 7}}
	raw, _ = in.MarshalBinary()
	if err := out.UnmarshalBinary(raw); err != nil || out.Stream == nil || *out.Stream != *in.Stream || len(out.Records) != len(in.Records) {
		t.Fatalf("stream batch: %v %+v", err, out.Stream)
	}
	v1, _ := (Batch{CloudID: "c", Records: in.Records[:2]}).MarshalBinary()
	head := 1 + 1 + len("c")                                                 // version, cloud ID
	v1 = append(append([]byte{wireVersion1}, v1[1:head]...), v1[head+1:]...) // without the stream flag
	if err := out.UnmarshalBinary(v1); err != nil || out.Stream != nil || out.CloudID != "c" || len(out.Records) != 2 {
		t.Fatalf("layout 1: %v %+v", err, out)
	}
	raw[1+1+len(in.CloudID)] = 2 // neither 0 nor 1
	if err := new(Batch).UnmarshalBinary(raw); !errors.Is(err, ErrWire) {
		t.Fatalf("bad stream flag: %v", err)
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
