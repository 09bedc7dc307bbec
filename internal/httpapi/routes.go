package httpapi

import (
	"github.com/stackbill/stackbill/internal/arm"
	"github.com/stackbill/stackbill/internal/auth"
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
	r := func(name, method, pattern string, who auth.Audience, h handlerFunc) route {
		return route{name: name, method: method, pattern: arm.NewPattern(pattern), who: who, service: "commerce", h: h}
	}
	st := func(name, method, pattern string, who auth.Audience, h handlerFunc) route {
		return route{name: name, method: method, pattern: arm.NewPattern(pattern), who: who, service: "stack", h: h}
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
		{name: "Metrics", method: "GET", pattern: arm.NewPattern("metrics"), who: auth.StackOperators, h: s.metricsHandler},

		// Microsoft.AzureStack (ARM), api-versions 2017-06-01, 2020-06-01-preview, 2022-06-01.
		r("Operations_List", "GET", "providers/Microsoft.AzureStack/operations", auth.Anyone, s.listOperations),
		{name: "CloudManifestFile_List", method: "GET", pattern: arm.NewPattern("providers/Microsoft.AzureStack/cloudManifestFiles"), anon: true, service: "commerce", h: s.cloudManifest},
		{name: "CloudManifestFile_Get", method: "GET", pattern: arm.NewPattern("providers/Microsoft.AzureStack/cloudManifestFiles/{verificationVersion}"), anon: true, service: "commerce", h: s.cloudManifest},
		r("Registrations_ListBySubscription", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.AzureStack/registrations", auth.Commerce, s.listRegistrations),
		r("Registrations_List", "GET", reg, auth.Commerce, s.listRegistrations),
		r("Registrations_Get", "GET", one, auth.Commerce, s.getRegistration),
		r("Registrations_CreateOrUpdate", "PUT", one, auth.Commerce, s.putRegistration),
		r("Registrations_Update", "PATCH", one, auth.Commerce, s.patchRegistration),
		r("Registrations_Delete", "DELETE", one, auth.Commerce, s.deleteRegistration),
		r("Registrations_GetActivationKey", "POST", one+"/getactivationkey", auth.Commerce, s.getActivationKey),
		r("Registrations_EnableRemoteManagement", "POST", one+"/enableRemoteManagement", auth.Commerce, s.enableRemoteManagement),
		r("DeploymentLicense_Create", "POST", "subscriptions/{subscriptionId}/providers/Microsoft.AzureStack/generateDeploymentLicense", auth.Commerce, s.generateDeploymentLicense),
		r("CustomerSubscriptions_List", "GET", cs, auth.Commerce, s.listCustomerSubscriptions),
		r("CustomerSubscriptions_Get", "GET", cone, auth.Commerce, s.getCustomerSubscription),
		r("CustomerSubscriptions_Create", "PUT", cone, auth.Commerce, s.putCustomerSubscription),
		r("CustomerSubscriptions_Delete", "DELETE", cone, auth.Commerce, s.deleteCustomerSubscription),
		// Marketplace syndication (products) is out of scope: a clear answer,
		// not a 404 that reads like a missing registration.
		r("Products_List", "GET", one+"/products", auth.Commerce, s.productsOutOfScope),
		r("Products_Get", "GET", one+"/products/{productName}", auth.Commerce, s.productsOutOfScope),
		r("Products_ListDetails", "POST", one+"/products/{productName}/listDetails", auth.Commerce, s.productsOutOfScope),

		// Native API: the partner directory.
		r("Directory_ListPartners", "GET", "v1/partners", auth.Commerce, s.listPartners),
		r("Directory_GetPartner", "GET", "v1/partners/{id}", auth.Commerce, s.getPartner),
		r("Directory_PutPartner", "PUT", "v1/partners/{id}", auth.Operators, s.putPartner),
		r("Directory_DeletePartner", "DELETE", "v1/partners/{id}", auth.Operators, s.deletePartner),
		r("Directory_ListCustomers", "GET", "v1/customers", auth.Commerce, s.listCustomers),
		r("Directory_GetCustomer", "GET", "v1/customers/{tenantId}", auth.Commerce, s.getCustomer),
		r("Directory_PutCustomer", "PUT", "v1/customers/{tenantId}", auth.Commerce, s.putCustomer),
		r("Directory_DeleteCustomer", "DELETE", "v1/customers/{tenantId}", auth.Commerce, s.deleteCustomer),
		r("Directory_ListSubscriptions", "GET", "v1/subscriptions", auth.Commerce, s.listSubscriptions),
		r("Directory_GetSubscription", "GET", "v1/subscriptions/{id}", auth.Commerce, s.getSubscription),
		r("Directory_PutSubscription", "PUT", "v1/subscriptions/{id}", auth.Commerce, s.putSubscription),
		r("Directory_DeleteSubscription", "DELETE", "v1/subscriptions/{id}", auth.Commerce, s.deleteSubscription),
		r("Directory_History", "GET", "v1/directory/history/{kind}/{id}", auth.Operators, s.directoryHistory),
		r("Directory_Import", "POST", "v1/directory/import", auth.Operators, s.importDirectory),
		r("Directory_Resolve", "GET", "v1/directory/resolve/subscriptions/{id}", auth.Operators, s.resolveSubscription),

		// Bridge: commerce ingestion, forwarded usage and the billing meter map.
		r("Bridge_PostUsage", "POST", "v1/bridge/usage", auth.Bridges, s.postBridgeUsage),
		r("Bridge_Holds", "GET", "v1/bridge/holds", auth.Bridges, s.bridgeHolds),
		r("Usage_Forwarded", "GET", "v1/usage/forwarded", auth.Commerce, s.forwardedUsage),
		r("MeterMap_Get", "GET", "v1/meter-map", auth.Commerce, s.getMeterMap),
		r("MeterMap_Publish", "PUT", "v1/meter-map", auth.Operators, s.putMeterMap),

		// Billing: price lists, agreements, invoices, reconciliation, price books.
		// End customers (tenant tokens) and stack roles are refused here.
		r("PriceLists_Import", "POST", "v1/billing/price-lists", auth.Operators, s.importPriceList),
		r("PriceLists_List", "GET", "v1/billing/price-lists", auth.Commerce, s.listPriceLists),
		r("PriceLists_Get", "GET", "v1/billing/price-lists/{id}", auth.Commerce, s.getPriceList),
		r("Agreements_List", "GET", "v1/billing/agreements", auth.Commerce, s.listAgreements),
		r("Agreements_Put", "PUT", "v1/billing/agreements/{partnerId}", auth.Operators, s.putAgreement),
		r("Invoices_List", "GET", "v1/billing/invoices", auth.Commerce, s.listInvoices),
		r("Invoices_Get", "GET", "v1/billing/invoices/{number}", auth.Commerce, s.getInvoice),
		r("CreditNotes_Create", "POST", "v1/billing/invoices/{number}/credit-notes", auth.Operators, s.createCreditNote),
		r("Periods_Get", "GET", "v1/billing/periods/{period}", auth.Operators, s.getPeriod),
		r("Periods_Finalize", "POST", "v1/billing/periods/{period}/finalize", auth.Operators, s.finalizePeriod),
		r("Reconciliation_Get", "GET", "v1/billing/reconciliation", auth.Commerce, s.reconciliation),
		r("Exports_Start", "POST", "v1/billing/exports", auth.Commerce, s.startExport),
		r("Exports_Get", "GET", "v1/billing/exports/{id}", auth.Commerce, s.getExport),
		r("Exports_File", "GET", "v1/billing/exports/{id}/file", auth.Commerce, s.getExportFile),
		r("PriceBooks_List", "GET", "v1/billing/price-books/{owner}", auth.Commerce, s.listPriceBooks),
		r("PriceBooks_Put", "PUT", "v1/billing/price-books/{owner}/{target}", auth.Commerce, s.putPriceBook),
		r("PriceBooks_Delete", "DELETE", "v1/billing/price-books/{owner}/{target}", auth.Commerce, s.deletePriceBook),
		r("Statements_List", "GET", "v1/billing/statements/{owner}", auth.Commerce, s.listStatements),

		// Microsoft.Commerce/RateCard (api-version 2015-06-01-preview): the
		// price list in force, for a partner's own subscriptions.
		r("RateCard_Get", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.Commerce/RateCard", auth.Commerce, s.rateCard),

		// Partner Center's billing API, in its documented shapes.
		r("PartnerCenter_Invoices", "GET", "partnercenter/v1/invoices", auth.Commerce, s.pcInvoices),
		r("PartnerCenter_Invoice", "GET", "partnercenter/v1/invoices/{id}", auth.Commerce, s.pcInvoice),
		r("PartnerCenter_LineItems", "GET", "partnercenter/v1/invoices/{id}/lineitems", auth.Commerce, s.pcLineItems),
		r("PartnerCenter_LineItemsByPath", "GET", "partnercenter/v1/invoices/{id}/lineitems/{provider}/{type}", auth.Commerce, s.pcLineItems),
		r("PartnerCenter_RateCard", "GET", "partnercenter/v1/ratecards/azure", auth.Commerce, s.pcRateCard),
		r("PartnerCenter_Utilization", "GET", "partnercenter/v1/customers/{tenantId}/subscriptions/{subscriptionId}/utilizations/azure", auth.Commerce, s.pcUtilization),

		// Budgets: each owner its own; end customers have none.
		r("Budgets_List", "GET", "v1/budgets", auth.Commerce, s.listBudgets),
		r("Budgets_Create", "POST", "v1/budgets", auth.Commerce, s.createBudget),
		r("Budgets_Get", "GET", "v1/budgets/{id}", auth.Commerce, s.getBudget),
		r("Budgets_Update", "PATCH", "v1/budgets/{id}", auth.Commerce, s.updateBudget),
		r("Budgets_Delete", "DELETE", "v1/budgets/{id}", auth.Commerce, s.deleteBudget),
		r("Budgets_ReleaseHold", "POST", "v1/budgets/{id}/holds/{tenantId}/release", auth.Commerce, s.releaseHold),

		// Events and the webhooks that deliver them; each caller its own.
		r("Events_List", "GET", "v1/events", auth.Commerce, s.listEvents),
		r("Events_Get", "GET", "v1/events/{id}", auth.Commerce, s.getEvent),
		r("Webhooks_List", "GET", "v1/webhooks", auth.Commerce, s.listWebhooks),
		r("Webhooks_Create", "POST", "v1/webhooks", auth.Commerce, s.createWebhook),
		r("Webhooks_Get", "GET", "v1/webhooks/{id}", auth.Commerce, s.getWebhook),
		r("Webhooks_Update", "PATCH", "v1/webhooks/{id}", auth.Commerce, s.updateWebhook),
		r("Webhooks_Delete", "DELETE", "v1/webhooks/{id}", auth.Commerce, s.deleteWebhook),
		r("Webhooks_RotateSecret", "POST", "v1/webhooks/{id}/rotate-secret", auth.Commerce, s.rotateWebhookSecret),
		r("Webhooks_Deliveries", "GET", "v1/webhooks/{id}/deliveries", auth.Commerce, s.listDeliveries),
		r("Webhooks_Delivery", "GET", "v1/webhooks/{id}/deliveries/{deliveryId}", auth.Commerce, s.getDelivery),
		r("Webhooks_Replay", "POST", "v1/webhooks/{id}/deliveries/{deliveryId}/replay", auth.Commerce, s.replayDelivery),

		// The audit log, each partner's part of it.
		r("Audit_List", "GET", "v1/audit", auth.Commerce, s.listAudit),

		// What background stages held back, for the operator (and the
		// stamp's stack operator, the stack's stages) to judge.
		{wholeStamp: true, name: "Quarantine_List", method: "GET", pattern: arm.NewPattern("v1/quarantine"), who: auth.Quarantiners, h: s.listQuarantine},
		{wholeStamp: true, name: "Quarantine_Get", method: "GET", pattern: arm.NewPattern("v1/quarantine/{id}"), who: auth.Quarantiners, h: s.getQuarantine},
		{wholeStamp: true, name: "Quarantine_Release", method: "POST", pattern: arm.NewPattern("v1/quarantine/{id}/release"), who: auth.Quarantiners, h: s.resolveQuarantine(true)},
		{wholeStamp: true, name: "Quarantine_Drop", method: "POST", pattern: arm.NewPattern("v1/quarantine/{id}/drop"), who: auth.Quarantiners, h: s.resolveQuarantine(false)},

		// Native API: operator actions on registrations.
		r("Registrations_ListAll", "GET", "v1/registrations", auth.Commerce, s.listAllRegistrations),
		r("Registrations_Approve", "POST", "v1/registrations/approve", auth.Operators, s.approval(true)),
		r("Registrations_RevokeApproval", "POST", "v1/registrations/revoke-approval", auth.Operators, s.approval(false)),
		r("Registrations_History", "GET", "v1/registrations/history", auth.Commerce, s.registrationHistory),

		// Stack: local tenancy (Microsoft.Subscriptions.Admin, api-version 2015-11-01).
		wholeStamp(st("DirectoryTenants_List", "GET", "subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Subscriptions.Admin/directoryTenants", auth.StackOperators, s.listDirectoryTenants)),
		wholeStamp(st("DirectoryTenants_Get", "GET", "subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Subscriptions.Admin/directoryTenants/{name}", auth.StackOperators, s.getDirectoryTenant)),
		wholeStamp(st("DirectoryTenants_CreateOrUpdate", "PUT", "subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Subscriptions.Admin/directoryTenants/{name}", auth.StackOperators, s.putDirectoryTenant)),
		wholeStamp(st("DirectoryTenants_Delete", "DELETE", "subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Subscriptions.Admin/directoryTenants/{name}", auth.StackOperators, s.deleteDirectoryTenant)),
		st("Subscriptions_List", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.Subscriptions.Admin/subscriptions", auth.StackOperators, s.listUserSubscriptions),
		st("Subscriptions_Get", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.Subscriptions.Admin/subscriptions/{id}", auth.StackOperators, s.getUserSubscription),
		st("Subscriptions_CreateOrUpdate", "PUT", "subscriptions/{subscriptionId}/providers/Microsoft.Subscriptions.Admin/subscriptions/{id}", auth.StackOperators, s.putUserSubscription),
		st("Subscriptions_Delete", "DELETE", "subscriptions/{subscriptionId}/providers/Microsoft.Subscriptions.Admin/subscriptions/{id}", auth.StackOperators, s.deleteUserSubscription),
		st("Subscriptions_History", "GET", "v1/stack/subscriptions/{id}/history", auth.StackOperators, s.userSubscriptionHistory),
		st("Stack_Info", "GET", "v1/stack/info", auth.StackOperators, s.stackInfo),
		wholeStamp(st("Stack_BridgeStatus", "GET", "v1/stack/bridge", auth.StackOperators, s.bridgeStatus)),

		// Stack: meters, intake and the usage APIs (api-version 2015-06-01-preview).
		st("Meters_List", "GET", "v1/meters", auth.Anyone, s.listMeters),
		wholeStamp(st("Meters_Put", "PUT", "v1/meters/{id}", auth.StackOperators, s.putMeter)),
		st("Usage_PostEvents", "POST", "v1/usage/events", auth.UsageWriters, s.postUsageEvents),
		st("UsageAggregates_List", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.Commerce/UsageAggregates", auth.UsageReaders, s.usageAggregates(false)),
		st("SubscriberUsageAggregates_List", "GET", "subscriptions/{subscriptionId}/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates", auth.StackOperators, s.usageAggregates(true)),

		{name: "WhoAmI", method: "GET", pattern: arm.NewPattern("v1/whoami"), h: s.whoami, service: ""},
	}
}

// wholeStamp marks a route about the whole stamp: a delegated provider's
// stack-operator token, which manages only its own tenants, may not call it.
func wholeStamp(r route) route {
	r.wholeStamp = true
	return r
}

// Route is what the route table says of a route, for tests that must
// cover every route and derive who may call it (the hostile-principals
// suite).
type Route struct {
	Name, Method string
	Who          auth.Audience
	Anon         bool // open to callers without a credential
	WholeStamp   bool // refuses a delegated provider's stack operator
}

// Routes lists the route table.
func Routes() []Route {
	var out []Route
	for _, r := range (&Server{}).buildRoutes() {
		out = append(out, Route{Name: r.name, Method: r.method, Who: r.who, Anon: r.anon, WholeStamp: r.wholeStamp})
	}
	return out
}
