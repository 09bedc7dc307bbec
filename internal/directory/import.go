package directory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/store"
)

// ImportError lists every problem found in an import document, each with the
// line it starts on. Nothing is imported when there is one.
type ImportError struct{ Problems []string }

func (e *ImportError) Error() string {
	return fmt.Sprintf("directory import rejected, nothing was imported (%d problems):\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// ImportReport counts what an import did per kind of entry.
type ImportReport struct {
	Partners      map[string]int `json:"partners"`
	Customers     map[string]int `json:"customers"`
	Subscriptions map[string]int `json:"subscriptions"`
}

type entry[T any] struct {
	line  int
	value T
}

type importDoc struct {
	partners      []entry[Partner]
	customers     []entry[Customer]
	subscriptions []entry[Subscription]
}

// parseImport reads the document, remembering each entry's line. Unknown
// fields are errors: a typo in "customerTenantId" must not silently import a
// subscription without its customer.
func parseImport(data []byte) (importDoc, []string) {
	var doc importDoc
	var problems []string
	lineAt := func(off int64) int { return 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n")) }
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return doc, []string{"line 1: the document must be a JSON object with \"partners\", \"customers\" and \"subscriptions\" arrays"}
	}
	seen := map[string]bool{}
	for dec.More() {
		keyOff := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return doc, []string{fmt.Sprintf("line %d: %v", lineAt(keyOff), err)}
		}
		key, _ := tok.(string)
		if seen[key] {
			problems = append(problems, fmt.Sprintf("line %d: %q appears twice", lineAt(keyOff), key))
		}
		seen[key] = true
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return doc, append(problems, fmt.Sprintf("line %d: %q must be an array", lineAt(keyOff), key))
		}
		for i := 0; dec.More(); i++ {
			// InputOffset is the end of the previous token; skip to the value.
			off := dec.InputOffset()
			for int(off) < len(data) && strings.ContainsRune(" \t\r\n,", rune(data[off])) {
				off++
			}
			line := lineAt(off)
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return doc, append(problems, fmt.Sprintf("line %d: %s[%d]: %v", line, key, i, err))
			}
			strict := json.NewDecoder(bytes.NewReader(raw))
			strict.DisallowUnknownFields()
			var err error
			switch key {
			case "partners":
				var p Partner
				if err = strict.Decode(&p); err == nil {
					doc.partners = append(doc.partners, entry[Partner]{line, p})
				}
			case "customers":
				var c Customer
				if err = strict.Decode(&c); err == nil {
					doc.customers = append(doc.customers, entry[Customer]{line, c})
				}
			case "subscriptions":
				var s Subscription
				if err = strict.Decode(&s); err == nil {
					doc.subscriptions = append(doc.subscriptions, entry[Subscription]{line, s})
				}
			default:
				err = fmt.Errorf("unknown section %q (want partners, customers, subscriptions)", key)
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("line %d: %s[%d]: %v", line, key, i, err))
			}
		}
		if _, err := dec.Token(); err != nil {
			return doc, append(problems, fmt.Sprintf("line %d: %v", lineAt(dec.InputOffset()), err))
		}
	}
	if _, err := dec.Token(); err != nil {
		problems = append(problems, fmt.Sprintf("line %d: %v", lineAt(dec.InputOffset()), err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		problems = append(problems, fmt.Sprintf("line %d: unexpected data after the document", lineAt(dec.InputOffset())))
	}
	return doc, problems
}

// Import loads a directory document idempotently: entries are created or
// updated, unchanged ones are left alone (and leave no history), and the whole
// document is validated against itself and the existing directory first. One
// bad entry rejects the file.
func (s *Service) Import(ctx context.Context, actor string, data []byte) (ImportReport, error) {
	doc, problems := parseImport(data)
	if len(problems) > 0 {
		return ImportReport{}, &ImportError{Problems: problems}
	}
	report := ImportReport{Partners: map[string]int{}, Customers: map[string]int{}, Subscriptions: map[string]int{}}
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		// Validation sees the directory as it will be: the file's entries
		// overlaid on the database, so entries may refer to each other in any
		// order.
		filePartners := map[string]Partner{}
		fileCustomers := map[string]Customer{}
		for _, e := range doc.partners {
			filePartners[e.value.ID] = e.value
		}
		for _, e := range doc.customers {
			if id, ok := arm.CanonicalGUID(e.value.TenantID); ok {
				fileCustomers[id] = e.value
			}
		}
		dbLk := txLookups(ctx, tx)
		lk := lookups{
			partner: func(id string) (Partner, bool, error) {
				if p, ok := filePartners[id]; ok {
					return p, true, nil
				}
				return dbLk.partner(id)
			},
			customer: func(id string) (Customer, bool, error) {
				if c, ok := fileCustomers[id]; ok {
					return c, true, nil
				}
				return dbLk.customer(id)
			},
		}
		var problems []string
		fail := func(line int, what string, err error) {
			if e, ok := arm.As(err); ok {
				problems = append(problems, fmt.Sprintf("line %d: %s: %s", line, what, e.Message))
			} else {
				problems = append(problems, fmt.Sprintf("line %d: %s: %v", line, what, err))
			}
		}
		dupes := map[string]int{}
		dup := func(line int, kind, id string) {
			if first, ok := dupes[kind+"/"+id]; ok {
				problems = append(problems, fmt.Sprintf("line %d: %s %s is listed twice (first on line %d)", line, kind, id, first))
			}
			dupes[kind+"/"+id] = line
		}
		for i := range doc.partners {
			e := &doc.partners[i]
			dup(e.line, "partner", e.value.ID)
			if err := normalizePartner(&e.value, lk); err != nil {
				fail(e.line, "partner "+e.value.ID, err)
			}
		}
		for i := range doc.customers {
			e := &doc.customers[i]
			if err := normalizeCustomer(&e.value, lk); err != nil {
				fail(e.line, "customer "+e.value.TenantID, err)
			}
			dup(e.line, "customer", e.value.TenantID)
		}
		for i := range doc.subscriptions {
			e := &doc.subscriptions[i]
			if err := normalizeSubscription(&e.value, lk); err != nil {
				fail(e.line, "subscription "+e.value.ID, err)
			}
			dup(e.line, "subscription", e.value.ID)
		}
		if len(problems) > 0 {
			return &ImportError{Problems: problems}
		}
		now := s.clock.Now()
		// Providers before resellers so each write validates against rows that
		// already exist.
		for pass := 0; pass < 2; pass++ {
			for _, e := range doc.partners {
				if (e.value.Type == IndirectReseller) != (pass == 1) {
					continue
				}
				op, err := upsertPartner(ctx, tx, now, actor, e.value)
				if err != nil {
					fail(e.line, "partner "+e.value.ID, err)
					continue
				}
				report.Partners[op]++
			}
		}
		for _, e := range doc.customers {
			op, err := upsertCustomer(ctx, tx, now, actor, e.value)
			if err != nil {
				fail(e.line, "customer "+e.value.TenantID, err)
				continue
			}
			report.Customers[op]++
		}
		for _, e := range doc.subscriptions {
			op, err := upsertSubscription(ctx, tx, now, actor, e.value)
			if err != nil {
				fail(e.line, "subscription "+e.value.ID, err)
				continue
			}
			report.Subscriptions[op]++
		}
		if len(problems) > 0 {
			return &ImportError{Problems: problems}
		}
		return nil
	})
	if err != nil {
		return ImportReport{}, err
	}
	return report, nil
}
