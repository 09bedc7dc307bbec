package httpapi

import (
	"net/http"
	"strconv"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/audit"
	"github.com/stackbill/stackbill/internal/auth"
)

// auditPage is one page of audit records and where the next starts.
type auditPage struct {
	Value     []audit.Entry `json:"value"`
	NextAfter *int64        `json:"nextAfter,omitempty"`
}

// listAudit answers GET /v1/audit: the operator reads every record, a partner
// the records of its scope (its own, and its resellers' for a provider), a
// reseller its own.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	q := r.URL.Query()
	aq := audit.Query{Kind: q.Get("kind"), ID: q.Get("id"), Limit: 500}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return arm.InvalidRequest("after", "'%s' is not a record sequence number.", v)
		}
		aq.After = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return arm.InvalidRequest("limit", "limit is a number from 1 to 1000, not '%s'.", v)
		}
		aq.Limit = n
	}
	if p.Role != auth.RoleOperator {
		sc, err := s.deps.Directory.ScopeFor(r.Context(), p)
		if err != nil {
			return err
		}
		aq.Scopes = append([]string{}, sc.Partners...)
	}
	out, err := s.deps.Audit.List(r.Context(), aq)
	if err != nil {
		return err
	}
	page := auditPage{Value: nonNil(out)}
	if len(out) == aq.Limit {
		next := out[len(out)-1].Seq
		page.NextAfter = &next
	}
	WriteJSON(w, http.StatusOK, page)
	return nil
}
