package registration

import (
	"fmt"

	"github.com/stackbill/stackbill/internal/arm"
)

// The seed's error codes. Messages are the seed's "Details" text with the
// actual values filled in; statuses are ours (the seed defines none), chosen so
// that no validation error is a 409 or 5xx, which real SDK clients retry.
const (
	CodeRegistrationNotFound            = "RegistrationNotFound"
	CodeBadCustomerSubscriptionID       = "BadCustomerSubscriptionId"
	CodeInvalidCustomerSubscriptionID   = "InvalidCustomerSubscriptionId"
	CodeCustomerSubscriptionNotFound    = "CustomerSubscriptionNotFound"
	CodeUnauthorizedCspRegistration     = "UnauthorizedCspRegistration"
	CodeCustomerSubscriptionsNotAllowed = "CustomerSubscriptionsNotAllowed"
	CodeInvalidCSPSubscription          = "InvalidCSPSubscription"
	CodeMetadataResolverBadGateway      = "MetadataResolverBadGatewayError"
)

func errRegistrationNotFound(k Key) *arm.Error {
	return arm.Errorf(arm.NotFound, CodeRegistrationNotFound,
		"The provided registration was not found. Make sure the following information was provided correctly:\n"+
			"1. Subscription Identifier (value provided: %s),\n2. Resource Group (value provided: %s),\n3. Registration Name (value provided: %s).",
		k.SubscriptionID, k.ResourceGroup, k.Name)
}

func errBadCustomerSubscriptionID(customerSub, registrationName string) *arm.Error {
	return arm.Errorf(arm.Invalid, CodeBadCustomerSubscriptionID,
		"The provided %s and the %s Subscription Identifier are not owned by the same Microsoft Cloud Service Provider. "+
			"Check that the Customer Subscription Identifier is correct. If the problem persists, contact support.", customerSub, registrationName)
}

func errInvalidCustomerSubscriptionID(customerSub string) *arm.Error {
	return arm.Errorf(arm.Invalid, CodeInvalidCustomerSubscriptionID,
		"The '%s' is not valid. Make sure a valid Azure subscription is provided.", customerSub)
}

func errCustomerSubscriptionNotFound(customerSub, registrationName string) *arm.Error {
	return arm.Errorf(arm.NotFound, CodeCustomerSubscriptionNotFound,
		"%s was not found under %s. Make sure a valid Azure subscription is being used and that the Subscription Identifier was added to the registration using the PUT operation.",
		customerSub, registrationName)
}

func errUnauthorizedCspRegistration(registrationName string) *arm.Error {
	return arm.Errorf(arm.Denied, CodeUnauthorizedCspRegistration,
		"The provided %s is not approved to use multi-tenancy. Send an email to azstCSP@microsoft.com and include your registration name, resource group, and the subscription identifier used in the registration.",
		registrationName)
}

func errCustomerSubscriptionsNotAllowed() *arm.Error {
	return arm.Errorf(arm.Invalid, CodeCustomerSubscriptionsNotAllowed,
		"Customer Subscriptions operations are not supported for disconnected customers. In order to use this feature, re-register with Pay As You Use licensing.")
}

func errInvalidCSPSubscription(customerSub string) *arm.Error {
	return arm.Errorf(arm.Invalid, CodeInvalidCSPSubscription,
		"The provided %s is not a valid CSP subscription. Make sure a valid Azure subscription is provided.", customerSub)
}

func errMetadataResolverBadGateway() *arm.Error {
	return arm.Errorf(arm.Upstream, CodeMetadataResolverBadGateway,
		"One of the upstream servers returned an unexpected error. Try again later. If the problem persists, Contact support.")
}

func errInvalidToken(format string, args ...any) *arm.Error {
	return (&arm.Error{Kind: arm.Invalid, Code: "InvalidRegistrationToken",
		Message: "The registration token is not valid: " + fmt.Sprintf(format, args...) +
			" Generate a new token on the stack (stackbill stack registration-token, or Get-AzsRegistrationToken) and retry."}).WithTarget("properties.registrationToken")
}

func errPrecondition(what, etag string) *arm.Error {
	return arm.Errorf(arm.Precondition, "PreconditionFailed",
		"The %s has changed: its current etag is %s, which does not match the If-Match header. Read it again and retry.", what, etag)
}

// Guidance is the seed's "Comments" column: what an error usually means and
// what to do about it. The CLI and the portal show it under the message.
func Guidance(code string) string {
	return guidance[code]
}

var guidance = map[string]string{
	CodeRegistrationNotFound: "This error usually occurs when the information pointing to the initial registration is not correct. " +
		"If you need to verify the resource group and name of your registration, list all registrations (stackbill registration list). " +
		"If you find more than one registration resource, look at the CloudDeploymentID (cloudId) in the properties, and select the registration whose CloudDeploymentID matches that of your cloud " +
		"(stackbill stack info on the stack, or Get-AzureStackStampInformation on Azure Stack Hub).",
	CodeBadCustomerSubscriptionID: "This error occurs when the customer subscription is a CSP subscription, but it rolls up to a CSP partner different from the one to which the subscription used in the initial registration rolls up. " +
		"This check is made to prevent a situation that would result in billing a CSP partner who is not responsible for the Azure Stack used.",
	CodeInvalidCustomerSubscriptionID: "The customer subscription identifier must be the GUID of an Azure subscription created for the customer in the CSP offer (Partner Center). Check it for typos.",
	CodeCustomerSubscriptionNotFound: "This error occurs when trying to verify that a tenant has been added to a subscription, and the customer subscription is not found to be associated with the registration. " +
		"The customer has not been added to the registration, or the subscription ID has been written incorrectly.",
	CodeUnauthorizedCspRegistration: "A registration needs to be approved for multi-tenancy before you can start adding tenants to it. " +
		"In stackbill the commerce operator approves it: stackbill registration approve --subscription S --resource-group RG --name N.",
	CodeCustomerSubscriptionsNotAllowed: "The registration to which you are trying to add tenants is a Capacity registration, that is, when the registration was created, the parameter BillingModel Capacity was used. " +
		"Only Pay as you use registrations are allowed to add tenants. You need to re-register using the parameter BillingModel PayAsYouUse.",
	CodeInvalidCSPSubscription:     "This is most likely to be due to the customer subscription being mistyped.",
	CodeMetadataResolverBadGateway: "The partner directory that registration rules consult could not be reached or gave an unexpected answer. Nothing was changed; retry later.",
}
