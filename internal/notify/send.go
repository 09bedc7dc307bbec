package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/store"
)

// SenderOptions tune the sender; the zero value is production's.
type SenderOptions struct {
	// Lease is how long a claimed delivery is the claimer's: past it, a
	// sender that died mid-send has its deliveries sent by another.
	Lease time.Duration
	// Timeout bounds one attempt, connection to last byte.
	Timeout time.Duration
	// Schedule is the wait after each failed attempt; a delivery that
	// fails once more than it has entries is given up. Each wait is
	// spread by ±20 % so a receiver that comes back is not hit by every
	// sender at once.
	Schedule []time.Duration
	// Batch is how many due deliveries one step claims; at most
	// Concurrency of them are in flight.
	Batch, Concurrency int
	// Wall is the clock signatures carry: receivers compare
	// webhook-timestamp with their own time, so it is the host's even
	// when commerce runs on a simulated clock.
	Wall   func() time.Time
	Logger *slog.Logger
}

// DefaultSchedule is Standard Webhooks' suggested retry schedule after the
// first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about a day).
func DefaultSchedule() []time.Duration {
	return []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
}

type sender struct {
	s      *Service
	opts   SenderOptions
	client *http.Client
	// What this process sent, for /metrics.
	succeeded, failedAttempts, givenUp atomic.Int64
}

func newSender(s *Service, o SenderOptions) sender {
	if o.Lease <= 0 {
		o.Lease = 2 * time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Schedule == nil {
		o.Schedule = DefaultSchedule()
	}
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Wall == nil {
		o.Wall = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return sender{s: s, opts: o, client: guardedClient(s.policy, o.Timeout)}
}

// guardedClient sends only to addresses the policy admits, checked on the
// address actually dialled (so a name that resolves to a private address,
// or changes to one after the endpoint was checked, is refused), with no
// proxy (the check would see the proxy's address) and no redirects (a
// redirect is the receiver's answer, not a new destination).
func guardedClient(pol Policy, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return err
		}
		if publicAddr(ip) || (pol.AllowLoopback && ip.Unmap().IsLoopback()) {
			return nil
		}
		return fmt.Errorf("webhook address %s is not public", ip)
	}}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         d.DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Sign is the webhook-signature header value for a message, as Standard
// Webhooks defines it: "v1," and the base64 HMAC-SHA256, keyed with the
// secret's bytes, of "id.timestamp.body".
func Sign(secret, id string, timestamp int64, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return "", fmt.Errorf("webhook secret: %w", err)
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, timestamp)
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// due is a claimed delivery and what sending it needs.
type due struct {
	id, attempts, round, lease int64
	event                      Event
	url, secret                string
	// previous is the secret before a rotation, still signing beside the
	// new one for a while; "" when none.
	previous string
}

// Step claims the deliveries that are due, sends them, and records their
// outcomes in one transaction; it reports how many it attempted.
func (s *Service) Step(ctx context.Context) (int, error) {
	batch, err := s.claim(ctx)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	sem := make(chan struct{}, s.sender.opts.Concurrency)
	var wg sync.WaitGroup
	outcomes := make([]*outcome, len(batch))
	for i := range batch {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			outcomes[i] = s.send(ctx, batch[i])
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		// Shutting down: the leases run out and the deliveries are sent
		// again, under the same webhook-ids.
		return len(batch), nil
	}
	return len(batch), s.record(ctx, outcomes)
}

// claim leases up to Batch due deliveries to this sender. On PostgreSQL
// two instances skip each other's locked rows; on SQLite the single writer
// serialises them.
func (s *Service) claim(ctx context.Context) ([]due, error) {
	now := clock.Micros(s.clock.Now())
	lease := now + s.sender.opts.Lease.Microseconds()
	lock := ""
	if s.db.Dialect == store.Postgres {
		lock = " FOR UPDATE OF d SKIP LOCKED"
	}
	var out []due
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `SELECT d.id, d.attempts, d.round, v.seq, v.id, v.type, v.partner_id, v.reseller_id, v.subject, v.at_us, v.payload, e.url, e.secret,
			CASE WHEN e.previous_until_us > ? THEN e.previous_secret ELSE '' END
			FROM notify_deliveries d JOIN notify_events v ON v.id = d.event_id JOIN notify_endpoints e ON e.id = d.endpoint_id
			WHERE d.state = 'pending' AND d.next_attempt_us <= ? AND d.lease_until_us <= ? AND e.enabled = 1
			ORDER BY d.next_attempt_us, d.id LIMIT ?`+lock, now, now, now, s.sender.opts.Batch)
		if err != nil {
			return err
		}
		for rows.Next() {
			var d due
			var at int64
			var payload string
			if err := rows.Scan(&d.id, &d.attempts, &d.round, &d.event.Seq, &d.event.ID, &d.event.Type, &d.event.PartnerID, &d.event.ResellerID, &d.event.Subject, &at, &payload, &d.url, &d.secret, &d.previous); err != nil {
				rows.Close()
				return err
			}
			d.event.At, d.event.Data, d.lease = clock.FromMicros(at), json.RawMessage(payload), lease
			out = append(out, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		args := []any{lease}
		for _, d := range out {
			args = append(args, d.id)
		}
		_, err = tx.ExecContext(ctx, `UPDATE notify_deliveries SET lease_until_us = ? WHERE id IN (`+store.Placeholders(len(out))+`)`, args...)
		return err
	})
	return out, err
}

// body is what a delivery posts: Standard Webhooks' suggested envelope.
func body(e Event) []byte {
	b, _ := json.Marshal(struct {
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}{e.Type, e.At.UTC().Format(time.RFC3339Nano), e.Data})
	return b
}

// maxResponse is how much of a receiver's answer the log keeps.
const maxResponse = 1024

// outcome is what one attempt of a delivery came to.
type outcome struct {
	d               due
	state           string
	next, at        time.Time
	took            time.Duration
	status          int
	errText, answer string
}

// send makes one attempt of a delivery.
func (s *Service) send(ctx context.Context, d due) *outcome {
	o := s.sender.opts
	payload := body(d.event)
	ts := o.Wall().Unix()
	out := &outcome{d: d}
	start := time.Now()
	sig, err := Sign(d.secret, d.event.ID, ts, payload)
	if err == nil && d.previous != "" {
		// Both, space-separated: a receiver that has either secret accepts.
		var old string
		if old, err = Sign(d.previous, d.event.ID, ts, payload); err == nil {
			sig += " " + old
		}
	}
	if err == nil {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(payload))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", "stackbill-webhooks/1")
			req.Header.Set("webhook-id", d.event.ID)
			req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
			req.Header.Set("webhook-signature", sig)
			var resp *http.Response
			resp, err = s.sender.client.Do(req)
			if err == nil {
				out.status = resp.StatusCode
				b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
				resp.Body.Close()
				out.answer = strings.ToValidUTF8(string(b), "\uFFFD")
				if rerr != nil && out.status/100 != 2 {
					err = rerr
				}
			}
		}
	}
	// A crash here (the receiver has it, the outbox does not know) is the
	// case the lease and webhook-id are for.
	s.db.FailPoint("webhook-sent")
	if err != nil {
		out.errText = err.Error()
		if len(out.errText) > 500 {
			out.errText = out.errText[:500]
		}
	}
	out.took, out.at = time.Since(start), s.clock.Now()
	out.state, out.next = "succeeded", out.at
	if err != nil || out.status/100 != 2 {
		out.state = "pending"
		if int(d.round) >= len(o.Schedule) {
			out.state = "failed"
		} else {
			wait := o.Schedule[d.round]
			out.next = out.at.Add(wait + time.Duration((rand.Float64()*0.4-0.2)*float64(wait)))
		}
	}
	return out
}

// record writes a batch's outcomes in one transaction, each with its line
// in the log, for the deliveries whose lease still holds (a lease that ran
// out gave the delivery to another sender, whose outcome is the one kept).
// A batch was claimed under one lease, so one locking read finds them.
func (s *Service) record(ctx context.Context, outcomes []*outcome) error {
	var kept []*outcome
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		kept = kept[:0]
		args := []any{outcomes[0].d.lease}
		for _, o := range outcomes {
			args = append(args, o.d.id)
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM notify_deliveries WHERE lease_until_us = ? AND id IN (`+store.Placeholders(len(outcomes))+`)`+s.db.ForUpdate(), args...)
		held, err := store.Collect(rows, err, func(r store.Scanner) (id int64, err error) { return id, r.Scan(&id) })
		if err != nil {
			return err
		}
		ours := map[int64]bool{}
		for _, id := range held {
			ours[id] = true
		}
		for _, o := range outcomes {
			if !ours[o.d.id] {
				continue
			}
			kept = append(kept, o)
			if err := tx.Queue(ctx, `UPDATE notify_deliveries SET state = ?, attempts = attempts + 1, round = round + 1, next_attempt_us = ?, lease_until_us = 0, last_status = ?, last_error = ?, updated_at_us = ? WHERE id = ?`,
				o.state, clock.Micros(o.next), o.status, o.errText, clock.Micros(o.at), o.d.id); err != nil {
				return err
			}
			if err := tx.Queue(ctx, `INSERT INTO notify_attempts (delivery_id, attempt, at_us, duration_us, status, error, response) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				o.d.id, o.d.attempts+1, clock.Micros(o.at), o.took.Microseconds(), o.status, o.errText, o.answer); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, o := range kept {
		switch o.state {
		case "succeeded":
			s.sender.succeeded.Add(1)
		case "failed":
			s.sender.failedAttempts.Add(1)
			s.sender.givenUp.Add(1)
			s.sender.opts.Logger.Warn("webhook delivery given up", "delivery", o.d.id, "event", o.d.event.ID, "url", o.d.url, "attempts", o.d.attempts+1, "status", o.status, "error", o.errText)
		default:
			s.sender.failedAttempts.Add(1)
		}
	}
	return nil
}

// Run sends due deliveries until ctx ends, looking for more every second
// when there were none.
func (s *Service) Run(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := s.Step(ctx)
		if err != nil && ctx.Err() == nil {
			s.sender.opts.Logger.Error("webhook sender step failed", "err", err)
		}
		if n == 0 || err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// Counters reports what this process's sender did: deliveries that
// succeeded, attempts that failed, deliveries given up.
func (s *Service) Counters() (succeeded, failedAttempts, givenUp int64) {
	return s.sender.succeeded.Load(), s.sender.failedAttempts.Load(), s.sender.givenUp.Load()
}

// Pending counts deliveries not yet succeeded or given up.
func (s *Service) Pending(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM notify_deliveries WHERE state = 'pending'`).Scan(&n)
	return n, err
}
