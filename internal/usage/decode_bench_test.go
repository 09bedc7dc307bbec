package usage

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/bytedance/sonic"
	jsonv2 "github.com/go-json-experiment/json"

	"github.com/stackbill/stackbill/internal/money"
)

func benchLines(n int) [][]byte {
	var out [][]byte
	t := time.Date(2026, 10, 1, 3, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		q := money.MustQuantity(fmt.Sprint(i%8 + 1))
		s, e := t, t.Add(time.Hour)
		b, _ := json.Marshal(Event{ID: fmt.Sprintf("a6845505-acd6-4500-bcc8-%012d", i), Source: "stackbill-simulator", SubscriptionID: "8a1d0a3c-5b8e-4f5e-9c7e-0c2f1d2e3f40", MeterID: "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", Quantity: &q,
			StartTime: &s, EndTime: &e, ResourceURI: fmt.Sprintf("/subscriptions/8a1d0a3c-5b8e-4f5e-9c7e-0c2f1d2e3f40/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm%03d", i%100), Location: "local",
			AdditionalInfo: json.RawMessage(`{"ServiceType":"Standard_D1_v2"}`)})
		out = append(out, b)
	}
	return out
}

// BenchmarkDecodeEvent compares the intake's decoder (sonic into wireEvent)
// with decoding into Event's typed fields, and with encoding/json/v2's
// reference implementation, on simulator-like events.
func BenchmarkDecodeEvent(b *testing.B) {
	lines := benchLines(1000)
	run := func(name string, decode func(line []byte) error) {
		b.Run(name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					if err := decode(lines[i%1000]); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
	p := NewParser()
	run("sonic", func(l []byte) error { var e wireEvent; return p.strictDecode(l, &e) })
	// The previous design: typed fields (decimal quantity, time.Time) and
	// copied strings.
	typed := sonic.Config{DisallowUnknownFields: true, CopyString: true}.Froze()
	run("sonic-typed", func(l []byte) error { var e Event; return typed.Unmarshal(l, &e) })
	run("jsonv2", func(l []byte) error {
		var e wireEvent
		return jsonv2.Unmarshal(l, &e, jsonv2.RejectUnknownMembers(true), jsonv2.MatchCaseInsensitiveNames(true))
	})
}
