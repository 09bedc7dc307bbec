package billing

import (
	"errors"
	"testing"
	"time"

	"github.com/stackbill/stackbill/internal/arm"
)

// FuzzParsePriceList feeds arbitrary CSV to the price-list parser: it never
// panics, a refusal is a 4xx, and an accepted list holds only Azure Stack
// rows with tiers that start at zero, ascend and are never negative.
func FuzzParsePriceList(f *testing.F) {
	f.Add(SamplePriceList())
	f.Add([]byte("MeterId,MeterName,MeterRegion,Unit,MeterRates,Currency,EffectiveDate\nfab6eb84-500b-4a09-a8ca-7358f8baea5,VM,Azure Stack,1 Hour,\"0:0.008;500:0.0065\",USD,2026-01-01\n"))
	f.Add([]byte("Id,Name,Region,Unit,Rates,Currency\nx,y,Azure Stack Hub,1 GB,{\"0\":1e309},EUR\n"))
	f.Add([]byte("\"unterminated"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parsePriceList(data, time.Time{})
		if err != nil {
			var ae *arm.Error
			if !errors.As(err, &ae) || ae.Kind != arm.Invalid {
				t.Fatalf("refusal %v is not Invalid (400)", err)
			}
			return
		}
		for _, pr := range p.prices {
			if !stackRegion(pr.Region) {
				t.Fatalf("kept a row of region %q", pr.Region)
			}
			for i, tier := range pr.Tiers {
				if tier.Price.Sign() < 0 || tier.From.Sign() < 0 || (i == 0 && tier.From.Sign() != 0) || (i > 0 && tier.From.Cmp(pr.Tiers[i-1].From) <= 0) {
					t.Fatalf("meter %s has bad tiers %+v", pr.MeterID, pr.Tiers)
				}
			}
		}
	})
}
