package gateway

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the API's OpenAPI 3.1 document, checked in beside this file
// and served as is. The tests hold it and the routes to each other.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI document the gateway serves.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

func (g *Gateway) openAPI(w http.ResponseWriter, r *http.Request, rt *route) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Access-Control-Allow-Origin", "*")
	_, err := w.Write(openAPIDoc)
	return err
}
