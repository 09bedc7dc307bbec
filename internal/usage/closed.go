package usage

import (
	"context"

	"github.com/stackbill/stackbill/internal/money"
)

// Closed is one hourly record as the bridge forwards it. Times are Unix
// microseconds, as stored: the forwarder turns a batch of them into a wire
// batch and a watermark, and converting each here would cost it per record.
type Closed struct {
	// Seq orders records of the same reported hour; (ReportedUs, Seq) is the
	// record's place in forwarding order.
	Seq                  int64
	Subscription         string
	Meter, Instance      string
	HourUs, ReportedUs   int64
	Quantity             money.Quantity
	ResourceURI          string
	Location             string
	Tags, AdditionalInfo string
}

// ClosedAfter returns up to limit hourly records reported before horizonUs,
// after the place (reportedUs, seq) in forwarding order: the order in which
// the bridge seals them, so that a watermark says what was sealed.
func (s *Service) ClosedAfter(ctx context.Context, horizonUs, reportedUs, seq int64, limit int) ([]Closed, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, subscription_id, meter_key, instance, usage_hour_us, reported_hour_us, quantity, resource_uri, location, tags, additional_info
		FROM usage_records WHERE reported_hour_us < ? AND (reported_hour_us, id) > (?, ?) ORDER BY reported_hour_us, id LIMIT ?`,
		horizonUs, reportedUs, seq, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Closed, 0, min(limit, 4096))
	for rows.Next() {
		var r Closed
		if err := rows.Scan(&r.Seq, &r.Subscription, &r.Meter, &r.Instance, &r.HourUs, &r.ReportedUs, &r.Quantity, &r.ResourceURI, &r.Location, &r.Tags, &r.AdditionalInfo); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ClosedBacklog counts the hourly records reported before horizonUs after
// the place (reportedUs, seq), and gives the oldest one's reported hour (nil
// when there are none): what the bridge has yet to seal.
func (s *Service) ClosedBacklog(ctx context.Context, horizonUs, reportedUs, seq int64) (n int64, oldestUs *int64, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(reported_hour_us) FROM usage_records WHERE reported_hour_us < ? AND (reported_hour_us, id) > (?, ?)`,
		horizonUs, reportedUs, seq).Scan(&n, &oldestUs)
	return n, oldestUs, err
}

// Totals counts the hourly records the stack holds and the events summed
// into them: how a benchmark or an operator checks that every accepted event
// was aggregated exactly once.
func (s *Service) Totals(ctx context.Context) (records, events int64, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(events), 0) FROM usage_records`).Scan(&records, &events)
	return records, events, err
}
