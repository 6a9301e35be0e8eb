package bench

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"

	"github.com/google/uuid"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	cmcp "github.com/connec/connec/mcp"
)

// RoleBareSDK is the bare server built on the official go-sdk instead of
// mcp-go: the other candidate for connec's MCP engine (see sdk.go).
const RoleBareSDK = "bare-gosdk"

// NewBareSDKServer is NewBareServer on the official go-sdk: library
// defaults and the same tool — connec's connector.op.invoke as its
// inventory declares it (name, description, input and output schemas,
// annotations) — answering with the same result, built the same way
// (structured content and the same JSON once more as text).
func NewBareSDKServer() *sdk.Server {
	var tool cmcp.Tool
	for _, t := range cmcp.Inventory() {
		if t.Def.Name == BareTool {
			tool = t
		}
	}
	if tool.Entry == nil {
		panic("bench: connec has no tool " + BareTool)
	}
	a := tool.Def.Annotations
	def := &sdk.Tool{
		Name:         tool.Def.Name,
		Description:  tool.Def.Description,
		InputSchema:  tool.Def.RawInputSchema,
		OutputSchema: tool.Def.RawOutputSchema,
		Annotations: &sdk.ToolAnnotations{Title: a.Title, ReadOnlyHint: deref(a.ReadOnlyHint), OpenWorldHint: a.OpenWorldHint,
			DestructiveHint: a.DestructiveHint, IdempotentHint: deref(a.IdempotentHint)},
	}
	s := sdk.NewServer(&sdk.Implementation{Name: "bare", Version: "1.0.0"}, nil)
	s.AddTool(def, func(_ context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		var in bareInput
		if err := json.Unmarshal(req.Params.Arguments, &in); err != nil {
			return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: err.Error()}}}, nil
		}
		v := bareResult(in)
		text, _ := json.Marshal(v)
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(text)}}, StructuredContent: v}, nil
	})
	return s
}

func deref(b *bool) bool { return b != nil && *b }

// bareInput is what both bare servers read of the call's arguments.
type bareInput struct {
	InstanceID string `json:"instance_id"`
	Operation  string `json:"operation"`
	Arguments  struct {
		Message string `json:"message"`
	} `json:"arguments"`
}

type bareOutput struct {
	CredentialKind string `json:"credential_kind"`
	Message        string `json:"message"`
	Operation      string `json:"operation"`
}

type bareRunResult struct {
	RunID      string     `json:"run_id"`
	Status     string     `json:"status"`
	InstanceID string     `json:"instance_id"`
	Operation  string     `json:"operation"`
	Output     bareOutput `json:"output"`
	DurationMS int64      `json:"duration_ms"`
}

type bareEnvelope struct {
	Status string        `json:"status"`
	Result bareRunResult `json:"result"`
}

// bareResult is the answer both bare servers give: the shape and size of
// connec's echo.read answer.
func bareResult(in bareInput) bareEnvelope {
	return bareEnvelope{Status: "ok", Result: bareRunResult{RunID: uuid.NewString(), Status: "succeeded", InstanceID: in.InstanceID,
		Operation: in.Operation, Output: bareOutput{CredentialKind: "bearer", Message: in.Arguments.Message, Operation: in.Operation}}}
}

// BareSDKHandler serves srv at /mcp (streamable HTTP, library defaults)
// and GET /healthz. The go-sdk serves 2026-07-28 only from a stateless
// handler and sessions (older revisions' initialize) only from a stateful
// one, so requests naming 2026-07-28 or later in MCP-Protocol-Version go to
// the first and the rest to the second, as connec, which serves both on
// one endpoint, would have to.
func BareSDKHandler(srv *sdk.Server) http.Handler {
	get := func(*http.Request) *sdk.Server { return srv }
	stateless := sdk.NewStreamableHTTPHandler(get, &sdk.StreamableHTTPOptions{Stateless: true})
	sessions := sdk.NewStreamableHTTPHandler(get, nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("MCP-Protocol-Version"); v >= revModern {
			stateless.ServeHTTP(w, r)
			return
		}
		sessions.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return mux
}

func runBareSDK(ctx context.Context, args []string) error {
	addr, stdio, err := transportArgs(args)
	if err != nil {
		return err
	}
	srv := NewBareSDKServer()
	if stdio {
		err := srv.Run(ctx, &sdk.StdioTransport{})
		if errors.Is(err, context.Canceled) || errors.Is(err, os.ErrClosed) {
			return nil
		}
		return err
	}
	return serveHTTP(ctx, addr, BareSDKHandler(srv))
}
