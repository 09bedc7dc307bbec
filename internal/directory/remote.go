package directory

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RemoteResolver resolves subscriptions through another service's HTTP
// endpoint, for operators whose directory lives outside stackbill. The
// contract is the one stackbill serves itself:
//
//	GET {base}/v1/directory/resolve/subscriptions/{id}
//	200 ResolvedSubscription | 404 unknown subscription
//
// Any other outcome (unreachable, timeout, 5xx, unparsable body) is an error
// the registration rules report as MetadataResolverBadGatewayError.
type RemoteResolver struct {
	base   string
	token  string
	client *http.Client
}

// NewRemoteResolver builds a resolver for base, authenticating with token.
func NewRemoteResolver(base, token string, timeout time.Duration) (*RemoteResolver, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("directory URL %q must be an absolute http(s) URL", base)
	}
	return &RemoteResolver{base: strings.TrimRight(base, "/"), token: token, client: &http.Client{Timeout: timeout}}, nil
}

// ResolveEach answers Resolve for each of ids, one request each.
func (r *RemoteResolver) ResolveEach(ctx context.Context, ids []string) ([]ResolvedSubscription, []error) {
	out := make([]ResolvedSubscription, len(ids))
	errs := make([]error, len(ids))
	for i, id := range ids {
		out[i], errs[i] = r.Resolve(ctx, id)
	}
	return out, errs
}

// Resolve looks a subscription up remotely.
func (r *RemoteResolver) Resolve(ctx context.Context, id string) (ResolvedSubscription, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/v1/directory/resolve/subscriptions/"+url.PathEscape(id), nil)
	if err != nil {
		return ResolvedSubscription{}, err
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return ResolvedSubscription{}, fmt.Errorf("remote directory: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return ResolvedSubscription{}, fmt.Errorf("remote directory: read: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var out ResolvedSubscription
		if err := json.Unmarshal(body, &out); err != nil || out.ID == "" || out.Offer == "" {
			return ResolvedSubscription{}, fmt.Errorf("remote directory: unparsable answer for %s", id)
		}
		return out, nil
	case http.StatusNotFound:
		return ResolvedSubscription{}, ErrNotFound
	default:
		return ResolvedSubscription{}, fmt.Errorf("remote directory: status %d for %s", resp.StatusCode, id)
	}
}
