package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
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
}

// Step claims the deliveries that are due and sends them, and reports how
// many it attempted.
func (s *Service) Step(ctx context.Context) (int, error) {
	batch, err := s.claim(ctx)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	sem := make(chan struct{}, s.sender.opts.Concurrency)
	var wg sync.WaitGroup
	errs := make([]error, len(batch))
	for i := range batch {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = s.attempt(ctx, batch[i])
		}()
	}
	wg.Wait()
	return len(batch), errors.Join(errs...)
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
		rows, err := tx.QueryContext(ctx, `SELECT d.id, d.attempts, d.round, v.seq, v.id, v.type, v.partner_id, v.reseller_id, v.subject, v.at_us, v.payload, e.url, e.secret
			FROM notify_deliveries d JOIN notify_events v ON v.id = d.event_id JOIN notify_endpoints e ON e.id = d.endpoint_id
			WHERE d.state = 'pending' AND d.next_attempt_us <= ? AND d.lease_until_us <= ? AND e.enabled = 1
			ORDER BY d.next_attempt_us, d.id LIMIT ?`+lock, now, now, s.sender.opts.Batch)
		if err != nil {
			return err
		}
		for rows.Next() {
			var d due
			var at int64
			var payload string
			if err := rows.Scan(&d.id, &d.attempts, &d.round, &d.event.Seq, &d.event.ID, &d.event.Type, &d.event.PartnerID, &d.event.ResellerID, &d.event.Subject, &at, &payload, &d.url, &d.secret); err != nil {
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
		for _, d := range out {
			if _, err := tx.ExecContext(ctx, `UPDATE notify_deliveries SET lease_until_us = ? WHERE id = ?`, lease, d.id); err != nil {
				return err
			}
		}
		return nil
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

// attempt sends one delivery and records the outcome, unless the lease
// was lost meanwhile (another sender took it after it ran out: its
// outcome is the one kept).
func (s *Service) attempt(ctx context.Context, d due) error {
	o := s.sender.opts
	payload := body(d.event)
	ts := o.Wall().Unix()
	status, errText, response := 0, "", ""
	start := time.Now()
	sig, err := Sign(d.secret, d.event.ID, ts, payload)
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
				status = resp.StatusCode
				b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
				resp.Body.Close()
				response = strings.ToValidUTF8(string(b), "\uFFFD")
				if rerr != nil && status/100 != 2 {
					err = rerr
				}
			}
		}
	}
	// A crash here (the receiver has it, the outbox does not know) is the
	// case the lease and webhook-id are for.
	s.db.FailPoint("webhook-sent")
	if ctx.Err() != nil {
		// Shutting down: the lease runs out and the delivery is sent again.
		return nil
	}
	if err != nil {
		errText = err.Error()
		if len(errText) > 500 {
			errText = errText[:500]
		}
	}
	took := time.Since(start)
	ok := err == nil && status/100 == 2
	now := s.clock.Now()
	state, next := "succeeded", now
	if !ok {
		state = "pending"
		if int(d.round) >= len(o.Schedule) {
			state = "failed"
		} else {
			wait := o.Schedule[d.round]
			next = now.Add(wait + time.Duration((rand.Float64()*0.4-0.2)*float64(wait)))
		}
	}
	var recorded bool
	err = s.db.Write(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE notify_deliveries SET state = ?, attempts = attempts + 1, round = round + 1, next_attempt_us = ?, lease_until_us = 0, last_status = ?, last_error = ?, updated_at_us = ?
			WHERE id = ? AND lease_until_us = ?`, state, clock.Micros(next), status, errText, clock.Micros(now), d.id, d.lease)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		recorded = true
		_, err = tx.ExecContext(ctx, `INSERT INTO notify_attempts (delivery_id, attempt, at_us, duration_us, status, error, response) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			d.id, d.attempts+1, clock.Micros(now), took.Microseconds(), status, errText, response)
		return err
	})
	if err != nil || !recorded {
		return err
	}
	switch state {
	case "succeeded":
		s.sender.succeeded.Add(1)
	case "failed":
		s.sender.failedAttempts.Add(1)
		s.sender.givenUp.Add(1)
		o.Logger.Warn("webhook delivery given up", "delivery", d.id, "event", d.event.ID, "url", d.url, "attempts", d.attempts+1, "status", status, "error", errText)
	default:
		s.sender.failedAttempts.Add(1)
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
