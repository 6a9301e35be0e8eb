package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// BenchmarkInstanceTools measures what instance tools cost as a caller's
// instances grow (3 tools each: echo.read, echo.send, echo.later): the
// first tools/list page, every page, and a call of an instance tool
// against the same call as connector.op.invoke in the same run
// (2026-07-28 over streamable HTTP, through connec's whole HTTP handler).
func BenchmarkInstanceTools(b *testing.B) {
	for _, instances := range []int{1, 34, 3334} {
		c := newCallBench(b)
		owner, err := c.app.Identity.Authenticate(context.Background(), c.token)
		if err != nil {
			b.Fatal(err)
		}
		if extra := instances - 1; extra > 0 {
			if _, err := c.app.Pool.Exec(context.Background(), `INSERT INTO connector_instances (type, handle, display_name, owner, state, created_by)
SELECT 'echo', 'i-' || g, 'i ' || g, $1, 'enabled', $1 FROM generate_series(1, $2) g`, string(owner.Subject), extra); err != nil {
				b.Fatal(err)
			}
		}
		h := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/list"}}
		list := func(cursor string) (int, string) {
			params := "{" + benchMeta + "}"
			if cursor != "" {
				params = "{" + benchMeta + `,"cursor":` + strconv.Quote(cursor) + "}"
			}
			rec := c.post([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":`+params+`}`), h)
			var m struct {
				Result struct {
					Tools      []json.RawMessage `json:"tools"`
					NextCursor string            `json:"nextCursor"`
				} `json:"result"`
			}
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil || len(m.Result.Tools) == 0 {
				b.Fatalf("tools/list: %d %.300s", rec.Code, rec.Body)
			}
			return len(m.Result.Tools), m.Result.NextCursor
		}
		tools := instances * 3
		b.Run(fmt.Sprintf("list-first-page/tools=%d", tools), func(b *testing.B) {
			for b.Loop() {
				list("")
			}
		})
		b.Run(fmt.Sprintf("list-all-pages/tools=%d", tools), func(b *testing.B) {
			for b.Loop() {
				n, cur := list("")
				for cur != "" {
					var k int
					k, cur = list(cur)
					n += k
				}
				if n < tools {
					b.Fatalf("%d tools listed, want at least %d", n, tools)
				}
			}
		})
		for _, tc := range []struct{ name, tool, params string }{
			{"call-invoke", "connector.op.invoke", `"arguments":{"arguments":{"message":"hello"},"instance_id":"` + c.instanceID + `","operation":"echo.read"},"name":"connector.op.invoke"`},
			{"call-instance-tool", "bench.echo.read", `"arguments":{"message":"hello"},"name":"bench.echo.read"`},
		} {
			b.Run(fmt.Sprintf("%s/tools=%d", tc.name, tools), func(b *testing.B) {
				hc := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}}
				hc.Set("Mcp-Name", tc.tool)
				call := func(id int) *httptest.ResponseRecorder {
					return c.post([]byte(`{"jsonrpc":"2.0","id":`+strconv.Itoa(id)+`,"method":"tools/call","params":{`+benchMeta+","+tc.params+`}}`), hc)
				}
				check := func(rec *httptest.ResponseRecorder) {
					var m struct {
						Result struct {
							IsError bool `json:"isError"`
						} `json:"result"`
					}
					if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil || m.Result.IsError {
						b.Fatalf("call: %d %.300s", rec.Code, rec.Body)
					}
				}
				for i := range 20 {
					check(call(i + 1))
				}
				cpu := processCPU()
				i := 100
				for b.Loop() {
					i++
					check(call(i))
				}
				b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}
