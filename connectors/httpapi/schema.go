package httpapi

// JSON Schemas of the http type. Header names are RFC 9110 tokens; header
// and query values may not hold CR, LF or NUL.

const configSchema = `{
  "type": "object",
  "description": "A REST API reached at one base URL.",
  "properties": {
    "base_url": {
      "type": "string", "format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]+(/[^?#]*)?(\\?[^#]*)?$", "maxLength": 2048,
      "description": "http(s) URL every request is made under: its scheme and host:port are fixed, and request paths are appended to its path. No user info or fragment. Its host:port is the only destination the instance may reach."
    },
    "auth": {
      "type": "object",
      "description": "How the instance's credential is sent. Omit for an API that needs no credential.",
      "properties": {
        "style": {"enum": ["bearer", "header", "basic", "query"], "description": "bearer: Authorization: Bearer <token>; header: <header_name>: <value>; basic: HTTP Basic with username and password; query: ?<query_param>=<value>. The credential's kind must match."},
        "header_name": {"type": "string", "pattern": "^[A-Za-z0-9!#$%&'*+.^_|~-]{1,64}$", "description": "Header carrying the credential (style header), e.g. X-API-Key."},
        "query_param": {"type": "string", "pattern": "^[A-Za-z0-9_.~-]{1,64}$", "description": "Query parameter carrying the credential (style query), e.g. api_key."}
      },
      "required": ["style"],
      "additionalProperties": false,
      "allOf": [
        {"if": {"properties": {"style": {"const": "header"}}}, "then": {"required": ["header_name"]}},
        {"if": {"properties": {"style": {"const": "query"}}}, "then": {"required": ["query_param"]}}
      ]
    },
    "headers": {
      "type": "object", "maxProperties": 32,
      "description": "Static, non-secret headers sent with every request (e.g. Accept, X-Api-Version). The same header policy as a call's headers: not Authorization, Cookie, Proxy-*, hop-by-hop, routing or method-override headers; put secrets in the credential.",
      "propertyNames": {"pattern": "^[A-Za-z0-9!#$%&'*+.^_|~-]{1,64}$"},
      "additionalProperties": {"type": "string", "maxLength": 1024, "pattern": "^[^\\r\\n\\x00]*$"}
    },
    "allow_private_network": {"type": "boolean", "default": false, "description": "Allow base_url to resolve to loopback, private or link-local addresses (an on-premises API). Off by default."},
    "max_response_bytes": {"type": "integer", "minimum": 1024, "maximum": 8388608, "default": 1048576, "description": "Cap on the response body read. A larger JSON body fails with response_too_large; a larger text body is truncated (truncated: true)."}
  },
  "required": ["base_url"],
  "additionalProperties": false
}`

const inputProps = `
    "path": {"type": "string", "maxLength": 2048, "description": "Path under the base URL's path, e.g. \"users/42\" or \"/users/42\" (both land below the base path). Percent-encode reserved characters. No \"..\" or \".\" segments, no scheme, host, query or fragment."},
    "query": {
      "type": "object", "maxProperties": 64, "description": "Query parameters, one string value each. Not _method (a method override) or the instance's credential parameter.",
      "propertyNames": {"minLength": 1, "maxLength": 128},
      "additionalProperties": {"type": "string", "maxLength": 4096}
    },
    "headers": {
      "type": "object", "maxProperties": 32, "description": "Extra request headers. Not Authorization, Cookie, Proxy-*, Host or hop-by-hop headers, routing and client-identity headers (Forwarded, Via, X-Forwarded-*, X-Real-IP, X-Client-IP, True-Client-IP, X-Original-URL, X-Rewrite-URL, ...), method overrides (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override), the instance's credential header or headers its configuration sets.",
      "propertyNames": {"pattern": "^[A-Za-z0-9!#$%&'*+.^_|~-]{1,64}$"},
      "additionalProperties": {"type": "string", "maxLength": 4096, "pattern": "^[^\\r\\n\\x00]*$"}
    }`

const inputNoBody = `{
  "type": "object",
  "properties": {` + inputProps + `
  },
  "additionalProperties": false
}`

const inputWithBody = `{
  "type": "object",
  "properties": {` + inputProps + `,
    "body": {"description": "JSON request body (any JSON value), sent as application/json. At most 1 MiB encoded."}
  },
  "additionalProperties": false
}`

const outputSchema = `{
  "type": "object",
  "properties": {
    "status": {"type": "integer", "minimum": 100, "maximum": 599, "description": "HTTP status. 4xx other than 401 and 407 come back here, not as errors."},
    "headers": {
      "type": "object", "description": "A safe subset of the response headers (lower-case names).",
      "properties": {
        "content-type": {"type": "string"},
        "etag": {"type": "string"},
        "last-modified": {"type": "string"},
        "location": {"type": "string"},
        "retry-after": {"type": "string"}
      },
      "additionalProperties": false
    },
    "body": {"description": "Parsed JSON when the response is JSON, else the body as text (invalid UTF-8 replaced); null when empty."},
    "truncated": {"type": "boolean", "description": "True when a text body was cut at max_response_bytes."}
  },
  "required": ["status", "headers", "body", "truncated"],
  "additionalProperties": false
}`
