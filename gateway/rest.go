package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/metrics"
)

// route is one REST route: a catalog entry's REST binding, or one of the
// gateway's own (the OpenAPI document). Its path is both the http.ServeMux
// pattern and the OpenAPI path template.
type route struct {
	method, path string
	// entry is the catalog entry the route serves; nil for the gateway's
	// own routes.
	entry *core.Entry
	// hide: the URL names one resource, so policy_denied answers 404.
	hide bool
	// public: no token needed.
	public bool
	serve  func(w http.ResponseWriter, r *http.Request, rt *route) error
}

// restRoutes are the catalog's REST routes and the OpenAPI document.
func (g *Gateway) restRoutes() []*route {
	routes := []*route{{method: "GET", path: "/v1/openapi.json", public: true, serve: g.openAPI}}
	for _, e := range core.Catalog() {
		if e.Route == nil || !e.On(core.OnREST) {
			continue
		}
		routes = append(routes, &route{method: e.Route.Method, path: e.Route.Path, entry: e, hide: e.Route.Hide, serve: g.call})
	}
	return routes
}

// restHandler authenticates (unless public), runs the route, and answers an
// error as problem+json with the route's policy_denied status.
func (g *Gateway) restHandler(rt *route) http.Handler {
	name := rt.method + " " + rt.path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() { metrics.ObserveHTTP(name, r.Method, sw.code(), time.Since(start)) }()
		if rt.public {
			r = r.WithContext(requestContext(sw, r))
		} else {
			ctx, ok := g.authenticate(sw, r, TransportREST)
			if !ok {
				return
			}
			r = r.WithContext(ctx)
		}
		if err := rt.serve(sw, r, rt); err != nil {
			if sw.status != 0 {
				// A streamed response failed half-way: abort the connection
				// so that the client sees a truncated body, not a clean end.
				g.log.WarnContext(r.Context(), "response failed after it started", "route", name, "err", err)
				panic(http.ErrAbortHandler)
			}
			if fault.As(err).Type == fault.Internal {
				g.log.ErrorContext(r.Context(), "request failed", "route", name, "err", err)
			}
			writeProblemFor(sw, r, err, rt.hide)
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fault.Wrap(fault.Internal, err, "could not encode the response")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

// call serves a catalog entry: the request is bound to the entry's input
// (path parameters, query parameters and body, each named after an input
// field), the use case runs, and its output is the response.
func (g *Gateway) call(w http.ResponseWriter, r *http.Request, rt *route) error {
	e := rt.entry
	in, format, err := bind(w, r, e)
	if err != nil {
		return e.Refuse(r.Context(), g.svc, err)
	}
	if format == "jsonl" {
		return g.stream(w, r, e, in)
	}
	out, err := e.Call(r.Context(), g.svc, mustJSON(in))
	if err != nil {
		return err
	}
	status := http.StatusOK
	switch {
	case e.Route.Status != nil:
		status = e.Route.Status(out)
	case e.Route.Created:
		status = http.StatusCreated
	}
	if e.Route.Location != "" {
		w.Header().Set("Location", location(e.Route.Location, out))
	}
	return writeJSON(w, status, out)
}

// location fills a path template's {field}s from the output's fields.
func location(template string, out any) string {
	var fields map[string]any
	_ = json.Unmarshal(mustJSON(out), &fields)
	return pathParam.ReplaceAllStringFunc(template, func(m string) string {
		s, _ := fields[m[1:len(m)-1]].(string)
		return url.PathEscape(s)
	})
}

// jsonlPage is the page size a JSON Lines export asks for.
const jsonlPage = 200

// stream writes every item from the input's cursor on as JSON Lines, page
// after page; with a limit, at most that many. The first page is fetched
// before anything is written, so a refusal is still a problem.
func (g *Gateway) stream(w http.ResponseWriter, r *http.Request, e *core.Entry, in map[string]json.RawMessage) error {
	total := 0
	if raw, ok := in["limit"]; ok {
		_ = json.Unmarshal(raw, &total)
	}
	in["limit"] = mustJSON(jsonlPage)
	if total > 0 && total < jsonlPage {
		in["limit"] = mustJSON(total)
	}
	next := func() (core.Pager, error) {
		out, err := e.Call(r.Context(), g.svc, mustJSON(in))
		if err != nil {
			return nil, err
		}
		return out.(core.Pager), nil
	}
	page, err := next()
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/jsonl")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	rc := http.NewResponseController(w)
	written := 0
	for {
		for _, item := range page.Items() {
			if total > 0 && written == total {
				return nil
			}
			if err := enc.Encode(item); err != nil {
				return err
			}
			written++
		}
		_ = rc.Flush()
		if page.Next() == "" || (total > 0 && written >= total) || r.Context().Err() != nil {
			return r.Context().Err()
		}
		in["cursor"] = mustJSON(page.Next())
		if page, err = next(); err != nil {
			return err
		}
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
