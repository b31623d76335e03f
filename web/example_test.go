package web_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/proglog/proglog/web"
)

// The dashboard is mounted at "/" beside the RPC handlers; service.Config's
// Dashboard field does this for proglog serve.
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"))
	// Output: 200 text/html; charset=utf-8 no-cache
}
