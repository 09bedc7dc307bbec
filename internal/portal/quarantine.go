package portal

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
	"github.com/stackbill/stackbill/internal/quarantine"
)

// quarantinePage lists what background stages held back, as the principal
// may see it (commerce's stages for the operator, the stack's for the stack
// operator), open items first.
func (p *Portal) quarantinePage(w http.ResponseWriter, r *http.Request, s *session) error {
	all := r.URL.Query().Get("state") == "all"
	var items []quarantine.Item
	after := int64(0)
	for {
		page, err := p.d.Quarantine.List(r.Context(), s.P, quarantine.Query{Open: !all, After: after, Limit: 1000})
		if err != nil {
			return err
		}
		items = append(items, page...)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	sort.SliceStable(items, func(i, j int) bool { return (items[i].Resolution == "") && (items[j].Resolution != "") })
	pageRows, pg := paginate(r, items)
	p.render(w, r, s, "quarantine", "Quarantine", map[string]any{"Rows": pageRows, "Pager": pg, "All": all, "Count": len(items)})
	return nil
}

// quarantineResolve releases or drops one item in two steps, as approval
// does: the first POST says what the action does and asks again.
func (p *Portal) quarantineResolve(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return arm.InvalidRequest("id", "'%s' is not a quarantined item's number.", r.PathValue("id"))
	}
	how := r.PathValue("action")
	if how != "release" && how != "drop" {
		return arm.Errorf(arm.NotFound, "NotFound", "There is no page at %s.", r.URL.Path)
	}
	it, err := p.d.Quarantine.Get(r.Context(), s.P, id)
	if err != nil {
		return err
	}
	if r.PostFormValue("confirm") != "yes" {
		p.render(w, r, s, "confirmquarantine", fmt.Sprintf("%s item %d?", map[string]string{"release": "Release", "drop": "Drop"}[how], id), map[string]any{"Item": it, "Action": how})
		return nil
	}
	if how == "release" {
		_, err = p.d.Quarantine.Release(r.Context(), s.P, id)
	} else {
		_, err = p.d.Quarantine.Drop(r.Context(), s.P, id)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/portal/quarantine?state=all", http.StatusSeeOther)
	return nil
}

// quarantineAttention says what is held back, as pr may see it: each stage's
// open items for those who resolve them, and for a partner the records
// from its own stamps that wait on the operator.
func (p *Portal) quarantineAttention(ctx context.Context, pr auth.Principal, regNames map[string]string) ([]attentionItem, error) {
	if p.d.Quarantine == nil {
		return nil, nil
	}
	var out []attentionItem
	if visible := quarantine.Visible(pr); len(visible) > 0 {
		counts, err := p.d.Quarantine.Counts(ctx)
		if err != nil {
			return nil, err
		}
		for _, st := range visible {
			if n := counts[st]; n > 0 {
				out = append(out, attentionItem{Text: fmt.Sprintf("%d item(s) held back at the %s stage: their usage is not billed until released or dropped.", n, st),
					Href: "/portal/quarantine", Action: "Quarantine"})
			}
		}
		return out, nil
	}
	if pr.Role != auth.RolePartner {
		return nil, nil
	}
	held, err := p.d.Quarantine.HeldPerRegistration(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for uid := range regNames {
		if held[uid] > 0 {
			names = append(names, uid)
		}
	}
	sort.Slice(names, func(i, j int) bool { return regNames[names[i]] < regNames[names[j]] })
	for _, uid := range names {
		out = append(out, attentionItem{Text: fmt.Sprintf("%d record(s) from stamp %s are held in quarantine: they are not billed until the operator releases them.", held[uid], regNames[uid]),
			Href: "/portal/registrations", Action: "Registrations"})
	}
	return out, nil
}
