package billing

import (
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/money"
)

// TestScheduleSplitsAtTiers: included quantity is free, tiers start after it,
// and a quantity crossing a boundary is split exactly.
func TestScheduleSplitsAtTiers(t *testing.T) {
	s := newSchedule(1, Price{Unit: "1 Hour", IncludedQuantity: money.MustQuantity("10"),
		Tiers: []Tier{{From: money.Zero, Price: money.MustQuantity("0.5")}, {From: money.MustQuantity("100"), Price: money.MustQuantity("0.25")}}})
	got := s.split(money.MustQuantity("5"), money.MustQuantity("200"))
	want := []struct {
		step int
		qty  string
	}{{0, "5"}, {1, "100"}, {2, "95"}}
	if len(got) != len(want) {
		t.Fatalf("pieces %v", got)
	}
	for i, w := range want {
		if got[i].step != w.step || !got[i].qty.Equal(money.MustQuantity(w.qty)) {
			t.Errorf("piece %d: %+v, want %+v", i, got[i], w)
		}
	}
}

// TestParsePriceListSpellings accepts the rate card's and Partner Center's
// column spellings, one row per tier, and skips other regions.
func TestParsePriceListSpellings(t *testing.T) {
	csv := "\ufeffResourceGuid,Name,Category,Sub Category,Region,Unit Of Measure,Tier Minimum Units,Unit Price,Pricing Currency,Effective Start Date\n" +
		"9c23489b-c01c-5893-b898-412bd252b0db,1 Core,Azure Stack Hub,Base VM,Azure Stack Hub,1 Hour,0,0.008,usd,2020-01-01\n" +
		"9c23489b-c01c-5893-b898-412bd252b0db,1 Core,Azure Stack Hub,Base VM,Azure Stack Hub,1 Hour,1000,0.007,USD,2020-02-01\n" +
		"9c23489b-c01c-5893-b898-412bd252b0db,1 Core,Virtual Machines,D2,EU West,1 Hour,0,0.1,USD,2020-01-01\n"
	p, err := parsePriceList([]byte(csv), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if p.currency != "USD" || len(p.prices) != 1 || len(p.prices[0].Tiers) != 2 || p.report.RowsSkip != 1 || !p.effective.Equal(time.Date(2020, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("parsed %+v", p)
	}
	if d := amountOf(money.MustQuantity("7300").Mul(money.MustQuantity("0.006")), hoursPerMonth, 2); !d.Equal(money.MustQuantity("0.06")) {
		t.Fatalf("7300 GB-hours at 0.006/GB-month = %s", d)
	}
}
