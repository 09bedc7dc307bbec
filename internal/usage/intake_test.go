package usage

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/money"
)

func TestSplitPartsSumExactly(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		qty        string
		start, end time.Time
		hours      int
	}{
		{"one whole hour", "2", base, base.Add(time.Hour), 1},
		{"point event", "7.5", base.Add(17 * time.Minute), base.Add(17 * time.Minute), 1},
		{"thirds", "10", base.Add(20 * time.Minute), base.Add(2*time.Hour + 20*time.Minute), 3},
		{"a day and a bit", "0.000000000001", base.Add(59 * time.Minute), base.Add(25 * time.Hour), 25},
		{"big", "123456789012345678901234567890.5", base, base.Add(48 * time.Hour), 48},
	} {
		parts := split(money.MustQuantity(tc.qty), tc.start, tc.end)
		sum := money.Zero
		for i, p := range parts {
			sum = sum.Add(p.qty)
			if p.qty.Sign() < 0 || !p.hour.Equal(p.hour.Truncate(time.Hour)) || (i > 0 && !p.hour.Equal(parts[i-1].hour.Add(time.Hour))) {
				t.Fatalf("%s: bad part %d: %+v", tc.name, i, p)
			}
		}
		if len(parts) != tc.hours || !sum.Equal(money.MustQuantity(tc.qty)) {
			t.Errorf("%s: %d parts summing to %s, want %d parts summing to %s", tc.name, len(parts), sum, tc.hours, tc.qty)
		}
	}
	// Proportionality: 20 of 120 minutes in the first hour.
	parts := split(money.MustQuantity("12"), base.Add(40*time.Minute), base.Add(2*time.Hour+40*time.Minute))
	if parts[0].qty.String() != "2" || parts[1].qty.String() != "6" || parts[2].qty.String() != "4" {
		t.Fatalf("parts %v", parts)
	}
}

func TestParseFormats(t *testing.T) {
	t.Parallel()
	ev := `{"id":"a","subscriptionId":"s","meterId":"m","quantity":1,"startTime":"2026-01-01T00:00:00Z","endTime":"2026-01-01T01:00:00Z"}`
	for name, tc := range map[string]struct {
		ct, body string
		format   Format
		n, rej   int
	}{
		"ndjson":            {"application/x-ndjson", ev + "\n\n" + ev + "\n", NDJSON, 2, 0},
		"ndjson by default": {"", ev + "\n" + "{broken\n", NDJSON, 2, 1},
		"array":             {"application/json", "[" + ev + "," + ev + "]", JSONArray, 2, 0},
		"cloudevents":       {"application/cloudevents-batch+json", `[{"specversion":"1.0","id":"x","source":"s","type":"t","data":` + ev + `}]`, CloudEventsBatch, 1, 0},
	} {
		f := FormatOf(tc.ct, []byte(tc.body))
		if f != tc.format {
			t.Errorf("%s: format %v", name, f)
		}
		b, err := NewParser().Parse(f, []byte(tc.body))
		if err != nil || b.Len() != tc.n || len(b.Rejected()) != tc.rej {
			t.Errorf("%s: %+v, %v", name, b, err)
		}
	}
	if _, err := NewParser().Parse(JSONArray, []byte(strings.Repeat("[", 3))); err == nil {
		t.Error("broken array accepted")
	}
	big := "[" + strings.TrimSuffix(strings.Repeat(ev+",", MaxBatch+1), ",") + "]"
	if _, err := NewParser().Parse(JSONArray, []byte(big)); err == nil || !strings.Contains(err.Error(), fmt.Sprint(MaxBatch)) {
		t.Errorf("oversized batch: %v", err)
	}
}

// FuzzParse feeds arbitrary bodies to every format: parsing never panics,
// and every element is either an event or a rejection.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"id":"a","subscriptionId":"s","meterId":"m","quantity":"1.5","startTime":"2026-01-01T00:00:00Z","endTime":"2026-01-01T01:00:00Z"}`))
	f.Add([]byte(`[{"specversion":"1.0","id":"x","source":"s","type":"t","data":{"quantity":1e400}}]`))
	f.Add([]byte("{}\n{\"quantity\":\"-0\"}\n[]"))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, format := range []Format{NDJSON, JSONArray, CloudEventsBatch} {
			b, err := NewParser().Parse(format, body)
			if err != nil {
				continue
			}
			ok := 0
			for _, e := range b.events {
				if e.parsed {
					ok++
				}
			}
			if ok+len(b.rejected) != len(b.events) {
				t.Fatalf("%d events, %d parsed, %d rejected", len(b.events), ok, len(b.rejected))
			}
		}
	})
}

// TestLogPayloadRoundTrip: what intake logs is what aggregation reads, and a
// damaged payload is refused, never half-read.
func TestLogPayloadRoundTrip(t *testing.T) {
	t.Parallel()
	in := []logged{
		{sub: "249356fe-5102-4bf2-902c-91b3eaa77be0", meterKey: "fab6eb84500b4a09a8ca7358f8bbaea5", qty: "12345678901234567890.123456789",
			startUs: 1_790_000_000_000_000, endUs: 1_790_003_600_000_000, uri: "/subscriptions/x/vm0", location: "local", tags: `{"a":"1"}`, addl: `{"ServiceType":"Standard_D1_v2"}`},
		{sub: "s", meterKey: "m", level: true, qty: "0.000000000001", startUs: -5, endUs: -5, tags: "null", addl: "null"},
	}
	b := encodeLog(nil, in)
	out, err := decodeLog(b)
	if err != nil || len(out) != len(in) {
		t.Fatalf("decode: %v, %d events", err, len(out))
	}
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("event %d: got %+v, want %+v", i, out[i], in[i])
		}
	}
	for cut := 0; cut < len(b); cut++ {
		if _, err := decodeLog(b[:cut]); err == nil {
			t.Fatalf("a payload cut at %d of %d bytes decoded", cut, len(b))
		}
	}
	if _, err := decodeLog(append(append([]byte(nil), b...), 0)); err == nil {
		t.Fatal("a payload with a trailing byte decoded")
	}
}

// TestQuantityToken: a quantity arrives as a JSON number or string and is
// kept as the text that was sent; null and a missing quantity are empty.
func TestQuantityToken(t *testing.T) {
	t.Parallel()
	for tok, want := range map[string]string{`12.5`: "12.5", `"0.25"`: "0.25", `"\u0031.5"`: "1.5", ` 7 `: "7", `null`: "", ``: "", `1e3`: "1e3"} {
		got, err := quantityText([]byte(tok))
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", tok, got, err, want)
		}
	}
	if _, err := quantityText([]byte(`"1.5`)); err == nil {
		t.Error("an unterminated string was accepted")
	}
	if _, err := eventTime("startTime", "2026-01-01 00:00:00"); err == nil || !strings.Contains(err.Error(), "malformed value") {
		t.Errorf("a time that is not RFC 3339: %v", err)
	}
	if got, err := eventTime("startTime", "2026-01-01T02:00:00+02:00"); err != nil || got.Location() != time.UTC || got.Hour() != 0 {
		t.Errorf("offset time: %v %v", got, err)
	}
}
