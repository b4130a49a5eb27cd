package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's OpenAPI 3 document, kept in the repository next to
// the handlers, with request and response schemas for every operation.
// Tests check that it lists every route and that real answers of a server
// on real stores, and the API types' JSON, conform to its schemas.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
