package web_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/proglog/proglog/internal/leaktest"
	"github.com/proglog/proglog/web"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, h http.Handler, method, target string, header http.Header) response {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, target, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, body}
}

// assets returns the asset paths index.html references.
func assets(t *testing.T, index []byte) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllSubmatch(index, -1) {
		out = append(out, string(m[1]))
	}
	if len(out) < 3 {
		t.Fatalf("index.html references %d assets (%q), want a script, a stylesheet and an icon", len(out), out)
	}
	return out
}

func TestHandler(t *testing.T) {
	h := web.Handler()
	index := do(t, h, http.MethodGet, "/", nil)
	if index.status != http.StatusOK {
		t.Fatalf("GET / = %d %s", index.status, index.body)
	}
	var script, style string
	for _, a := range assets(t, index.body) {
		switch {
		case strings.HasSuffix(a, ".js"):
			script = a
		case strings.HasSuffix(a, ".css"):
			style = a
		}
	}

	tests := []struct {
		name         string
		method, path string
		header       http.Header
		status       int
		contentType  string
		cacheControl string
		encoding     string
		bodyContains string
	}{
		{name: "root", method: "GET", path: "/", status: 200, contentType: "text/html; charset=utf-8", cacheControl: "no-cache", bodyContains: "<title>proglog</title>"},
		{name: "index.html", method: "GET", path: "/index.html", status: 200, contentType: "text/html; charset=utf-8", cacheControl: "no-cache", bodyContains: "<title>proglog</title>"},
		{name: "script", method: "GET", path: script, status: 200, contentType: "text/javascript; charset=utf-8", cacheControl: "public, max-age=31536000, immutable", bodyContains: "tail-list"},
		{name: "style", method: "GET", path: style, status: 200, contentType: "text/css; charset=utf-8", cacheControl: "public, max-age=31536000, immutable", bodyContains: ".vlist"},
		{name: "gzip script", method: "GET", path: script, header: http.Header{"Accept-Encoding": {"gzip, deflate, br"}}, status: 200, contentType: "text/javascript; charset=utf-8", cacheControl: "public, max-age=31536000, immutable", encoding: "gzip"},
		{name: "gzip refused", method: "GET", path: script, header: http.Header{"Accept-Encoding": {"gzip;q=0, *"}}, status: 200, contentType: "text/javascript; charset=utf-8", cacheControl: "public, max-age=31536000, immutable", bodyContains: "tail-list"},
		{name: "head", method: "HEAD", path: "/", status: 200, contentType: "text/html; charset=utf-8", cacheControl: "no-cache"},
		{name: "post", method: "POST", path: "/", status: 405},
		{name: "unknown path", method: "GET", path: "/nope", status: 404},
		{name: "directory", method: "GET", path: "/assets/", status: 404},
		{name: "no traversal", method: "GET", path: "/assets/../index.html", status: 404},
		{name: "source is not served", method: "GET", path: "/src/main.ts", status: 404},
		{name: "unhashed name", method: "GET", path: "/assets/main.js", status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, h, tt.method, tt.path, tt.header)
			if res.status != tt.status {
				t.Fatalf("%s %s = %d, want %d", tt.method, tt.path, res.status, tt.status)
			}
			// Security headers go on every response, errors included.
			for k, want := range map[string]string{
				"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
			} {
				if got := res.header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if tt.status == http.StatusMethodNotAllowed && res.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q", res.header.Get("Allow"))
			}
			if tt.status != http.StatusOK {
				return
			}
			if got := res.header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			if got := res.header.Get("Cache-Control"); got != tt.cacheControl {
				t.Errorf("Cache-Control = %q, want %q", got, tt.cacheControl)
			}
			if got := res.header.Get("Content-Encoding"); got != tt.encoding {
				t.Errorf("Content-Encoding = %q, want %q", got, tt.encoding)
			}
			if res.header.Get("ETag") == "" {
				t.Error("no ETag")
			}
			if tt.method == http.MethodHead && len(res.body) != 0 {
				t.Errorf("HEAD returned %d body bytes", len(res.body))
			}
			if tt.bodyContains != "" && !bytes.Contains(res.body, []byte(tt.bodyContains)) {
				t.Errorf("body does not contain %q", tt.bodyContains)
			}
		})
	}
}

func TestGzipMatchesIdentity(t *testing.T) {
	h := web.Handler()
	for _, a := range append(assets(t, do(t, h, "GET", "/", nil).body), "/") {
		t.Run(a, func(t *testing.T) {
			plain := do(t, h, "GET", a, nil)
			zipped := do(t, h, "GET", a, http.Header{"Accept-Encoding": {"gzip"}})
			if plain.status != 200 || zipped.status != 200 {
				t.Fatalf("status %d / %d", plain.status, zipped.status)
			}
			if zipped.header.Get("Content-Encoding") != "gzip" {
				if len(plain.body) >= 1024 && !strings.HasSuffix(a, ".svg") {
					t.Fatalf("%d-byte %s not compressed", len(plain.body), a)
				}
				return
			}
			if zipped.header.Get("Vary") != "Accept-Encoding" {
				t.Errorf("Vary = %q", zipped.header.Get("Vary"))
			}
			if zipped.header.Get("ETag") == plain.header.Get("ETag") {
				t.Error("gzip and identity share an ETag")
			}
			zr, err := gzip.NewReader(bytes.NewReader(zipped.body))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain.body) {
				t.Fatal("gzip body differs from identity body")
			}
		})
	}
}

func TestConditionalGet(t *testing.T) {
	h := web.Handler()
	for _, enc := range []string{"", "gzip"} {
		t.Run("encoding="+enc, func(t *testing.T) {
			first := do(t, h, "GET", "/", http.Header{"Accept-Encoding": {enc}})
			etag := first.header.Get("ETag")
			again := do(t, h, "GET", "/", http.Header{"Accept-Encoding": {enc}, "If-None-Match": {etag}})
			if again.status != http.StatusNotModified {
				t.Fatalf("If-None-Match %s = %d, want 304", etag, again.status)
			}
			if again.header.Get("Content-Security-Policy") == "" {
				t.Error("304 lacks the CSP")
			}
			other := do(t, h, "GET", "/", http.Header{"Accept-Encoding": {enc}, "If-None-Match": {`"stale"`}})
			if other.status != http.StatusOK {
				t.Fatalf("stale ETag = %d, want 200", other.status)
			}
		})
	}
}

// TestIndexObeysCSP checks index.html for what the CSP would block: inline
// scripts, inline styles, event-handler attributes and other origins.
func TestIndexObeysCSP(t *testing.T) {
	body := do(t, web.Handler(), "GET", "/", nil).body
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var scripts int
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		if n.Data == "style" {
			t.Error("inline <style> element")
		}
		attrs := map[string]string{}
		for _, a := range n.Attr {
			attrs[a.Key] = a.Val
			if a.Key == "style" {
				t.Errorf("<%s> has an inline style attribute", n.Data)
			}
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s> has an inline event handler %s", n.Data, a.Key)
			}
			if (a.Key == "src" || a.Key == "href") && !strings.HasPrefix(a.Val, "/assets/") {
				t.Errorf("<%s %s=%q> loads from outside /assets/", n.Data, a.Key, a.Val)
			}
		}
		if n.Data == "script" {
			scripts++
			if attrs["src"] == "" || n.FirstChild != nil {
				t.Error("inline <script>")
			}
		}
	}
	if scripts != 1 {
		t.Errorf("%d scripts, want 1", scripts)
	}
}

// TestEveryFileServed checks that every file of the bundle is reachable and
// nothing stale lingers beside the assets index.html uses.
func TestEveryFileServed(t *testing.T) {
	h := web.Handler()
	used := map[string]bool{}
	for _, a := range assets(t, do(t, h, "GET", "/", nil).body) {
		used[strings.TrimPrefix(a, "/assets/")] = true
	}
	entries, err := os.ReadDir("dist/assets")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !used[e.Name()] {
			t.Errorf("dist/assets/%s is not referenced by index.html (stale build?)", e.Name())
		}
		if res := do(t, h, "GET", "/assets/"+e.Name(), nil); res.status != 200 {
			t.Errorf("GET /assets/%s = %d", e.Name(), res.status)
		}
	}
}
