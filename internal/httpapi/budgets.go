package httpapi

import (
	"net/http"

	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/budget"
)

// budgetView is a budget with its standing in each open period.
type budgetView struct {
	budget.Budget
	Status []budget.Status `json:"status"`
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
	WriteJSON(w, http.StatusOK, budgetView{b, nonNil(st)})
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
