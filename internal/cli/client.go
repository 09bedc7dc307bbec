package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stackbill/stackbill/internal/clock"
	"github.com/stackbill/stackbill/internal/registration"
)

// client talks to a running stackbill, so that CLI commands pass through the
// same authentication, authorization and rules as every other caller.
type client struct {
	base  string
	token string
	http  *http.Client
}

func clientFlags(fs *flag.FlagSet, env Env) func() *client {
	url := fs.String("url", firstNonEmpty(env.Getenv("STACKBILL_URL"), "http://127.0.0.1:8080"), "stackbill URL (env STACKBILL_URL)")
	token := fs.String("token", firstNonEmpty(env.Getenv("STACKBILL_TOKEN"), env.Getenv("STACKBILL_OPERATOR_TOKEN")), "bearer token (env STACKBILL_TOKEN or STACKBILL_OPERATOR_TOKEN)")
	return func() *client {
		return &client{base: strings.TrimRight(*url, "/"), token: *token, http: &http.Client{Timeout: 60 * time.Second}}
	}
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// apiError is an error answered by the server, shown with the seed's
// guidance for its code.
type apiError struct {
	Status  int
	Code    string
	Message string
	Target  string
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (HTTP %d)\n%s", e.Code, e.Status, e.Message)
	if e.Target != "" {
		fmt.Fprintf(&b, "\nfield: %s", e.Target)
	}
	if g := registration.Guidance(e.Code); g != "" {
		fmt.Fprintf(&b, "\n\nWhat this means: %s", g)
	}
	return b.String()
}

// do sends a request and decodes a JSON answer into out (if non-nil). It
// returns the status code for callers that distinguish 200/201/204.
func (c *client) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach stackbill at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 400 {
		var env struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(raw, &env) == nil && env.Error != nil && env.Error.Code != "" {
			env.Error.Status = resp.StatusCode
			return resp.StatusCode, env.Error
		}
		return resp.StatusCode, &apiError{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(raw))}
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("unexpected answer from %s: %w", path, err)
		}
	}
	return resp.StatusCode, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// period is the server's current billing period, from the time /healthz
// reports (the server's clock, which a simulated clock may run ahead of
// this machine's).
func (c *client) period(ctx context.Context) (string, error) {
	var h struct {
		Time time.Time `json:"time"`
	}
	if _, err := c.do(ctx, "GET", "/healthz", nil, &h); err != nil {
		return "", err
	}
	if h.Time.IsZero() {
		return "", fmt.Errorf("the server at %s did not say what time it is; give --period", c.base)
	}
	return clock.Period(h.Time), nil
}
