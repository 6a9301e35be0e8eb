package gateway_test

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	js "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/connec/connec/gateway"
)

const specURL = "mem://connec/openapi.json"

var (
	specMu       sync.Mutex
	specCompiler *js.Compiler
	specSchemas  = map[string]*js.Schema{}
)

// spec is the checked-in OpenAPI document, decoded.
type spec struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

type specOp struct {
	OperationID string `json:"operationId"`
	RequestBody *struct {
		Required bool `json:"required"`
		Content  map[string]struct {
			Schema   json.RawMessage `json:"schema"`
			Examples map[string]struct {
				Value json.RawMessage `json:"value"`
			} `json:"examples"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]json.RawMessage `json:"responses"`
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

func loadSpec(t *testing.T) spec {
	t.Helper()
	var s spec
	if err := json.Unmarshal(gateway.OpenAPI(), &s); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return s
}

// operations lists the documented method+path pairs.
func (s spec) operations(t *testing.T) map[string]specOp {
	t.Helper()
	out := map[string]specOp{}
	for path, item := range s.Paths {
		for m, raw := range item {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			var op specOp
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", m, path, err)
			}
			out[strings.ToUpper(m)+" "+path] = op
		}
	}
	return out
}

// schemaAt compiles the schema at a JSON pointer inside the document (its
// $refs resolve against the whole document).
func schemaAt(t *testing.T, pointer string) *js.Schema {
	t.Helper()
	specMu.Lock()
	defer specMu.Unlock()
	if s, ok := specSchemas[pointer]; ok {
		return s
	}
	if specCompiler == nil {
		doc, err := js.UnmarshalJSON(bytes.NewReader(gateway.OpenAPI()))
		if err != nil {
			t.Fatal(err)
		}
		c := js.NewCompiler()
		c.DefaultDraft(js.Draft2020)
		c.AssertFormat()
		if err := c.AddResource(specURL, doc); err != nil {
			t.Fatal(err)
		}
		specCompiler = c
	}
	s, err := specCompiler.Compile(specURL + "#" + pointer)
	if err != nil {
		t.Fatalf("compile %s: %v", pointer, err)
	}
	specSchemas[pointer] = s
	return s
}

// validate checks a JSON document against a components schema.
func validate(t *testing.T, schema string, doc []byte) {
	t.Helper()
	validateAt(t, "/components/schemas/"+schema, doc)
}

// validateAt checks a JSON document against the schema at a pointer.
func validateAt(t *testing.T, pointer string, doc []byte) {
	t.Helper()
	v, err := js.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("%s: not JSON: %s", pointer, doc)
	}
	if err := schemaAt(t, pointer).Validate(v); err != nil {
		t.Fatalf("%s does not match schema %s: %v", doc, pointer, err)
	}
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// The document is the checked-in file, well formed, and in step with the
// routes: every route documented, every documented operation routed.
func testSpecMatchesRoutes(t *testing.T, gw *gateway.Gateway) {
	s := loadSpec(t)
	if s.OpenAPI != "3.1.0" {
		t.Fatalf("openapi version %q", s.OpenAPI)
	}
	onDisk, err := os.ReadFile("openapi.json")
	if err != nil || !bytes.Equal(onDisk, gateway.OpenAPI()) {
		t.Fatalf("embedded document differs from openapi.json (%v)", err)
	}
	ops := s.operations(t)
	var routes []string
	for _, r := range gw.Routes() {
		key := r.Method + " " + r.Path
		routes = append(routes, key)
		if _, ok := ops[key]; !ok {
			t.Errorf("route %s is not documented in openapi.json", key)
		}
	}
	ids := map[string]string{}
	for key, op := range ops {
		if !slices.Contains(routes, key) {
			t.Errorf("openapi.json documents %s, which no route serves", key)
		}
		if op.OperationID == "" || ids[op.OperationID] != "" {
			t.Errorf("%s: missing or duplicate operationId %q", key, op.OperationID)
		}
		ids[op.OperationID] = key
		if len(op.Responses) == 0 {
			t.Errorf("%s documents no response", key)
		}
	}
	if len(routes) != len(ops) {
		t.Errorf("%d routes, %d documented operations", len(routes), len(ops))
	}
}

// Every request example validates against its schema, and the schemas are
// as strict as the decoder: an unknown field does not validate.
func testRequestExamples(t *testing.T) {
	s := loadSpec(t)
	ops := s.operations(t)
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	checked := 0
	for _, key := range keys {
		op := ops[key]
		if op.RequestBody == nil {
			continue
		}
		method, path, _ := strings.Cut(key, " ")
		media, ok := op.RequestBody.Content["application/json"]
		if !ok {
			t.Errorf("%s: request body is not application/json", key)
			continue
		}
		if len(media.Examples) == 0 {
			t.Errorf("%s: request body has no example", key)
		}
		pointer := "/paths/" + escapePointer(path) + "/" + strings.ToLower(method) + "/requestBody/content/application~1json/schema"
		sch := schemaAt(t, pointer)
		for name, ex := range media.Examples {
			v, err := js.UnmarshalJSON(bytes.NewReader(ex.Value))
			if err != nil {
				t.Fatalf("%s example %s: %v", key, name, err)
			}
			if err := sch.Validate(v); err != nil {
				t.Errorf("%s example %s does not match its schema: %v", key, name, err)
			}
			var obj map[string]any
			if json.Unmarshal(ex.Value, &obj) == nil {
				obj["no_such_field"] = true
				if sch.Validate(obj) == nil {
					t.Errorf("%s: schema accepts an unknown field, the API does not", key)
				}
			}
			checked++
		}
	}
	if checked < 8 {
		t.Fatalf("only %d request examples checked", checked)
	}
}

// exampleBody returns the first request example of an operation, if any.
func exampleBody(op specOp) []byte {
	if op.RequestBody == nil {
		return nil
	}
	for _, ex := range op.RequestBody.Content["application/json"].Examples {
		return ex.Value
	}
	return nil
}

// validateResponse checks a response against what the document says the
// operation answers with that status: a 2xx JSON body against its schema,
// an error against Problem. A status the operation does not document fails.
func validateResponse(t *testing.T, key string, r response) {
	t.Helper()
	op := loadSpec(t).operations(t)[key]
	status := strconv.Itoa(r.Status)
	if _, ok := op.Responses[status]; !ok {
		t.Errorf("%s answered %d, which it does not document: %s", key, r.Status, r.Body)
		return
	}
	if r.Status >= 300 {
		validate(t, "Problem", r.Body)
		return
	}
	method, path, _ := strings.Cut(key, " ")
	pointer := "/paths/" + escapePointer(path) + "/" + strings.ToLower(method) + "/responses/" + status + "/content/application~1json/schema"
	v, err := js.UnmarshalJSON(bytes.NewReader(r.Body))
	if err != nil {
		t.Errorf("%s: response is not JSON: %s", key, r.Body)
		return
	}
	if err := schemaAt(t, pointer).Validate(v); err != nil {
		t.Errorf("%s: %d response does not match its schema: %v\n%s", key, r.Status, err, r.Body)
	}
}
