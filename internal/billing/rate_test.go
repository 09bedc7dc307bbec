package billing

import (
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/money"
)

// TestTierRule is the tier rule, case by case: the first IncludedQuantity
// units of a period are free, and every unit after them is at the rate of
// the tier whose threshold (counted over the whole period, as the Azure
// RateCard's MeterRates are) it has passed. cum is what the period consumed
// before, qty what is rated now; the pieces are (tier, quantity).
func TestTierRule(t *testing.T) {
	t.Parallel()
	q := money.MustQuantity
	tiers := func(pairs ...string) []Tier {
		var out []Tier
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, Tier{From: q(pairs[i]), Price: q(pairs[i+1])})
		}
		return out
	}
	type piece struct{ tier, qty string }
	for _, c := range []struct {
		name          string
		unit          string
		included      string
		tiers         []Tier
		cum, qty      string
		want          []piece
		wantSteps     int
		firstPaidFrom string // in billing units
	}{
		{"one rate", "1 Hour", "0", tiers("0", "0.008"), "0", "12.5", []piece{{"0", "12.5"}}, 1, "0"},
		{"crossing a tier", "1 Hour", "0", tiers("0", "0.008", "500", "0.0065"), "400", "200", []piece{{"0", "100"}, {"500", "100"}}, 2, "0"},
		{"included inside the first tier", "1 Hour", "100", tiers("0", "0.5", "500", "0.25"), "0", "600", []piece{{"included", "100"}, {"0", "400"}, {"500", "100"}}, 3, "100"},
		{"included covers a whole tier", "1 Hour", "600", tiers("0", "0.5", "500", "0.25", "1000", "0.1"), "0", "1200", []piece{{"included", "600"}, {"500", "400"}, {"1000", "200"}}, 3, "600"},
		{"included past every threshold", "1 Hour", "2000", tiers("0", "0.5", "500", "0.25"), "1990", "20", []piece{{"included", "10"}, {"500", "10"}}, 2, "2000"},
		{"continuing a period (late usage)", "1 Hour", "10", tiers("0", "0.5", "100", "0.25"), "95", "10", []piece{{"0", "5"}, {"100", "5"}}, 3, "10"},
		{"the 730-hour month: thresholds in GB-months, usage in GB-hours", "1 GB/Month", "1", tiers("0", "0.018", "10", "0.01"), "0", "8030",
			[]piece{{"included", "730"}, {"0", "6570"}, {"10", "730"}}, 3, "730"},
	} {
		s := newSchedule(1, Price{Unit: c.unit, IncludedQuantity: q(c.included), Tiers: c.tiers})
		if len(s.steps) != c.wantSteps {
			t.Errorf("%s: %d steps %+v, want %d", c.name, len(s.steps), s.steps, c.wantSteps)
			continue
		}
		paid := 0
		if s.steps[0].tier == "included" {
			paid = 1
		}
		if paid < len(s.steps) && !s.steps[paid].from.Equal(q(c.firstPaidFrom)) {
			t.Errorf("%s: the first paid step starts at %s, want %s", c.name, s.steps[paid].from, c.firstPaidFrom)
		}
		got := s.split(q(c.cum), q(c.qty))
		if len(got) != len(c.want) {
			t.Errorf("%s: pieces %+v, want %+v", c.name, got, c.want)
			continue
		}
		sum := money.Zero
		for i, w := range c.want {
			sum = sum.Add(got[i].qty)
			if s.steps[got[i].step].tier != w.tier || !got[i].qty.Equal(q(w.qty)) {
				t.Errorf("%s: piece %d is %s × %s, want %s × %s", c.name, i, s.steps[got[i].step].tier, got[i].qty, w.tier, w.qty)
			}
		}
		if !sum.Equal(q(c.qty)) {
			t.Errorf("%s: pieces sum to %s, not %s", c.name, sum, c.qty)
		}
	}
}

// TestLineRounding: a line's amount is its exact value, divided once by the
// unit divisor, rounded once to the currency's minor unit, half away from
// zero; JPY has none.
func TestLineRounding(t *testing.T) {
	t.Parallel()
	q := money.MustQuantity
	for _, c := range []struct {
		numer string
		div   int64
		minor int32
		want  string
	}{
		{"0.125", 1, 2, "0.13"},
		{"0.124999", 1, 2, "0.12"},
		{"-0.125", 1, 2, "-0.13"},
		{"43.8", 730, 2, "0.06"},  // 7300 GB-hours × 0.006 per GB-month
		{"182.5", 730, 2, "0.25"}, // exactly half a cent up
		{"1234.5", 1, 0, "1235"},  // JPY
		{"1234.49999", 1, 0, "1234"},
	} {
		if got := amountOf(q(c.numer), c.div, c.minor); !got.Equal(q(c.want)) {
			t.Errorf("amountOf(%s, %d, %d) = %s, want %s", c.numer, c.div, c.minor, got, c.want)
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

// Amounts show their currency's minor digits in every view: the portal once
// showed yen with two decimals.
func TestFormatAmount(t *testing.T) {
	for _, c := range []struct{ q, cur, want string }{
		{"50671", "JPY", "50671"}, {"2.9", "USD", "2.90"}, {"-0.5", "EUR", "-0.50"}, {"1.2345", "KWD", "1.235"}, {"7", "XXX", "7.00"},
	} {
		if got := FormatAmount(money.MustQuantity(c.q), c.cur); got != c.want {
			t.Errorf("FormatAmount(%s, %s) = %s, want %s", c.q, c.cur, got, c.want)
		}
	}
}
