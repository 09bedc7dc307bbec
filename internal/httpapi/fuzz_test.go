package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/directory"
)

// isClientError holds for errors that answer 4xx in the ARM envelope.
func isClientError(err error) bool {
	var ae *arm.Error
	if !errors.As(err, &ae) {
		return false
	}
	st := Status(ae.Kind)
	return st >= 400 && st < 500
}

// FuzzARMBodies feeds arbitrary bytes to the strict decoder of every ARM and
// directory request body: it never panics, and a body it refuses is a 4xx in
// the ARM envelope, never a 500.
func FuzzARMBodies(f *testing.F) {
	f.Add([]byte(`{"location":"global","properties":{"registrationToken":"eyJ9"}}`))
	f.Add([]byte(`{"properties":{"tenantId":"aaaaaaaa-0000-4000-8000-00000000000a"},"etag":"x"}`))
	f.Add([]byte(`{"id":"contoso","name":"Contoso","type":"DirectCSP"}`))
	f.Add([]byte(`{"properties":{"tenantId":1e999}}`))
	f.Add([]byte("\x00{}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&registrationBody{}, &customerSubscriptionBody{}, &directory.Partner{}, &directory.Customer{}, &directory.Subscription{}} {
			if err := decodeStrict(body, v); err != nil && !isClientError(err) {
				t.Fatalf("decoding %q into %T: %v is not a 4xx", body, v, err)
			}
		}
	})
}

// FuzzUsageParams feeds arbitrary query strings to the usage API's parameter
// parser: times, granularity, showDetails. It never panics, refusals are 400,
// and accepted windows are hour-aligned, ordered and not in the future.
func FuzzUsageParams(f *testing.F) {
	f.Add("reportedStartTime=2026-03-09T00:00:00Z&reportedEndTime=2026-03-10T00:00:00Z&aggregationGranularity=Daily")
	f.Add("reportedStartTime=2026-03-09T18%3a00%3a00%2b00%3a00Z&reportedEndTime=2026-03-09T19:00:00+00:00&aggregationGranularity=hourly&showDetails=false")
	f.Add("reportedStartTime=2026-03-09T00:30:00Z&reportedEndTime=9999-12-31T00:00:00Z")
	f.Add("aggregationGranularity=Weekly&reportedStartTime=&reportedEndTime=%zz")
	now := time.Date(2026, 3, 11, 12, 0, 0, 0, time.UTC)
	s := New(Config{}, Deps{Registry: prometheus.NewRegistry(), Clock: clock.Manual(now)})
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := httptest.NewRequest(http.MethodGet, "/subscriptions/s/providers/Microsoft.Commerce/UsageAggregates", nil)
		r.URL.RawQuery = rawQuery + "&api-version=2015-06-01-preview"
		q, err := s.usageParams(r)
		if err != nil {
			if !isClientError(err) {
				t.Fatalf("%q: %v is not a 4xx", rawQuery, err)
			}
			return
		}
		if !clock.IsHourStart(q.Start) || !clock.IsHourStart(q.End) || !q.End.After(q.Start) || q.End.After(now) {
			t.Fatalf("%q accepted a bad window %s – %s", rawQuery, q.Start, q.End)
		}
	})
}
