package httpapi

import (
	"net/http"
	"strconv"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/notify"
)

// eventPage is one page of events and where the next starts.
type eventPage struct {
	Value     []notify.Event `json:"value"`
	NextAfter *int64         `json:"nextAfter,omitempty"`
}

// intParam reads an optional integer query parameter within [lo, hi].
func intParam(r *http.Request, name string, lo, hi int64) (int64, bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, false, arm.InvalidRequest(name, "%s is a whole number from %d to %d, not '%.40s'.", name, lo, hi, v)
	}
	return n, true, nil
}

// listEvents answers GET /v1/events: the events the caller may see, oldest
// first, after a sequence number.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	q := notify.EventQuery{Type: r.URL.Query().Get("type"), Limit: 100}
	after, _, err := intParam(r, "after", 0, 1<<62)
	if err != nil {
		return err
	}
	limit, set, err := intParam(r, "limit", 1, 1000)
	if err != nil {
		return err
	}
	if set {
		q.Limit = int(limit)
	}
	q.After = after
	out, err := s.deps.Notify.Events(r.Context(), p, q)
	if err != nil {
		return err
	}
	page := eventPage{Value: out}
	if len(out) == q.Limit {
		next := out[len(out)-1].Seq
		page.NextAfter = &next
	}
	WriteJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) getEvent(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Notify.Event(r.Context(), p, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	out, err := s.deps.Notify.Endpoints(r.Context(), p)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	var in notify.EndpointInput
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	out, err := s.deps.Notify.CreateEndpoint(r.Context(), p, in)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Notify.Endpoint(r.Context(), p, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) updateWebhook(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	var in notify.EndpointInput
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	out, err := s.deps.Notify.UpdateEndpoint(r.Context(), p, params["id"], in)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	return writeDeleted(w, true, s.deps.Notify.DeleteEndpoint(r.Context(), p, params["id"]))
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	before, _, err := intParam(r, "before", 1, 1<<62)
	if err != nil {
		return err
	}
	limit, _, err := intParam(r, "limit", 1, 500)
	if err != nil {
		return err
	}
	out, err := s.deps.Notify.Deliveries(r.Context(), p, params["id"], before, int(limit))
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

// deliveryID parses a delivery's number from the path; a malformed one is
// a delivery that does not exist.
func deliveryID(params map[string]string) (int64, error) {
	n, err := strconv.ParseInt(params["deliveryId"], 10, 64)
	if err != nil || n < 1 {
		return 0, arm.Errorf(arm.NotFound, "DeliveryNotFound", "Delivery '%.40s' of webhook endpoint '%.100s' was not found.", params["deliveryId"], params["id"])
	}
	return n, nil
}

func (s *Server) getDelivery(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	n, err := deliveryID(params)
	if err != nil {
		return err
	}
	out, err := s.deps.Notify.Delivery(r.Context(), p, params["id"], n)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) replayDelivery(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	n, err := deliveryID(params)
	if err != nil {
		return err
	}
	out, err := s.deps.Notify.Replay(r.Context(), p, params["id"], n)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusAccepted, out)
	return nil
}

func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Notify.RotateSecret(r.Context(), p, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}
