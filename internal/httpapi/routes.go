package httpapi

import (
	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
)

// Role sets used by routes. A route with nil roles admits any authenticated
// principal; the domain services still apply scope.
var (
	commerceRoles = []auth.Role{auth.RoleOperator, auth.RolePartner, auth.RoleReseller}
	operatorOnly  = []auth.Role{auth.RoleOperator}
	// The commerce operator's token also acts as the stack operator when the
	// process runs the stack role (STACKBILL_OPERATOR_TOKEN).
	stackOperators = []auth.Role{auth.RoleStackOperator, auth.RoleOperator}
	usageWriters   = []auth.Role{auth.RoleUsageWriter, auth.RoleStackOperator, auth.RoleOperator}
	usageReaders   = []auth.Role{auth.RoleTenant, auth.RoleStackOperator, auth.RoleOperator}
	// quarantine.Visible narrows a stack operator to the stack's stages.
	quarantineRoles = []auth.Role{auth.RoleOperator, auth.RoleStackOperator}
)

// buildRoutes lists every route stackbill serves, in one place: the ARM and
// native APIs, health, metrics, public keys and the portal.
func (s *Server) buildRoutes() []route {
	const (
		reg  = "subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.AzureStack/registrations"
		one  = reg + "/{registrationName}"
		cs   = one + "/customerSubscriptions"
		cone = cs + "/{customerSubscriptionName}"
	)
	r := func(name, method, pattern string, roles []auth.Role, h handlerFunc) route {
		return route{name: name, method: method, pattern: arm.NewPattern(pattern), roles: roles, service: "commerce", h: h}
	}
	st := func(name, method, pattern string, roles []auth.Role, h handlerFunc) route {
		return route{name: name, method: method, pattern: arm.NewPattern(pattern), roles: roles, service: "stack", h: h}
	}
	return []route{
		// Open to anyone: health checks, commerce's public keys (a stack
		// verifies an activation key with them before it holds any
		// credential), and the portal, which signs callers in and checks
		// each page's roles itself with the principal found here.
		{name: "Health", method: "GET", pattern: arm.NewPattern("healthz"), anon: true, unlimited: true, h: s.healthz},
		{name: "Activation_Keys", method: "GET", pattern: arm.NewPattern("v1/activation/keys"), anon: true, service: "commerce", h: s.activationKeys},
		{name: "Portal_Root", method: "GET", pattern: arm.NewPattern(""), anon: true, h: s.portalHandler},
		{name: "Portal", method: "*", pattern: arm.NewPattern("portal/{page...}"), anon: true, session: true, h: s.portalHandler},
		{name: "Metrics", method: "GET", pattern: arm.NewPattern("metrics"), roles: stackOperators, h: s.metricsHandler},

		// Microsoft.AzureStack (ARM), api-versions 2017-06-01, 2020-06-01-preview, 2022-06-01.
		r("Operations_List", "GET", "providers/Microsoft.AzureStack/operations", nil, s.listOperations),
		r("Registrations_ListBySubscription", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.AzureStack/registrations", commerceRoles, s.listRegistrations),
		r("Registrations_List", "GET", reg, commerceRoles, s.listRegistrations),
		r("Registrations_Get", "GET", one, commerceRoles, s.getRegistration),
		r("Registrations_CreateOrUpdate", "PUT", one, commerceRoles, s.putRegistration),
		r("Registrations_Update", "PATCH", one, commerceRoles, s.patchRegistration),
		r("Registrations_Delete", "DELETE", one, commerceRoles, s.deleteRegistration),
		r("Registrations_GetActivationKey", "POST", one+"/getactivationkey", commerceRoles, s.getActivationKey),
		r("Registrations_EnableRemoteManagement", "POST", one+"/enableRemoteManagement", commerceRoles, s.enableRemoteManagement),
		r("CustomerSubscriptions_List", "GET", cs, commerceRoles, s.listCustomerSubscriptions),
		r("CustomerSubscriptions_Get", "GET", cone, commerceRoles, s.getCustomerSubscription),
		r("CustomerSubscriptions_Create", "PUT", cone, commerceRoles, s.putCustomerSubscription),
		r("CustomerSubscriptions_Delete", "DELETE", cone, commerceRoles, s.deleteCustomerSubscription),

		// Native API: the partner directory.
		r("Directory_ListPartners", "GET", "v1/partners", commerceRoles, s.listPartners),
		r("Directory_GetPartner", "GET", "v1/partners/{id}", commerceRoles, s.getPartner),
		r("Directory_PutPartner", "PUT", "v1/partners/{id}", operatorOnly, s.putPartner),
		r("Directory_DeletePartner", "DELETE", "v1/partners/{id}", operatorOnly, s.deletePartner),
		r("Directory_ListCustomers", "GET", "v1/customers", commerceRoles, s.listCustomers),
		r("Directory_GetCustomer", "GET", "v1/customers/{tenantId}", commerceRoles, s.getCustomer),
		r("Directory_PutCustomer", "PUT", "v1/customers/{tenantId}", commerceRoles, s.putCustomer),
		r("Directory_DeleteCustomer", "DELETE", "v1/customers/{tenantId}", commerceRoles, s.deleteCustomer),
		r("Directory_ListSubscriptions", "GET", "v1/subscriptions", commerceRoles, s.listSubscriptions),
		r("Directory_GetSubscription", "GET", "v1/subscriptions/{id}", commerceRoles, s.getSubscription),
		r("Directory_PutSubscription", "PUT", "v1/subscriptions/{id}", commerceRoles, s.putSubscription),
		r("Directory_DeleteSubscription", "DELETE", "v1/subscriptions/{id}", commerceRoles, s.deleteSubscription),
		r("Directory_History", "GET", "v1/directory/history/{kind}/{id}", operatorOnly, s.directoryHistory),
		r("Directory_Import", "POST", "v1/directory/import", operatorOnly, s.importDirectory),
		r("Directory_Resolve", "GET", "v1/directory/resolve/subscriptions/{id}", operatorOnly, s.resolveSubscription),

		// Bridge: commerce ingestion, forwarded usage and the billing meter map.
		r("Bridge_PostUsage", "POST", "v1/bridge/usage", []auth.Role{auth.RoleBridge}, s.postBridgeUsage),
		r("Usage_Forwarded", "GET", "v1/usage/forwarded", commerceRoles, s.forwardedUsage),
		r("MeterMap_Get", "GET", "v1/meter-map", commerceRoles, s.getMeterMap),
		r("MeterMap_Publish", "PUT", "v1/meter-map", operatorOnly, s.putMeterMap),

		// Billing: price lists, agreements, invoices, reconciliation, price books.
		// End customers (tenant tokens) and stack roles are refused here.
		r("PriceLists_Import", "POST", "v1/billing/price-lists", operatorOnly, s.importPriceList),
		r("PriceLists_List", "GET", "v1/billing/price-lists", commerceRoles, s.listPriceLists),
		r("PriceLists_Get", "GET", "v1/billing/price-lists/{id}", commerceRoles, s.getPriceList),
		r("Agreements_List", "GET", "v1/billing/agreements", commerceRoles, s.listAgreements),
		r("Agreements_Put", "PUT", "v1/billing/agreements/{partnerId}", operatorOnly, s.putAgreement),
		r("Invoices_List", "GET", "v1/billing/invoices", commerceRoles, s.listInvoices),
		r("Invoices_Get", "GET", "v1/billing/invoices/{number}", commerceRoles, s.getInvoice),
		r("CreditNotes_Create", "POST", "v1/billing/invoices/{number}/credit-notes", operatorOnly, s.createCreditNote),
		r("Periods_Get", "GET", "v1/billing/periods/{period}", operatorOnly, s.getPeriod),
		r("Periods_Finalize", "POST", "v1/billing/periods/{period}/finalize", operatorOnly, s.finalizePeriod),
		r("Reconciliation_Get", "GET", "v1/billing/reconciliation", commerceRoles, s.reconciliation),
		r("Exports_Start", "POST", "v1/billing/exports", commerceRoles, s.startExport),
		r("Exports_Get", "GET", "v1/billing/exports/{id}", commerceRoles, s.getExport),
		r("Exports_File", "GET", "v1/billing/exports/{id}/file", commerceRoles, s.getExportFile),
		r("PriceBooks_List", "GET", "v1/billing/price-books/{owner}", commerceRoles, s.listPriceBooks),
		r("PriceBooks_Put", "PUT", "v1/billing/price-books/{owner}/{target}", commerceRoles, s.putPriceBook),
		r("PriceBooks_Delete", "DELETE", "v1/billing/price-books/{owner}/{target}", commerceRoles, s.deletePriceBook),
		r("Statements_List", "GET", "v1/billing/statements/{owner}", commerceRoles, s.listStatements),

		// The audit log, each partner's part of it.
		r("Audit_List", "GET", "v1/audit", commerceRoles, s.listAudit),

		// What background stages held back, for the operator (and the
		// stamp's stack operator, the stack's stages) to judge.
		{wholeStamp: true, name: "Quarantine_List", method: "GET", pattern: arm.NewPattern("v1/quarantine"), roles: quarantineRoles, h: s.listQuarantine},
		{wholeStamp: true, name: "Quarantine_Get", method: "GET", pattern: arm.NewPattern("v1/quarantine/{id}"), roles: quarantineRoles, h: s.getQuarantine},
		{wholeStamp: true, name: "Quarantine_Release", method: "POST", pattern: arm.NewPattern("v1/quarantine/{id}/release"), roles: quarantineRoles, h: s.resolveQuarantine(true)},
		{wholeStamp: true, name: "Quarantine_Drop", method: "POST", pattern: arm.NewPattern("v1/quarantine/{id}/drop"), roles: quarantineRoles, h: s.resolveQuarantine(false)},

		// Native API: operator actions on registrations.
		r("Registrations_ListAll", "GET", "v1/registrations", commerceRoles, s.listAllRegistrations),
		r("Registrations_Approve", "POST", "v1/registrations/approve", operatorOnly, s.approval(true)),
		r("Registrations_RevokeApproval", "POST", "v1/registrations/revoke-approval", operatorOnly, s.approval(false)),
		r("Registrations_History", "GET", "v1/registrations/history", commerceRoles, s.registrationHistory),

		// Stack: local tenancy (Microsoft.Subscriptions.Admin, api-version 2015-11-01).
		wholeStamp(st("DirectoryTenants_List", "GET", "subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Subscriptions.Admin/directoryTenants", stackOperators, s.listDirectoryTenants)),
		wholeStamp(st("DirectoryTenants_Get", "GET", "subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Subscriptions.Admin/directoryTenants/{name}", stackOperators, s.getDirectoryTenant)),
		wholeStamp(st("DirectoryTenants_CreateOrUpdate", "PUT", "subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Subscriptions.Admin/directoryTenants/{name}", stackOperators, s.putDirectoryTenant)),
		wholeStamp(st("DirectoryTenants_Delete", "DELETE", "subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Subscriptions.Admin/directoryTenants/{name}", stackOperators, s.deleteDirectoryTenant)),
		st("Subscriptions_List", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.Subscriptions.Admin/subscriptions", stackOperators, s.listUserSubscriptions),
		st("Subscriptions_Get", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.Subscriptions.Admin/subscriptions/{id}", stackOperators, s.getUserSubscription),
		st("Subscriptions_CreateOrUpdate", "PUT", "subscriptions/{subscriptionId}/providers/Microsoft.Subscriptions.Admin/subscriptions/{id}", stackOperators, s.putUserSubscription),
		st("Subscriptions_Delete", "DELETE", "subscriptions/{subscriptionId}/providers/Microsoft.Subscriptions.Admin/subscriptions/{id}", stackOperators, s.deleteUserSubscription),
		st("Subscriptions_History", "GET", "v1/stack/subscriptions/{id}/history", stackOperators, s.userSubscriptionHistory),
		st("Stack_Info", "GET", "v1/stack/info", stackOperators, s.stackInfo),
		wholeStamp(st("Stack_BridgeStatus", "GET", "v1/stack/bridge", stackOperators, s.bridgeStatus)),

		// Stack: meters, intake and the usage APIs (api-version 2015-06-01-preview).
		st("Meters_List", "GET", "v1/meters", nil, s.listMeters),
		wholeStamp(st("Meters_Put", "PUT", "v1/meters/{id}", stackOperators, s.putMeter)),
		st("Usage_PostEvents", "POST", "v1/usage/events", usageWriters, s.postUsageEvents),
		st("UsageAggregates_List", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.Commerce/UsageAggregates", usageReaders, s.usageAggregates(false)),
		st("SubscriberUsageAggregates_List", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates", stackOperators, s.usageAggregates(true)),

		{name: "WhoAmI", method: "GET", pattern: arm.NewPattern("v1/whoami"), h: s.whoami, service: ""},
	}
}

// wholeStamp marks a route about the whole stamp: a delegated provider's
// stack-operator token, which manages only its own tenants, may not call it.
func wholeStamp(r route) route {
	r.wholeStamp = true
	return r
}

// RouteNames lists every route's name, for tests that must cover them all
// (the authorization matrix).
func RouteNames() []string {
	var out []string
	for _, r := range (&Server{}).buildRoutes() {
		out = append(out, r.name)
	}
	return out
}
