package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/stackbill/stackbill/internal/usage"
)

// Reporter is the resource providers' client of a stack, over its API as a
// real resource provider's is: it onboards a world's tenants and posts their
// usage to the intake in NDJSON batches. `stackbill simulate` and the intake
// benchmark both report through it.
type Reporter struct {
	Base  string // the stack's base URL
	Token string // a usage writer's or stack operator's token
	HTTP  *http.Client
}

// ServerTime reads the stack's clock, which may be simulated.
func (r *Reporter) ServerTime(ctx context.Context) (time.Time, error) {
	var h struct {
		Time time.Time `json:"time"`
	}
	err := r.do(ctx, "GET", "/healthz", nil, &h)
	return h.Time, err
}

// Onboard creates the world's directory tenants and user subscriptions.
func (r *Reporter) Onboard(ctx context.Context, w World) error {
	var info struct {
		ProviderSubscriptionID string `json:"providerSubscriptionId"`
	}
	if err := r.do(ctx, "GET", "/v1/stack/info", nil, &info); err != nil {
		return err
	}
	p := info.ProviderSubscriptionID
	for _, t := range w.Tenants {
		if err := r.do(ctx, "PUT", "/subscriptions/"+p+"/resourceGroups/system.local/providers/Microsoft.Subscriptions.Admin/directoryTenants/"+t.Name+".onmicrosoft.com?api-version=2015-11-01",
			map[string]any{"location": "local", "properties": map[string]string{"tenantId": t.DirectoryID}}, nil); err != nil {
			return fmt.Errorf("onboard %s: %w", t.Name, err)
		}
		if err := r.do(ctx, "PUT", "/subscriptions/"+p+"/providers/Microsoft.Subscriptions.Admin/subscriptions/"+t.SubscriptionID+"?api-version=2015-11-01",
			map[string]any{"properties": map[string]string{"displayName": t.Name, "owner": "admin@" + t.Name + ".onmicrosoft.com", "tenantId": t.DirectoryID,
				"offerId": "/delegatedProviders/default/offers/standard", "state": "Enabled"}}, nil); err != nil {
			return fmt.Errorf("subscription of %s: %w", t.Name, err)
		}
	}
	return nil
}

// Post sends one batch and fails on any rejection: the simulator's events
// are valid by construction, so a rejection is a bug.
func (r *Reporter) Post(ctx context.Context, events []usage.Event) (usage.Result, error) {
	body, err := NDJSON(events)
	if err != nil {
		return usage.Result{}, err
	}
	return r.PostNDJSON(ctx, body)
}

// NDJSON encodes events one per line, as the intake takes them.
func NDJSON(events []usage.Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range events {
		if err := enc.Encode(&events[i]); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// PostNDJSON posts one encoded batch to the intake.
func (r *Reporter) PostNDJSON(ctx context.Context, body []byte) (usage.Result, error) {
	var res usage.Result
	if err := r.send(ctx, "POST", "/v1/usage/events", "application/x-ndjson", bytes.NewReader(body), &res); err != nil {
		return res, err
	}
	if len(res.Rejected) > 0 {
		return res, fmt.Errorf("intake rejected %d events, first: %+v", len(res.Rejected), res.Rejected[0])
	}
	return res, nil
}

func (r *Reporter) do(ctx context.Context, method, path string, body, out any) error {
	if body == nil {
		return r.send(ctx, method, path, "", nil, out)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return r.send(ctx, method, path, "application/json", bytes.NewReader(b), out)
}

// send makes one request and decodes a 2xx answer into out.
func (r *Reporter) send(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, r.Base+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+r.Token)
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s answered %d: %s", method, path, resp.StatusCode, answer)
	}
	if out == nil || len(bytes.TrimSpace(answer)) == 0 {
		return nil
	}
	return json.Unmarshal(answer, out)
}
