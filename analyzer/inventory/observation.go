package inventory

import (
	"time"

	"github.com/apiscout/apiscout/wire"
)

// Observation is what the inventory learned from one transaction, handed
// on to baselines and detectors so they need not classify it again.
type Observation struct {
	Tx *wire.Transaction
	// Time is the packet time of the transaction (its request start).
	Time time.Time

	Service string
	Method  string
	// Path is the endpoint template, e.g. /users/{userId}.
	Path           string
	Classification Classification
	// NewEndpoint is true on the first transaction of an endpoint.
	NewEndpoint bool
	// PathParams maps template parameter names to this call's values
	// (object ids, for enumeration detection).
	PathParams map[string]string

	// Identity is the client identity: the credential fingerprint when
	// there is one, else the client address.
	Identity string
	// Principal is the JWT subject (or similar) when known; Roles its
	// role or scope claims.
	Principal string
	Roles     []string
	// Auth is the authentication kind of this call: none, basic, bearer,
	// jwt, apikey, cookie.
	Auth string
	// AuthFailed is true when the response says the credentials were
	// refused (401, or 403 on a login-like endpoint).
	AuthFailed bool
	// LoginLike marks endpoints that take credentials (login, token,
	// signin, auth, password).
	LoginLike bool

	// Sensitive data classes found in the request and the response.
	RequestSensitive  []string
	ResponseSensitive []string
	// NewFields lists body fields (JSON pointers) never seen before on
	// this endpoint, with their types: "/user/email:string".
	NewFields []string
	// ResponseIDs are object ids found in the response body, so that
	// enumeration of ids never returned to an identity can be told apart.
	ResponseIDs []string
}
