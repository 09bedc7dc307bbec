package httpapi

import (
	"net/http"
	"sort"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/budget"
)

// budgetView is a budget with its standing in each open period and its
// holds.
type budgetView struct {
	budget.Budget
	Status []budget.Status `json:"status"`
	Holds  []budget.Hold   `json:"holds"`
}

func (s *Server) listBudgets(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	out, err := s.deps.Budgets.List(r.Context(), p)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (s *Server) createBudget(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	var in budget.Input
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	out, err := s.deps.Budgets.Create(r.Context(), p, in)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) getBudget(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	b, st, err := s.deps.Budgets.Get(r.Context(), p, params["id"])
	if err != nil {
		return err
	}
	holds, err := s.deps.Budgets.Holds(r.Context(), p, params["id"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, budgetView{b, nonNil(st), holds})
	return nil
}

// releaseHold answers POST /v1/budgets/{id}/holds/{tenantId}/release: the
// stamps enable the tenant's user subscriptions again at their next sync.
func (s *Server) releaseHold(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	out, err := s.deps.Budgets.Release(r.Context(), p, params["id"], params["tenantId"])
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

// bridgeHolds answers GET /v1/bridge/holds: the tenants mapped on the
// caller's stamp whose user subscriptions a budget holds disabled.
func (s *Server) bridgeHolds(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	held, err := s.deps.Budgets.HeldTenants(r.Context(), p)
	if err != nil {
		return err
	}
	type hold struct {
		TenantID string `json:"tenantId"`
		BudgetID string `json:"budgetId"`
	}
	out := []hold{}
	for t, b := range held {
		out = append(out, hold{t, b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TenantID < out[j].TenantID })
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (s *Server) updateBudget(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	var in budget.Input
	if err := decodeInto(s, w, r, &in); err != nil {
		return err
	}
	out, err := s.deps.Budgets.Update(r.Context(), p, params["id"], in)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteBudget(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	return writeDeleted(w, true, s.deps.Budgets.Delete(r.Context(), p, params["id"]))
}
