package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's OpenAPI 3 document, kept in the repository next to
// the handlers; a test checks that it lists every route.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
