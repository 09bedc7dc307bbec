package httpapi

import (
	"net/http"
	"strconv"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/quarantine"
)

func quarantineID(params map[string]string) (int64, error) {
	id, err := strconv.ParseInt(params["id"], 10, 64)
	if err != nil || id <= 0 {
		// Not a number is not an item: the same answer as a missing one.
		return 0, arm.Errorf(arm.NotFound, "QuarantineItemNotFound", "There is no quarantined item %s.", params["id"])
	}
	return id, nil
}

func (s *Server) listQuarantine(w http.ResponseWriter, r *http.Request, p auth.Principal, _ map[string]string) error {
	q := r.URL.Query()
	qq := quarantine.Query{Stage: quarantine.Stage(q.Get("stage")), Open: q.Get("state") != "all", Limit: 500}
	if qq.Stage != "" {
		known := false
		for _, st := range quarantine.Stages {
			known = known || st == qq.Stage
		}
		if !known {
			return arm.InvalidRequest("stage", "stage is one of aggregation, seal, ingest, materialise; got '%s'.", qq.Stage)
		}
	}
	if v := q.Get("state"); v != "" && v != "open" && v != "all" {
		return arm.InvalidRequest("state", "state is open (the default) or all; got '%s'.", v)
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return arm.InvalidRequest("after", "'%s' is not an item ID.", v)
		}
		qq.After = n
	}
	items, err := s.deps.Quarantine.List(r.Context(), p, qq)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, listJSON[quarantine.Item]{Value: nonNil(items)})
	return nil
}

func (s *Server) getQuarantine(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
	id, err := quarantineID(params)
	if err != nil {
		return err
	}
	it, err := s.deps.Quarantine.Get(r.Context(), p, id)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, it)
	return nil
}

func (s *Server) resolveQuarantine(release bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal, params map[string]string) error {
		id, err := quarantineID(params)
		if err != nil {
			return err
		}
		var it quarantine.Item
		if release {
			it, err = s.deps.Quarantine.Release(r.Context(), p, id)
		} else {
			it, err = s.deps.Quarantine.Drop(r.Context(), p, id)
		}
		if err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, it)
		return nil
	}
}
