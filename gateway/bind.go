package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/jsontext"
)

// pathParam matches a {name} in a route's path.
var pathParam = regexp.MustCompile(`\{[a-z_]+\}`)

// bind reads a request into a catalog entry's input, as one JSON object
// whose members come from the path parameters, the query parameters the
// route names and the body (each named after an input field; a name given
// twice is refused). The entry's own decoder then checks it against the
// input schema. format is the ?format= of a paged route.
func bind(w http.ResponseWriter, r *http.Request, e *core.Entry) (in map[string]json.RawMessage, format string, err error) {
	in = map[string]json.RawMessage{}
	if e.Route.Body != core.NoBody {
		if in, err = readBody(w, r, e.Route.Body == core.OptionalBody); err != nil {
			return nil, "", err
		}
	}
	props := inputProperties(e)
	allowed := e.Route.Query
	if e.Route.Pages {
		allowed = append(slices.Clip(allowed), "format")
	}
	for name, vals := range r.URL.Query() {
		switch {
		case !slices.Contains(allowed, name):
			return nil, "", fault.Invalid(name, "unknown query parameter %q", name)
		case len(vals) > 1:
			return nil, "", fault.Invalid(name, "query parameter %q is given more than once", name)
		case jsontext.HasNUL(vals[0]):
			return nil, "", fault.Invalid(name, "query parameter %s must not contain NUL characters", name)
		case vals[0] == "":
			continue // an empty parameter filters nothing
		case name == "format":
			if format = vals[0]; format != "json" && format != "jsonl" {
				return nil, "", fault.Invalid("format", "format must be json or jsonl")
			}
			continue
		}
		if _, dup := in[name]; dup {
			return nil, "", fault.Invalid(name, "%s is given both in the query and in the body", name)
		}
		v, err := queryValue(name, vals[0], props[name])
		if err != nil {
			return nil, "", err
		}
		in[name] = v
	}
	for _, m := range pathParam.FindAllString(e.Route.Path, -1) {
		name := m[1 : len(m)-1]
		if _, dup := in[name]; dup {
			return nil, "", fault.Invalid(name, "%s is given both in the URL and in the body", name)
		}
		in[name] = mustJSON(r.PathValue(name))
	}
	return in, format, nil
}

// property is the part of an input property's schema query values need.
type property struct {
	Type   string `json:"type"`
	Format string `json:"format"`
}

func inputProperties(e *core.Entry) map[string]property {
	var s struct {
		Properties map[string]property `json:"properties"`
	}
	_ = json.Unmarshal(e.InSchema, &s)
	return s.Properties
}

// queryValue is a query parameter as the JSON value its field takes.
func queryValue(name, v string, p property) (json.RawMessage, error) {
	switch p.Type {
	case "boolean":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fault.Invalid(name, "query parameter %s must be true or false", name)
		}
		return mustJSON(b), nil
	case "integer":
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fault.Invalid(name, "query parameter %s must be an integer", name)
		}
		return mustJSON(n), nil
	}
	if p.Format == "date-time" {
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			return nil, fault.Invalid(name, "query parameter %s must be an RFC 3339 date-time", name)
		}
	}
	return mustJSON(v), nil
}

// readBody reads a JSON object body: at most 1 MiB (413 beyond), JSON media
// type (415 otherwise), one object, no NUL. An empty body is allowed only
// when optional.
func readBody(w http.ResponseWriter, r *http.Request, optional bool) (map[string]json.RawMessage, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, withStatus(http.StatusUnsupportedMediaType, fault.Invalid("", "the request body must be application/json"))
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, withStatus(http.StatusRequestEntityTooLarge, fault.Invalid("", "the request body is larger than %d bytes", maxBody))
		}
		return nil, fault.Invalid("", "the request body could not be read")
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		if optional {
			return map[string]json.RawMessage{}, nil
		}
		return nil, fault.Invalid("", "a JSON object request body is required")
	}
	if data[0] != '{' {
		return nil, fault.Invalid("", "the request body must be a JSON object")
	}
	if path, ok := jsontext.NULAt(data); ok {
		return nil, fault.Invalid(path, "%s must not contain NUL characters (\\u0000)", path)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var in map[string]json.RawMessage
	if err := dec.Decode(&in); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fault.Invalid("", "the request body is not valid JSON (at byte %d)", se.Offset)
		}
		return nil, fault.Invalid("", "the request body is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fault.Invalid("", "the request body must be a single JSON object")
	}
	if in == nil {
		in = map[string]json.RawMessage{}
	}
	return in, nil
}
