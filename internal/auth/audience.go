package auth

// Audience is who may call a kind of operation: the one list of roles that
// the API's route table and the portal's pages share. An audience admits by
// role only; the domain services then narrow each object to the caller's
// scope where they load it.
type Audience uint8

// The audiences.
const (
	Anyone         Audience = iota // any signed-in principal
	Operators                      // the commerce operator
	Commerce                       // the operator, partners and resellers
	Partners                       // partners and resellers, each in its own scope
	BillTo                         // who may hold a billing relationship: the operator and partners
	StackOperators                 // the stack operator; the operator's token acts as one too
	UsageWriters                   // who may post usage events to a stack's intake
	UsageReaders                   // who may read a stack's usage APIs: tenants and stack operators
	Bridges                        // a stack's activation credential, pushing usage to commerce
	Quarantiners                   // who judges held-back records: the operator and the stack operator
	Tenants                        // end customers
)

// Admits reports whether a principal of role r belongs to the audience.
func (a Audience) Admits(r Role) bool {
	switch a {
	case Anyone:
		return true
	case Operators:
		return r == RoleOperator
	case Commerce:
		return r == RoleOperator || r == RolePartner || r == RoleReseller
	case Partners:
		return r == RolePartner || r == RoleReseller
	case BillTo:
		return r == RoleOperator || r == RolePartner
	case StackOperators, Quarantiners:
		return r == RoleStackOperator || r == RoleOperator
	case UsageWriters:
		return r == RoleUsageWriter || r == RoleStackOperator || r == RoleOperator
	case UsageReaders:
		return r == RoleTenant || r == RoleStackOperator || r == RoleOperator
	case Bridges:
		return r == RoleBridge
	case Tenants:
		return r == RoleTenant
	}
	return false
}

// AuditScope is the partner whose part of the audit log records what p
// does: a partner's or reseller's own, none for everyone else.
func (p Principal) AuditScope() string {
	if p.Role == RolePartner || p.Role == RoleReseller {
		return p.PartnerID
	}
	return ""
}
