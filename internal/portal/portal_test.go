package portal

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/money"
)

func TestBuildChartKeepsTopSeriesAndSumsTheRest(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var pts []point
	// Twelve keys with totals 1..12 on day 0, and key k12 again on day 1.
	for k := 1; k <= 12; k++ {
		pts = append(pts, point{Bucket: from, Key: string(rune('a' + k)), Qty: money.FromInt(int64(k))})
	}
	pts = append(pts, point{Bucket: from.Add(24 * time.Hour), Key: string(rune('a' + 12)), Qty: money.MustQuantity("0.5")})
	pts = append(pts, point{Bucket: from.Add(10 * 24 * time.Hour), Key: "outside", Qty: money.FromInt(99)}) // outside the range: ignored
	// Day 2 has not begun: it is a gap, not a zero.
	c := buildChart("x", "t", "u", "line", pts, from, from.Add(3*24*time.Hour), from.Add(36*time.Hour), 24*time.Hour, func(k string) string { return "L" + k })
	if len(c.Labels) != 3 || c.Labels[0] != "2026-11-01" {
		t.Fatalf("labels %v", c.Labels)
	}
	if len(c.Series) != maxSeries+1 {
		t.Fatalf("%d series, want %d and other", len(c.Series), maxSeries)
	}
	if c.Series[0].Label != "L"+string(rune('a'+12)) || c.Series[0].Total.String() != "12.5" || c.Series[0].Values[1].String() != "0.5" {
		t.Fatalf("largest series %+v", c.Series[0])
	}
	other := c.Series[maxSeries]
	// Keys 1..4 are not in the top eight: 1+2+3+4 = 10.
	if other.Label != "other" || other.Total.String() != "10" || other.Values[0].String() != "10" {
		t.Fatalf("other %+v", other)
	}
	var spec struct {
		Datasets []struct {
			Data []*json.Number `json:"data"`
		} `json:"datasets"`
	}
	if err := json.Unmarshal([]byte(c.JSON), &spec); err != nil || *spec.Datasets[0].Data[1] != "0.5" || *spec.Datasets[1].Data[1] != "0" || spec.Datasets[0].Data[2] != nil {
		t.Fatalf("chart JSON %s: %v", c.JSON, err)
	}
}

// TestResourceLabels: resources are named by the shortest suffix that tells
// them apart (the review found "…/virtualMachines/vm0" twice in a legend).
func TestResourceLabels(t *testing.T) {
	const a, b = "/subscriptions/aaaa/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm0",
		"/subscriptions/aaaa/resourceGroups/rg2/providers/Microsoft.Compute/virtualMachines/vm0"
	const c, d = "/subscriptions/bbbb/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm0",
		"/subscriptions/aaaa/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm7"
	label := resourceLabels([]point{{Key: a}, {Key: b}, {Key: c}, {Key: d}, {Key: ""}})
	want := map[string]string{a: a, c: c, b: "rg2/Microsoft.Compute/virtualMachines/vm0", d: "Microsoft.Compute/virtualMachines/vm7", "": "(no resource)"}
	seen := map[string]bool{}
	for k, w := range want {
		if got := label(k); got != w {
			t.Errorf("label(%q) = %q, want %q", k, got, w)
		}
		if seen[label(k)] {
			t.Errorf("label %q names two resources", label(k))
		}
		seen[label(k)] = true
	}
}

func TestSafeNextStaysInThePortal(t *testing.T) {
	for in, want := range map[string]string{
		"/portal/usage?from=2026-11-01": "/portal/usage?from=2026-11-01",
		"//evil.example/portal/":        "/portal/",
		"https://evil.example/":         "/portal/",
		"/portal/\\evil":                "/portal/",
		"":                              "/portal/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPaginate(t *testing.T) {
	items := make([]int, 120)
	for i := range items {
		items[i] = i
	}
	r := httptest.NewRequest("GET", "/portal/customers?q=x&page=3", nil)
	page, pg := paginate(r, items)
	if len(page) != 20 || page[0] != 100 || pg.Pages != 3 || pg.Next != "" || pg.Prev != "/portal/customers?page=2&q=x" {
		t.Fatalf("page 3: %d rows from %v, %+v", len(page), page[:1], pg)
	}
	r = httptest.NewRequest("GET", "/portal/customers?page=99", nil)
	if page, pg = paginate(r, items); pg.Page != 3 || page[0] != 100 {
		t.Fatalf("past the end: %+v", pg)
	}
	if page, pg = paginate(r, []int{}); pg.Pages != 1 || len(page) != 0 {
		t.Fatalf("empty: %+v", pg)
	}
}
