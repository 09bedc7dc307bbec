package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Receiver is the demo's webhook receiver, written as a partner would write
// one: it checks each delivery's signature with the Standard Webhooks
// library, drops a webhook-id it has already taken (a retry after a lost
// answer), and prints one line per delivery.
type Receiver struct {
	mu   sync.Mutex
	wh   *standardwebhooks.Webhook
	seen map[string]bool
	out  io.Writer
}

// NewReceiver prints to out; SetSecret arms it.
func NewReceiver(out io.Writer) *Receiver { return &Receiver{out: out, seen: map[string]bool{}} }

// SetSecret is the endpoint's signing secret.
func (r *Receiver) SetSecret(secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.wh = wh
	r.mu.Unlock()
	return nil
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wh == nil {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	id := req.Header.Get("webhook-id")
	if err := r.wh.Verify(body, req.Header); err != nil {
		fmt.Fprintf(r.out, "webhook receiver: REFUSED %s: %v\n", id, err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var msg struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(body, &msg)
	if r.seen[id] {
		fmt.Fprintf(r.out, "webhook receiver: %s again (a retry), signature ok, already taken\n", id)
	} else {
		r.seen[id] = true
		fmt.Fprintf(r.out, "webhook receiver: %s %s, signature ok: %.200s\n", msg.Type, id, msg.Data)
	}
	w.WriteHeader(http.StatusNoContent)
}
