package mcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/yosida95/uritemplate/v3"

	cmcp "github.com/connec/connec/mcp"
)

// An added MCP server's resources are connec's own MCP resources, for
// whoever may call the instance's resource operations: with two instances
// of one server, each resource and template is qualified by its instance
// (connec://<instance>/<the server's URI, encoded>), resources/list pages
// through the instances, resources/read (of a listed URI or one a template
// makes) reads from the right instance under policy and audit, its
// contents redacted of the credential and named as the caller asked, on
// every transport; a resource the server does not have is a clear error; a
// caller without the right sees and reads nothing; every answer keeps to
// the spec's published schema.
func TestUpstreamResourcesAreConnecResources(t *testing.T) {
	const secret = "resource-bearer-3f9a7c2e5d"
	up := server.NewMCPServer("upstream", "1", server.WithResourceCapabilities(false, false), server.WithToolCapabilities(false),
		server.WithCompletions(), server.WithResourceCompletionProvider(itemIDs{}))
	up.AddResource(mcp.NewResource("test://notes/readme", "readme", mcp.WithMIMEType("text/plain")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "text/plain", Text: "read me (key " + secret + ")"}}, nil
		})
	up.AddResource(mcp.NewResource("test://pixel.png", "pixel", mcp.WithMIMEType("image/png")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.BlobResourceContents{URI: req.Params.URI, MIMEType: "image/png", Blob: "iVBORw0KGgo="}}, nil
		})
	up.AddResourceTemplate(mcp.NewResourceTemplate("test://items/{id}", "item"),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, Text: "item " + strings.TrimPrefix(req.Params.URI, "test://items/")}}, nil
		})
	e, tok := governedUpstream(t, up, secret, "one", "two")
	_, bobTok := e.user("bob", false)
	qualified := func(handle, uri string) string { return "connec://" + handle + ".up/" + url.PathEscape(uri) }

	for _, tr := range []string{cmcp.TransportStreamable, cmcp.TransportStdio} {
		c := e.client(tr, tok)
		var uris []string
		req := mcp.ListResourcesRequest{}
		for pages := 0; ; pages++ {
			list, err := c.ListResourcesByPage(context.Background(), req)
			if err != nil || pages > 5 {
				t.Fatalf("%s: resources/list: %v (page %d)", tr, err, pages)
			}
			for _, r := range list.Resources {
				uris = append(uris, r.URI)
			}
			if list.NextCursor == "" {
				if pages != 1 {
					t.Fatalf("%s: %d pages, want one per instance", tr, pages+1)
				}
				break
			}
			req.Params.Cursor = list.NextCursor
		}
		want := []string{qualified("one", "test://notes/readme"), qualified("one", "test://pixel.png"),
			qualified("two", "test://notes/readme"), qualified("two", "test://pixel.png")}
		slices.Sort(uris) // (each server lists in its own order)
		if strings.Join(uris, " ") != strings.Join(want, " ") {
			t.Fatalf("%s: resources:\n got %q\nwant %q", tr, uris, want)
		}
		read := func(uri string) (*mcp.ReadResourceResult, error) {
			req := mcp.ReadResourceRequest{}
			req.Params.URI = uri
			return c.ReadResource(context.Background(), req)
		}
		got, err := read(want[2])
		if err != nil {
			t.Fatalf("%s: read: %v", tr, err)
		}
		text, ok := got.Contents[0].(mcp.TextResourceContents)
		if len(got.Contents) != 1 || !ok || text.URI != want[2] || !strings.Contains(text.Text, "read me") ||
			strings.Contains(text.Text, secret) || !strings.Contains(text.Text, "[REDACTED]") {
			t.Fatalf("%s: the readme: %s", tr, mustJSON(t, got))
		}
		got, err = read(want[1])
		if blob, ok := got.Contents[0].(mcp.BlobResourceContents); err != nil || !ok || blob.Blob != "iVBORw0KGgo=" || blob.MIMEType != "image/png" {
			t.Fatalf("%s: the pixel: %v %s", tr, err, mustJSON(t, got))
		}
		templates, err := c.ListResourceTemplates(context.Background(), mcp.ListResourceTemplatesRequest{})
		if err != nil || len(templates.ResourceTemplates) != 2 {
			t.Fatalf("%s: templates: %v %s", tr, err, mustJSON(t, templates))
		}
		tmpl := templates.ResourceTemplates[0].URITemplate
		uri, err := tmpl.Expand(uritemplate.Values{"id": uritemplate.String("42")})
		if err != nil || uri != qualified("one", "test://items/42") {
			t.Fatalf("%s: the template %s expands to %q (%v)", tr, mustJSON(t, templates.ResourceTemplates[0]), uri, err)
		}
		// The server's completions of the template's variables come
		// through, for the template as the caller sees it.
		creq := mcp.CompleteRequest{}
		creq.Params.Ref = mcp.ResourceReference{Type: "ref/resource", URI: tmpl.Raw()}
		creq.Params.Argument = mcp.CompleteArgument{Name: "id", Value: "4"}
		if got, err := c.Complete(context.Background(), creq); err != nil || strings.Join(got.Completion.Values, ",") != "41,42" {
			t.Fatalf("%s: completion of %s: %v %s", tr, tmpl.Raw(), err, mustJSON(t, got))
		}
		if got, err := read(uri); err != nil || mustJSON(t, got.Contents) != `[{"uri":"`+uri+`","text":"item 42"}]` {
			t.Fatalf("%s: an item: %v %s", tr, err, mustJSON(t, got))
		}
		if _, err := read(qualified("one", "test://nothing")); err == nil || !strings.Contains(err.Error(), "resource not found: "+qualified("one", "test://nothing")) {
			t.Fatalf("%s: a resource the server does not have: %v", tr, err)
		}
	}
	if n := e.count(`SELECT count(DISTINCT request_id) FROM audit_events WHERE tool IN ('one.up.resources.read', 'two.up.resources.read') AND decision = 'allow'`); n != 8 {
		t.Fatalf("audited reads: %d, want 8", n)
	}

	// Every answer keeps to the spec's published schema, at each revision.
	for _, rev := range revisions {
		r := e.openRaw(tok, rev)
		for method, params := range map[string]map[string]any{
			"resources/list":           nil,
			"resources/templates/list": nil,
			"resources/read":           {"uri": qualified("two", "test://pixel.png")},
		} {
			status, _, body := r.send(method, params)
			var msg struct {
				Result json.RawMessage `json:"result"`
			}
			if status != http.StatusOK || json.Unmarshal(body, &msg) != nil || len(msg.Result) == 0 {
				t.Fatalf("%s %s: %d %s", rev, method, status, body)
			}
			schema := map[string]string{"resources/list": "ListResourcesResult", "resources/templates/list": "ListResourceTemplatesResult",
				"resources/read": "ReadResourceResult"}[method]
			if err := conforms(t, rev, schema, msg.Result); err != nil {
				t.Fatalf("%s %s breaks the %s schema: %v\n%s", rev, method, schema, err, msg.Result)
			}
		}
	}

	// Bob may call no resource operation: he sees and reads nothing.
	b := e.client(cmcp.TransportStreamable, bobTok)
	if list, err := b.ListResources(context.Background(), mcp.ListResourcesRequest{}); err != nil || len(list.Resources) != 0 {
		t.Fatalf("bob's resources: %v %s", err, mustJSON(t, list))
	}
	for _, uri := range []string{qualified("one", "test://notes/readme"), "connec:instance-resource"} {
		req := mcp.ReadResourceRequest{}
		req.Params.URI = uri
		if _, err := b.ReadResource(context.Background(), req); err == nil {
			t.Fatalf("bob read %s", uri)
		}
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE action = 'resource.read' AND decision = 'deny'`); n != 2 {
		t.Fatalf("audited refused reads: %d, want 2", n)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE strpos(to_jsonb(audit_events)::text, $1) > 0`, secret); n != 0 {
		t.Fatal("the credential is in an audit row")
	}
}

// itemIDs completes the id of test://items/{id} (for the upstream server
// of these tests).
type itemIDs struct{}

func (itemIDs) CompleteResourceArgument(_ context.Context, uri string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	out := []string{}
	for _, id := range []string{"41", "42", "7"} {
		if uri == "test://items/{id}" && arg.Name == "id" && strings.HasPrefix(id, arg.Value) {
			out = append(out, id)
		}
	}
	return &mcp.Completion{Values: out}, nil
}
