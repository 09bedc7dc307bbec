package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/directory"
	"github.com/stackbill/stackbill/internal/registration"
)

func writeOutcome(w http.ResponseWriter, op string, v any) {
	status := http.StatusOK
	if op == directory.Created {
		status = http.StatusCreated
	}
	WriteJSON(w, status, v)
}

func decodeInto(s *Server, w http.ResponseWriter, r *http.Request, v any) error {
	raw, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	return decodeStrict(raw, v)
}

func pathMismatch(field, inPath, inBody string) error {
	return arm.InvalidRequest(field, "The %s in the body ('%s') differs from the one in the path ('%s').", field, inBody, inPath)
}

func (s *Server) putPartner(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	var in directory.Partner
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	if in.ID == "" {
		in.ID = params["id"]
	} else if in.ID != params["id"] {
		return pathMismatch("id", params["id"], in.ID)
	}
	op, out, err := s.deps.Directory.PutPartner(r.Context(), p, in)
	if err != nil {
		return err
	}
	writeOutcome(w, op, out)
	return nil
}

func (s *Server) getPartner(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Directory.GetPartner(r.Context(), p, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listPartners(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	out, err := s.deps.Directory.ListPartners(r.Context(), p)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, listJSON[directory.Partner]{Value: nonNil(out)})
	return nil
}

func (s *Server) deletePartner(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	existed, err := s.deps.Directory.DeletePartner(r.Context(), p, params["id"])
	return writeDeleted(w, existed, err)
}

func (s *Server) putCustomer(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	var in directory.Customer
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	if in.TenantID == "" {
		in.TenantID = params["tenantId"]
	} else if !strings.EqualFold(in.TenantID, params["tenantId"]) {
		return pathMismatch("tenantId", params["tenantId"], in.TenantID)
	}
	op, out, err := s.deps.Directory.PutCustomer(r.Context(), p, in)
	if err != nil {
		return err
	}
	writeOutcome(w, op, out)
	return nil
}

func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Directory.GetCustomer(r.Context(), p, params["tenantId"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listCustomers(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	out, err := s.deps.Directory.ListCustomers(r.Context(), p, r.URL.Query().Get("partner"))
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, listJSON[directory.Customer]{Value: nonNil(out)})
	return nil
}

func (s *Server) deleteCustomer(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	existed, err := s.deps.Directory.DeleteCustomer(r.Context(), p, params["tenantId"])
	return writeDeleted(w, existed, err)
}

func (s *Server) putSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	var in directory.Subscription
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	if in.ID == "" {
		in.ID = params["id"]
	} else if !strings.EqualFold(in.ID, params["id"]) {
		return pathMismatch("id", params["id"], in.ID)
	}
	op, out, err := s.deps.Directory.PutSubscription(r.Context(), p, in)
	if err != nil {
		return err
	}
	writeOutcome(w, op, out)
	return nil
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Directory.GetSubscription(r.Context(), p, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	out, err := s.deps.Directory.ListSubscriptions(r.Context(), p)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, listJSON[directory.Subscription]{Value: nonNil(out)})
	return nil
}

func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	existed, err := s.deps.Directory.DeleteSubscription(r.Context(), p, params["id"])
	return writeDeleted(w, existed, err)
}

func (s *Server) directoryHistory(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	kind, ok := directory.ParseKind(params["kind"])
	if !ok {
		return arm.InvalidRequest("kind", "Unknown directory kind '%s'; use partners, customers or subscriptions.", params["kind"])
	}
	out, err := s.deps.Directory.History(r.Context(), p, kind, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, listJSON[directory.Change]{Value: nonNil(out)})
	return nil
}

func (s *Server) importDirectory(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	raw, err := readBody(w, r, 32*s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	rep, err := s.deps.Directory.Import(r.Context(), p.Actor(), raw)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, rep)
	return nil
}

// resolveSubscription serves the remote-resolver contract, so that one
// stackbill can be the directory of another.
func (s *Server) resolveSubscription(w http.ResponseWriter, r *http.Request, _ auth.Principal, params map[string]string) error {
	out, err := s.deps.Directory.Resolve(r.Context(), params["id"])
	if errors.Is(err, directory.ErrNotFound) {
		return arm.Errorf(arm.NotFound, "SubscriptionNotFound", "The subscription '%s' is not in the directory.", params["id"])
	}
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

type registrationRef struct {
	SubscriptionID string `json:"subscriptionId"`
	ResourceGroup  string `json:"resourceGroup"`
	Name           string `json:"name"`
}

func (s *Server) approval(approve bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
		var ref registrationRef
		if err := decodeInto(s, w, r, &ref); err != nil {
			return err
		}
		reg, err := s.deps.Registrations.Approve(r.Context(), p, registration.Key{SubscriptionID: ref.SubscriptionID, ResourceGroup: ref.ResourceGroup, Name: ref.Name}, approve)
		if err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, toRegistrationJSON(reg, apiV2022))
		return nil
	}
}

func (s *Server) registrationHistory(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	q := r.URL.Query()
	events, err := s.deps.Registrations.History(r.Context(), p, registration.Key{SubscriptionID: q.Get("subscriptionId"), ResourceGroup: q.Get("resourceGroup"), Name: q.Get("name")})
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, listJSON[registration.Event]{Value: events})
	return nil
}

// listAllRegistrations is the operator's view across subscriptions, with the
// cloudId filter, for finding the registration of a given cloud.
func (s *Server) listAllRegistrations(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	return s.registrationPage(w, r, p, registration.ListQuery{SubscriptionID: r.URL.Query().Get("subscriptionId")}, apiV2022)
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, p auth.Principal, _ map[string]string) error {
	WriteJSON(w, http.StatusOK, map[string]string{"role": string(p.Role), "partnerId": p.PartnerID, "subscriptionId": p.SubscriptionID, "tokenId": p.TokenID})
	return nil
}

// writeDeleted answers a DELETE: 200 when the resource existed, 204 when it
// did not, so that retries are harmless and SDK clients accept both.
func writeDeleted(w http.ResponseWriter, existed bool, err error) error {
	if err != nil {
		return err
	}
	if !existed {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
