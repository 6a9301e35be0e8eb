package mcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// Instance resources: an added MCP server's resources are connec's own MCP
// resources, for whoever may call the instance's resource operations
// (connectors.Operation.Resources): resources/list and
// resources/templates/list page through the caller's instances, one
// governed list call a page; resources/read is the instance's read
// operation's call, translated by the transport (translateResource) into a
// read of one hidden resource whose handler answers for the resource the
// context names. A resource's URI is the server's own where the caller's
// instance tools are served bare and only one instance serves resources;
// otherwise it is qualified by the instance, as its tools are:
// connec://<instance-tools-prefix>/<the server's URI, percent-encoded>.

// instanceResource is the hidden resource every instance resource is read
// as.
const instanceResource = "connec:instance-resource"

// resourceScheme starts a qualified resource URI.
const resourceScheme = "connec://"

// resourceTarget is what a translated read reads: the server's URI, and the
// one the caller asked by.
type resourceTarget struct{ upstream, asked string }

type resourceTargetKey struct{}

// resourceCursor is connec's cursor over the caller's instances: the
// instance's index and the server's own cursor.
type resourceCursor struct {
	I int    `json:"i"`
	C string `json:"c,omitempty"`
}

// resourceTools are the caller's instance tools of one MCP role
// (connectors.Operation.MCP), sorted by name.
func (s *Server) resourceTools(ctx context.Context, role string) ([]core.InstanceTool, error) {
	tools, err := s.svc.InstanceTools(ctx)
	if err != nil {
		return nil, err
	}
	var out []core.InstanceTool
	for _, t := range tools {
		if t.Op.MCP == role {
			out = append(out, t)
		}
	}
	return out, nil
}

// resourcePrefix is t's instance part of its name ("" when served bare).
func resourcePrefix(t core.InstanceTool) string {
	_, opPart, _ := strings.Cut(t.Op.Name, ".")
	return strings.TrimSuffix(strings.TrimSuffix(t.Name, opPart), ".")
}

// bareResources reports whether the caller's resources keep the server's
// own URIs: one instance serves them, and its tools are served bare.
func bareResources(tools []core.InstanceTool) bool {
	return len(tools) == 1 && resourcePrefix(tools[0]) == ""
}

// exposeURI is the URI the caller sees for the server's uri.
func exposeURI(t core.InstanceTool, bare bool, uri string) string {
	if bare {
		return uri
	}
	return resourceScheme + resourcePrefix(t) + "/" + url.PathEscape(uri)
}

var templateExpr = regexp.MustCompile(`\{[^}]*\}`)

// exposeTemplate is exposeURI for a URI template: its literal parts are
// encoded, its expressions kept (a client expands them; reading the URI
// decodes the whole).
func exposeTemplate(t core.InstanceTool, bare bool, tmpl string) string {
	if bare {
		return tmpl
	}
	var b strings.Builder
	last := 0
	for _, m := range templateExpr.FindAllStringIndex(tmpl, -1) {
		b.WriteString(url.PathEscape(tmpl[last:m[0]]))
		b.WriteString(tmpl[m[0]:m[1]])
		last = m[1]
	}
	b.WriteString(url.PathEscape(tmpl[last:]))
	return resourceScheme + resourcePrefix(t) + "/" + b.String()
}

// callInstanceOp runs t's operation with args as the caller (the same
// decision, audit row and run as the instance tool's call) and returns its
// output.
func (s *Server) callInstanceOp(ctx context.Context, t core.InstanceTool, args any) (json.RawMessage, error) {
	raw, _ := json.Marshal(args)
	entry, input := t.Call(raw, nil)
	tool, ok := s.tools[s.names.wireName(entry)]
	if !ok {
		return nil, fault.New(fault.NotFound, "resource not found")
	}
	ctx = callctx.WithRequestID(core.AsInstanceTool(ctx, t), callctx.NewRequestID())
	v, err := tool.Entry.Call(ctx, s.svc, input)
	if err != nil {
		return nil, err
	}
	r, ok := v.(core.InvokeResult)
	if !ok || len(r.Output) == 0 {
		return nil, fault.New(fault.Permanent, "the server's answer is not one")
	}
	return json.RawMessage(r.Output), nil
}

// pageInstances pages through the caller's instances of one role from the
// request's cursor: each page is one instance's page (instances that fail
// or hold nothing are passed over); add takes an instance's answer and
// says how many items it held and the server's next cursor.
func (s *Server) pageInstances(ctx context.Context, role string, cursor mcp.Cursor,
	add func(t core.InstanceTool, bare bool, out json.RawMessage) (n int, next string, err error)) mcp.Cursor {
	tools, err := s.resourceTools(ctx, role)
	if err != nil {
		visibilityFailed(ctx)
		return ""
	}
	var cur resourceCursor
	if cursor != "" {
		b, _ := base64.StdEncoding.DecodeString(string(cursor))
		if json.Unmarshal(b, &cur) != nil || cur.I < 0 {
			return "" // not connec's: nothing more
		}
	}
	bare := bareResources(tools)
	encode := func(c resourceCursor) mcp.Cursor {
		b, _ := json.Marshal(c)
		return mcp.Cursor(base64.StdEncoding.EncodeToString(b))
	}
	for i := cur.I; i < len(tools); i++ {
		args := map[string]any{}
		if i == cur.I && cur.C != "" {
			args["cursor"] = cur.C
		}
		out, err := s.callInstanceOp(ctx, tools[i], args)
		if err != nil {
			s.log.DebugContext(ctx, "an instance's resources cannot be listed", "tool", tools[i].Name, "err", err)
			continue
		}
		n, next, err := add(tools[i], bare, out)
		if err != nil {
			continue
		}
		if next != "" {
			return encode(resourceCursor{I: i, C: next})
		}
		if n > 0 && i+1 < len(tools) {
			return encode(resourceCursor{I: i + 1})
		}
	}
	return ""
}

// appendInstanceResources answers resources/list with the caller's
// instances' resources, and hides the hidden one.
func (s *Server) appendInstanceResources(ctx context.Context, _ any, req *mcp.ListResourcesRequest, res *mcp.ListResourcesResult) {
	if res == nil {
		return
	}
	res.Resources = slices.DeleteFunc(res.Resources, func(r mcp.Resource) bool { return r.URI == instanceResource })
	res.NextCursor = s.pageInstances(ctx, "resources.list", req.Params.Cursor, func(t core.InstanceTool, bare bool, out json.RawMessage) (int, string, error) {
		var page mcp.ListResourcesResult
		if err := json.Unmarshal(out, &page); err != nil {
			return 0, "", err
		}
		for _, r := range page.Resources {
			r.URI = exposeURI(t, bare, r.URI)
			res.Resources = append(res.Resources, r)
		}
		return len(page.Resources), string(page.NextCursor), nil
	})
}

// appendInstanceTemplates answers resources/templates/list with the
// caller's instances' resource templates.
func (s *Server) appendInstanceTemplates(ctx context.Context, _ any, req *mcp.ListResourceTemplatesRequest, res *mcp.ListResourceTemplatesResult) {
	if res == nil {
		return
	}
	res.NextCursor = s.pageInstances(ctx, "resources.templates", req.Params.Cursor, func(t core.InstanceTool, bare bool, out json.RawMessage) (int, string, error) {
		var page struct {
			ResourceTemplates []map[string]any `json:"resourceTemplates"`
			NextCursor        string           `json:"nextCursor"`
		}
		if err := json.Unmarshal(out, &page); err != nil {
			return 0, "", err
		}
		for _, raw := range page.ResourceTemplates {
			tmpl, _ := raw["uriTemplate"].(string)
			raw["uriTemplate"] = exposeTemplate(t, bare, tmpl)
			b, _ := json.Marshal(raw)
			var rt mcp.ResourceTemplate
			if json.Unmarshal(b, &rt) == nil {
				res.ResourceTemplates = append(res.ResourceTemplates, rt)
			}
		}
		return len(page.ResourceTemplates), page.NextCursor, nil
	})
}

// translateResource turns a resources/read of one of the caller's instance
// resources (body, a JSON-RPC request) into a read of the hidden resource,
// and returns the context it then runs in (naming the instance's read tool
// and the resource) and the URI it was asked by. ok is false for any other
// message, which goes on unchanged (mcp-go answers "not found").
func (s *Server) translateResource(ctx context.Context, body []byte) (_ []byte, _ context.Context, asked string, ok bool) {
	m, asked, ok := s.requestOf(body, mcp.MethodResourcesRead, "uri")
	if !ok || asked == instanceResource {
		return nil, nil, "", false
	}
	tools, err := s.resourceTools(ctx, "resources.read")
	if err != nil {
		return nil, nil, "", false
	}
	m.Params["uri"], _ = json.Marshal(instanceResource)
	out, err := json.Marshal(m)
	if err != nil {
		return nil, nil, "", false
	}
	t, upstream, ok := resolveURI(tools, asked)
	if !ok {
		// No instance of the caller's serves it: answered "not found",
		// naming the URI, by the hidden resource's handler.
		return out, context.WithValue(ctx, resourceTargetKey{}, resourceTarget{asked: asked}), asked, true
	}
	ctx = context.WithValue(core.AsInstanceTool(ctx, t), resourceTargetKey{}, resourceTarget{upstream: upstream, asked: asked})
	return out, ctx, asked, true
}

// resourceNotFound answers a read of uri, a resource no instance of the
// caller's serves, as the caller's revision says: -32602 from 2026-07-28,
// -32002 before, with the URI in data.
func resourceNotFound(ctx context.Context, uri string) error {
	code := mcp.RESOURCE_NOT_FOUND
	if mcp.IsModernProtocol(server.RequestProtocolVersion(ctx)) {
		code = mcp.INVALID_PARAMS
	}
	return answerWith(ctx, rpcAnswer{Code: code, Message: "resource not found: " + uri, Data: map[string]string{"uri": uri}})
}

// resolveURI finds which of tools (one role's, one per instance) a URI or
// URI template as the caller sees it belongs to, and the server's own.
func resolveURI(tools []core.InstanceTool, uri string) (core.InstanceTool, string, bool) {
	rest, qualified := strings.CutPrefix(uri, resourceScheme)
	if !qualified {
		if bareResources(tools) {
			return tools[0], uri, true
		}
		return core.InstanceTool{}, "", false
	}
	prefix, enc, found := strings.Cut(rest, "/")
	i := slices.IndexFunc(tools, func(t core.InstanceTool) bool { return resourcePrefix(t) == prefix })
	if !found || i < 0 {
		return core.InstanceTool{}, "", false
	}
	upstream, err := url.PathUnescape(enc)
	if err != nil || upstream == "" {
		return core.InstanceTool{}, "", false
	}
	return tools[i], upstream, true
}

// readInstanceResource answers a translated resources/read: the instance's
// read operation's call, the contents' URIs as the caller sees them. A
// refusal or failure is the request's error, in the caller's terms.
func (s *Server) readInstanceResource(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	t, ok := core.InstanceToolOf(ctx)
	target, tok := ctx.Value(resourceTargetKey{}).(resourceTarget)
	if !tok {
		target.asked = req.Params.URI
	}
	if !ok || t.Op.MCP != "resources.read" {
		// No governed read happened: audited as refused (auditRefusedCall).
		return nil, fmt.Errorf("%w: %w", server.ErrResourceNotFound, resourceNotFound(ctx, target.asked))
	}
	task, err := metaTaskContext(req.Params.Meta)
	if err != nil {
		return nil, publicError(err)
	}
	out, err := s.callInstanceOp(callctx.WithTask(ctx, task), t, map[string]any{"uri": target.upstream})
	if fe := fault.As(err); err != nil && fe.Type == fault.InvalidArgument && fe.Details["field"] == "uri" {
		return nil, resourceNotFound(ctx, target.asked) // the server has no such resource
	}
	if err != nil {
		return nil, publicError(err)
	}
	res, err := mcp.ParseReadResourceResult(&out)
	if err != nil {
		return nil, publicError(fault.New(fault.Permanent, "the resource's answer is not one"))
	}
	bare := !strings.HasPrefix(target.asked, resourceScheme)
	for i, c := range res.Contents {
		switch c := c.(type) {
		case mcp.TextResourceContents:
			c.URI = exposeContentURI(t, bare, target, c.URI)
			res.Contents[i] = c
		case mcp.BlobResourceContents:
			c.URI = exposeContentURI(t, bare, target, c.URI)
			res.Contents[i] = c
		}
	}
	return res.Contents, nil
}

func exposeContentURI(t core.InstanceTool, bare bool, target resourceTarget, uri string) string {
	if uri == target.upstream {
		return target.asked
	}
	return exposeURI(t, bare, uri)
}

// publicError is err as the caller may see it.
func publicError(err error) error {
	pub := fault.PublicOf(err)
	return errors.New(string(pub.Type) + ": " + pub.Message)
}
