// Package redact removes secrets from a wire.Transaction before it leaves
// the sensor, leaving fingerprints the analyzer can count and tell apart.
//
// A fingerprint is "fp:" and 16 lower-case hex digits: the first 8 bytes
// of HMAC-SHA256(sensor.redact_key, secret). It depends only on the key and
// the secret, never on where the secret appeared, so the same API key sent
// in a header, a query parameter or a body field fingerprints the same.
// Without sensor.redact_key a random per-process key is used (fingerprints
// then change on restart; Ephemeral reports it so the caller can warn).
//
// # Header values (request and response headers and trailers)
//
//	Authorization, Proxy-Authorization:
//	    "<Scheme> fp:<hex>"            scheme as sent: Bearer, Basic, Digest, AWS4-HMAC-SHA256 ...
//	    "fp:<hex>"                     when the value has no scheme
//	    "<Scheme> fp:<hex> jwt:<h>.<c>" when the credential is a JWT and
//	                                   sensor.keep_jwt_claims is on
//	Cookie:      "name=fp:<hex>; other=fp:<hex>"   names and order kept,
//	             a piece without "=" becomes "fp:<hex>"
//	Set-Cookie:  "name=fp:<hex>; Path=/; HttpOnly" attributes kept as sent
//	API-key headers (X-API-Key, Api-Key, X-Auth-Token, X-Access-Token,
//	X-Amz-Security-Token, X-CSRF-Token, X-XSRF-Token and
//	sensor.redact_headers): "fp:<hex>", with " jwt:<h>.<c>" for a JWT.
//
// The secret fingerprinted is the credential after the scheme (the token,
// the base64 of Basic, the Digest parameters), and the cookie value
// without its name. <h> and <c> are the JWT's header and claims segments
// exactly as sent (base64url without padding); the signature is never
// kept. A cookie value that is a JWT becomes "name=fp:<hex> jwt:<h>.<c>".
// A value is taken for a JWT when it has three dot-separated segments whose
// first decodes to a JSON object naming "alg" and whose second decodes to
// a JSON object; segments over 8 KiB are not kept.
//
// # Query parameters
//
// In Query, and in the query of URLs in Referer and Location headers, the
// values of access_token, api_key, apikey, key, token, id_token,
// refresh_token, client_secret, password, secret, signature, sig,
// x-amz-signature, x-amz-security-token and sensor.redact_query (names
// compared without case) become "fp:<hex>" over the percent-decoded
// value: "a=1&token=fp:0123456789abcdef".
//
// # Bodies (sensor.mask_bodies)
//
// Text bodies (JSON, XML, text, form, JavaScript, or no type and no NUL in
// the first 512 bytes) are scanned, and each match is replaced by a typed
// placeholder:
//
//	card number   [card:<brand>:<last4>:fp:<hex>]  13-19 digits (single spaces or
//	              dashes between groups allowed), a known brand prefix (visa,
//	              mastercard, amex, discover, jcb, diners, unionpay) and a valid Luhn check
//	US SSN        [ssn:fp:<hex>]                   ddd-dd-dddd with a valid area/group/serial
//	email         [email:fp:<hex>@<domain>]        the domain is kept
//	secret field  [secret:fp:<hex>]                the string value of a JSON field
//	              or form field whose name (without case, "-" and "_") contains
//	              password, passwd or secret, or ends in token, apikey or privatekey
//	private key   [private_key:fp:<hex>]           a PEM "-----BEGIN ... PRIVATE KEY-----" block
//
// Fingerprints of body values are over the value as it appears (digits
// only for cards). A card number written as a bare JSON number is
// replaced by a quoted placeholder so the body stays valid JSON.
//
// Apply also sets wire.FlagCleartextCredentials when the request carried
// an Authorization, Proxy-Authorization, API-key header, secret query
// parameter or secret body field: the parser only ever sees cleartext.
package redact
