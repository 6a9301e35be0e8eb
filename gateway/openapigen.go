package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/connec/connec/core"
)

// GenerateOpenAPI builds the REST API's OpenAPI 3.1 document from the
// operation catalog: every route, its parameters, body and responses with
// the schemas the catalog generates from the Go types. The checked-in
// openapi.json is this document (go generate ./... writes it; a test keeps
// it fresh).
func GenerateOpenAPI() ([]byte, error) {
	doc := oaDoc{
		OpenAPI:           "3.1.0",
		JSONSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
		Info:              map[string]string{"title": "connec User API Gateway", "version": "1.0.0", "description": apiDescription},
		Servers:           []map[string]string{{"url": "/"}},
		Security:          []map[string][]string{{"bearerAuth": {}}},
		Paths:             map[string]map[string]any{},
		Components: oaComponents{
			SecuritySchemes: map[string]any{"bearerAuth": map[string]string{"type": "http", "scheme": "bearer",
				"description": "An API token from `connec token create`."}},
			Responses: problemResponses(),
			Schemas:   map[string]json.RawMessage{},
		},
	}
	problem, err := core.SchemaOf(reflect.TypeFor[Problem]())
	if err != nil {
		return nil, err
	}
	doc.Components.Schemas["Problem"] = problem
	doc.Paths["/v1/openapi.json"] = map[string]any{"get": map[string]any{
		"operationId": "openAPI", "tags": []string{"meta"}, "summary": "This document", "security": []any{},
		"description": "The OpenAPI document of this API (no token needed).",
		"responses": map[string]any{"200": map[string]any{"description": "The document.",
			"content": map[string]any{"application/json": map[string]any{"schema": map[string]string{"type": "object"}}}}},
	}}
	tags := []string{"meta"}
	for _, e := range core.Catalog() {
		if e.Route == nil || !e.On(core.OnREST) {
			continue
		}
		tag := tagOf(e.Name)
		if !slices.Contains(tags, tag) {
			tags = append(tags, tag)
		}
		op, err := operation(e, tag, doc.Components.Schemas)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name, err)
		}
		item := doc.Paths[e.Route.Path]
		if item == nil {
			item = map[string]any{}
			doc.Paths[e.Route.Path] = item
		}
		item[strings.ToLower(e.Route.Method)] = op
	}
	for _, t := range tags {
		doc.Tags = append(doc.Tags, map[string]string{"name": t})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

const apiDescription = "REST API for people and user interfaces managing connec: connector types, connector instances, their credentials, policy rules, run history and the audit trail.\n\n" +
	"Every operation is one of connec's catalog (its name is in each description; MCP serves the same operations as tools): policy is decided and an audit row written by the core, with transport `rest`. Authenticate with `Authorization: Bearer <token>` (`connec token create`).\n\n" +
	"Path parameters, query parameters and the body together are the operation's input: request bodies are JSON objects of at most 1 MiB, decoded strictly against the input schema (an unknown field is a 400); unknown query parameters are refused too. Errors are RFC 9457 `application/problem+json` whose `type` is `https://connec.dev/errors/<error_type>` and whose `error_type` is the stable error type.\n\n" +
	"Status codes: invalid_argument/validation_error 400 (413 body too large, 415 not JSON), unauthenticated 401, not_found 404, conflict and credential_* 409, quota_exceeded 429 (Retry-After; also for an address with too many failed authentications in the current interval), unavailable/transient 503, timeout 504, permanent/response_too_large 502, internal 500. policy_denied is 404 on URLs that name one resource (a resource the caller may not see answers exactly like a missing one) and 403 on collection and creation URLs.\n\n" +
	"Also served, outside this document: `/ui` (web UI), `/readyz` and `/healthz`; `/metrics` on its own listener."

type oaDoc struct {
	OpenAPI           string                    `json:"openapi"`
	JSONSchemaDialect string                    `json:"jsonSchemaDialect"`
	Info              map[string]string         `json:"info"`
	Servers           []map[string]string       `json:"servers"`
	Security          []map[string][]string     `json:"security"`
	Tags              []map[string]string       `json:"tags"`
	Paths             map[string]map[string]any `json:"paths"`
	Components        oaComponents              `json:"components"`
}

type oaComponents struct {
	SecuritySchemes map[string]any             `json:"securitySchemes"`
	Responses       map[string]any             `json:"responses"`
	Schemas         map[string]json.RawMessage `json:"schemas"`
}

// tagOf groups operations by their noun: connector.instance.install →
// instances.
func tagOf(name string) string {
	switch parts := strings.Split(name, "."); parts[1] {
	case "instance":
		return "instances"
	case "credential":
		return "credentials"
	case "run", "audit":
		return "history"
	case "token":
		return "tokens"
	default:
		return parts[1]
	}
}

// operationID is the entry's name without its namespace, in camel case:
// connector.instance.install → instanceInstall.
func operationID(name string) string {
	parts := strings.Split(name, ".")[1:]
	for i := 1; i < len(parts); i++ {
		r := []rune(parts[i])
		r[0] = unicode.ToUpper(r[0])
		parts[i] = string(r)
	}
	return strings.Join(parts, "")
}

// objectSchema is the part of an input schema the document splits.
type objectSchema struct {
	Properties map[string]json.RawMessage `json:"properties"`
	Required   []string                   `json:"required"`
	rest       map[string]json.RawMessage
}

func parseObject(raw json.RawMessage) (objectSchema, error) {
	var o objectSchema
	if err := json.Unmarshal(raw, &o.rest); err != nil {
		return o, err
	}
	return o, json.Unmarshal(raw, &o)
}

func operation(e *core.Entry, tag string, schemas map[string]json.RawMessage) (map[string]any, error) {
	rt := e.Route
	in, err := parseObject(e.InSchema)
	if err != nil {
		return nil, err
	}
	var params []any
	bound := map[string]bool{} // in the URL: not in the body
	inQuery := map[string]bool{}
	param := func(name, where string) error {
		prop, ok := in.Properties[name]
		if !ok {
			return fmt.Errorf("%s parameter %s is not an input field", where, name)
		}
		var p map[string]json.RawMessage
		if err := json.Unmarshal(prop, &p); err != nil {
			return err
		}
		desc := p["description"]
		delete(p, "description")
		param := map[string]any{"name": name, "in": where, "schema": p,
			"required": where == "path" || slices.Contains(in.Required, name)}
		if desc != nil {
			param["description"] = desc
		}
		params = append(params, param)
		if where == "path" {
			bound[name] = true
		} else {
			inQuery[name] = true
		}
		return nil
	}
	for _, m := range pathParam.FindAllString(rt.Path, -1) {
		if err := param(m[1:len(m)-1], "path"); err != nil {
			return nil, err
		}
	}
	for _, q := range rt.Query {
		if err := param(q, "query"); err != nil {
			return nil, err
		}
	}
	if rt.Pages {
		params = append(params, map[string]any{"name": "format", "in": "query", "required": false,
			"schema":      map[string]any{"type": "string", "enum": []string{"json", "jsonl"}},
			"description": "json (default): one page; jsonl: every item from the cursor on, one JSON object per line (limit caps how many)."})
	}
	op := map[string]any{
		"operationId": operationID(e.Name),
		"tags":        []string{tag},
		"summary":     e.Hints.Title,
		"description": e.Description + "\n\nOperation `" + e.Name + "`; policy checks " + e.Checks + ".",
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	if rt.Body != core.NoBody {
		body := map[string]json.RawMessage{}
		for k, v := range in.rest {
			body[k] = v
		}
		props := map[string]json.RawMessage{}
		for k, v := range in.Properties {
			if !bound[k] {
				props[k] = v
			}
		}
		body["properties"] = mustJSON(props)
		var required []string
		for _, r := range in.Required {
			if !bound[r] && !inQuery[r] {
				required = append(required, r)
			}
		}
		if len(required) > 0 {
			body["required"] = mustJSON(required)
		} else {
			delete(body, "required")
		}
		name := upperFirst(operationID(e.Name)) + "Request"
		schemas[name] = mustJSON(body)
		op["requestBody"] = map[string]any{"required": rt.Body == core.RequiredBody, "content": map[string]any{"application/json": map[string]any{
			"schema":   map[string]string{"$ref": "#/components/schemas/" + name},
			"examples": map[string]any{"example": map[string]any{"value": json.RawMessage(rt.Example)}},
		}}}
	}
	outName := e.Out.Name()
	if prev, ok := schemas[outName]; ok && !bytes.Equal(prev, e.OutSchema) {
		return nil, fmt.Errorf("two output types are named %s", outName)
	}
	schemas[outName] = e.OutSchema
	success := map[string]any{"description": e.Hints.Title + ": the result.", "content": map[string]any{
		"application/json": map[string]any{"schema": map[string]string{"$ref": "#/components/schemas/" + outName}}}}
	if rt.Pages {
		success["content"].(map[string]any)["application/jsonl"] = map[string]any{"schema": map[string]string{"type": "string"}}
	}
	if rt.Location != "" {
		success["headers"] = map[string]any{"Location": map[string]any{"description": "URL of what was created.", "schema": map[string]string{"type": "string"}}}
	}
	responses := map[string]any{}
	switch {
	case rt.Status != nil:
		responses["200"] = success
		responses["201"] = success
	case rt.Created:
		responses["201"] = success
	default:
		responses["200"] = success
	}
	for _, code := range errorStatuses(rt) {
		responses[strconv.Itoa(code)] = map[string]string{"$ref": "#/components/responses/" + problemNames[code]}
	}
	op["responses"] = responses
	return op, nil
}

// errorStatuses are the problem statuses a route may answer with.
func errorStatuses(rt *core.Route) []int {
	codes := []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound}
	if !rt.Hide {
		codes = append(codes, http.StatusForbidden)
	}
	if rt.Method != http.MethodGet {
		codes = append(codes, http.StatusConflict)
	}
	if rt.Body != core.NoBody {
		codes = append(codes, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
	}
	codes = append(codes, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable)
	slices.Sort(codes)
	return codes
}

var problemNames = map[int]string{
	http.StatusBadRequest: "BadRequest", http.StatusUnauthorized: "Unauthorized", http.StatusForbidden: "Forbidden",
	http.StatusNotFound: "NotFound", http.StatusConflict: "Conflict", http.StatusRequestEntityTooLarge: "TooLarge",
	http.StatusUnsupportedMediaType: "UnsupportedMediaType", http.StatusTooManyRequests: "TooManyRequests",
	http.StatusInternalServerError: "Internal", http.StatusServiceUnavailable: "Unavailable",
}

func problemResponses() map[string]any {
	problem := map[string]any{"application/problem+json": map[string]any{"schema": map[string]string{"$ref": "#/components/schemas/Problem"}}}
	resp := func(description string, headers map[string]any) map[string]any {
		r := map[string]any{"description": description, "content": problem}
		if headers != nil {
			r["headers"] = headers
		}
		return r
	}
	return map[string]any{
		"BadRequest":           resp("invalid_argument or validation_error: a malformed body (unknown fields are refused), query or value; nothing changed.", nil),
		"Unauthorized":         resp("unauthenticated: no valid bearer token.", map[string]any{"WWW-Authenticate": map[string]any{"schema": map[string]string{"type": "string"}}}),
		"Forbidden":            resp("policy_denied on a collection or creation URL.", nil),
		"NotFound":             resp("not_found, or policy_denied on a URL naming one resource: a resource the caller may not see answers exactly like a missing one.", nil),
		"Conflict":             resp("conflict, or credential_revoked / _disabled / _expired / _missing.", nil),
		"TooLarge":             resp("The request body is over 1 MiB (error_type invalid_argument).", nil),
		"UnsupportedMediaType": resp("The request body is not application/json (error_type invalid_argument).", nil),
		"TooManyRequests": resp("quota_exceeded: over a rate limit, or too many failed authentications from this address in the current interval (refused before the token is checked; a token this server already knows still gets in).",
			map[string]any{"Retry-After": map[string]any{"schema": map[string]string{"type": "integer"}, "description": "Seconds to wait."}}),
		"Unavailable": resp("unavailable (or transient): try again.", nil),
		"Internal":    resp("internal.", nil),
	}
}

func upperFirst(s string) string {
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}
