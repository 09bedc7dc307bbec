package storetest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"strings"

	"github.com/stackbill/stackbill/internal/registration"
)

// World is a small, fixed partner directory that tests share:
//
//	contoso   DirectCSP         customers Adatum, Litware; CSPSS default sub
//	fabrikam  IndirectProvider  resellers tailspin (customer Proseware) and
//	                            wingtip (customer Relecloud); CSPSS default sub
//	northwind DirectCSP         customer Woodgrove; CSPSS default sub
//	one EA subscription with no partner, one PAYG owned by contoso
var World = struct {
	ContosoDefault, FabrikamDefault, NorthwindDefault, EA, ContosoPAYG string
	Adatum, Litware, Proseware, Relecloud, Woodgrove                   Customer
}{
	ContosoDefault:   "11111111-0000-4000-8000-000000000001",
	FabrikamDefault:  "22222222-0000-4000-8000-000000000001",
	NorthwindDefault: "33333333-0000-4000-8000-000000000001",
	EA:               "44444444-0000-4000-8000-000000000001",
	ContosoPAYG:      "55555555-0000-4000-8000-000000000001",
	Adatum:           Customer{"aaaaaaaa-0000-4000-8000-00000000000a", "aaaaaaaa-1111-4000-8000-00000000000a", "contoso"},
	Litware:          Customer{"bbbbbbbb-0000-4000-8000-00000000000b", "bbbbbbbb-1111-4000-8000-00000000000b", "contoso"},
	Proseware:        Customer{"cccccccc-0000-4000-8000-00000000000c", "cccccccc-1111-4000-8000-00000000000c", "tailspin"},
	Relecloud:        Customer{"dddddddd-0000-4000-8000-00000000000d", "dddddddd-1111-4000-8000-00000000000d", "wingtip"},
	Woodgrove:        Customer{"eeeeeeee-0000-4000-8000-00000000000e", "eeeeeeee-1111-4000-8000-00000000000e", "northwind"},
}

// Customer is an end customer of the World with its one CSP subscription.
type Customer struct {
	Tenant       string
	Subscription string
	Partner      string
}

// WorldJSON is the World as a directory import document.
func WorldJSON() []byte {
	type m = map[string]string
	w := World
	rollsUp := map[string]string{"contoso": "contoso", "tailspin": "fabrikam", "wingtip": "fabrikam", "northwind": "northwind"}
	doc := map[string]any{
		"partners": []m{
			{"id": "contoso", "name": "Contoso", "type": "DirectCSP"},
			{"id": "fabrikam", "name": "Fabrikam Distribution", "type": "IndirectProvider"},
			{"id": "tailspin", "name": "Tailspin", "type": "IndirectReseller", "provider": "fabrikam"},
			{"id": "wingtip", "name": "Wingtip", "type": "IndirectReseller", "provider": "fabrikam"},
			{"id": "northwind", "name": "Northwind", "type": "DirectCSP"},
		},
	}
	var customers, subs []m
	for _, c := range []struct {
		name string
		c    Customer
	}{{"Adatum", w.Adatum}, {"Litware", w.Litware}, {"Proseware", w.Proseware}, {"Relecloud", w.Relecloud}, {"Woodgrove", w.Woodgrove}} {
		customers = append(customers, m{"tenantId": c.c.Tenant, "name": c.name, "partner": c.c.Partner})
		subs = append(subs, m{"id": c.c.Subscription, "offer": "CSP", "partner": rollsUp[c.c.Partner], "customerTenantId": c.c.Tenant})
	}
	subs = append(subs,
		m{"id": w.ContosoDefault, "offer": "CSPSS", "partner": "contoso"},
		m{"id": w.FabrikamDefault, "offer": "CSPSS", "partner": "fabrikam"},
		m{"id": w.NorthwindDefault, "offer": "CSPSS", "partner": "northwind"},
		m{"id": w.EA, "offer": "EA"},
		m{"id": w.ContosoPAYG, "offer": "PAYG", "partner": "contoso"},
	)
	doc["customers"], doc["subscriptions"] = customers, subs
	b, _ := json.MarshalIndent(doc, "", "  ")
	return b
}

// SignedToken encodes a registration token signed the way a stack signs
// it, with a key derived from the token's cloudId: the same cloud always
// gets the same key, as a real stack's does, so tests can re-register or
// update a cloud with a new token.
func SignedToken(t registration.Token) string {
	seed := sha256.Sum256([]byte("stackbill test stack key " + strings.ToLower(t.CloudID)))
	return t.Sign(ed25519.NewKeyFromSeed(seed[:]))
}
