package wire

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/bytedance/sonic"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/stackbill/stackbill/internal/money"
)

func benchBatch(n int) Batch {
	b := Batch{CloudID: "5bf881b2-6be7-42a1-9f47-d6fcb6737747"}
	h := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		sub := fmt.Sprintf("%08x-6be7-42a1-9f47-d6fcb6737747", i%1000)
		b.Records = append(b.Records, Record{ID: fmt.Sprintf("%032x", i*7919), SubscriptionID: sub, TenantID: fmt.Sprintf("%08x-1111-42a1-9f47-d6fcb6737747", i%1000),
			MeterID: "fab6eb84500b4a09a8ca7358f8bbaea5", Quantity: money.MustQuantity("12.25"), UsageHour: h.Add(time.Duration(i/2000) * time.Hour), ReportedHour: h.Add(time.Duration(i/2000) * time.Hour),
			ResourceURI: "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1", Location: "local", Tags: json.RawMessage("null"), AdditionalInfo: json.RawMessage("null")})
	}
	return b
}

// BenchmarkWire measures a bridge batch of 20,000 records on the wire: the
// encoder and the compression (per record, both ways) and the bytes sent.
func BenchmarkWire(b *testing.B) {
	batch := benchBatch(20000)
	raw, _ := json.Marshal(batch)
	zenc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	zdec, _ := zstd.NewReader(nil)
	type codec struct {
		name string
		enc  func([]byte) []byte
		dec  func([]byte) []byte
	}
	gz := func(level int) func([]byte) []byte {
		return func(p []byte) []byte {
			var buf bytes.Buffer
			w, _ := gzip.NewWriterLevel(&buf, level)
			w.Write(p)
			w.Close()
			return buf.Bytes()
		}
	}
	gunz := func(p []byte) []byte { r, _ := gzip.NewReader(bytes.NewReader(p)); out, _ := io.ReadAll(r); return out }
	for _, c := range []codec{
		{"none", func(p []byte) []byte { return p }, func(p []byte) []byte { return p }},
		{"gzip-default", gz(gzip.DefaultCompression), gunz},
		{"gzip-speed", gz(gzip.BestSpeed), gunz},
		{"klauspost-gzip-speed", func(p []byte) []byte {
			var buf bytes.Buffer
			w, _ := kgzip.NewWriterLevel(&buf, kgzip.BestSpeed)
			w.Write(p)
			w.Close()
			return buf.Bytes()
		}, func(p []byte) []byte {
			r, _ := kgzip.NewReader(bytes.NewReader(p))
			out, _ := io.ReadAll(r)
			return out
		}},
		{"zstd-fastest", func(p []byte) []byte { return zenc.EncodeAll(p, nil) }, func(p []byte) []byte { out, _ := zdec.DecodeAll(p, nil); return out }},
	} {
		z := c.enc(raw)
		b.Run("compress/"+c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c.enc(raw)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/record")
			b.ReportMetric(float64(len(z))/20000, "B/record")
		})
		b.Run("decompress/"+c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c.dec(z)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/record")
		})
	}
	b.Run("encode/json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			json.Marshal(batch)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/record")
	})
	b.Run("encode/sonic", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			sonic.ConfigStd.Marshal(batch)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/record")
	})
	b.Run("decode/json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var out Batch
			json.Unmarshal(raw, &out)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/record")
	})
	b.Run("decode/sonic", func(b *testing.B) {
		api := sonic.Config{DisallowUnknownFields: true}.Froze()
		for i := 0; i < b.N; i++ {
			var out Batch
			api.Unmarshal(raw, &out)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/record")
	})
}
