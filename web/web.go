// Package web serves proglog's dashboard: a static bundle that `make web`
// builds from web/src with esbuild into web/dist, committed and embedded in
// the binary so `go build` needs no Node.
//
// Assets under /assets/ carry a hash of their content in their names and
// are cached for a year; index.html is revalidated on every load (ETag), so
// a new build reaches browsers at once. Every response carries a strict
// Content-Security-Policy: the bundle has no inline script or style and
// talks only to its own origin.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// ContentSecurityPolicy is sent with every response of the dashboard.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
	assetsPrefix    = "/assets/"
	gzipMinBytes    = 1024
)

// contentTypes is fixed here rather than taken from the mime package, whose
// answers depend on the host's /etc/mime.types.
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".json":  "application/json",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".woff2": "font/woff2",
	".txt":   "text/plain; charset=utf-8",
}

var compressible = map[string]bool{".html": true, ".js": true, ".css": true, ".svg": true, ".json": true, ".txt": true}

// file is one embedded file, ready to serve.
type file struct {
	body, gz     []byte // gz is nil when compression does not pay
	etag, gzETag string
	contentType  string
	cacheControl string
}

// handler serves a fixed set of files; it is immutable after construction.
type handler struct {
	files map[string]*file // by URL path
}

// Handler returns the dashboard's handler. It serves GET and HEAD for "/",
// "/index.html" and "/assets/*", and 404 for anything else.
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err == nil {
		var h *handler
		if h, err = newHandler(sub); err == nil {
			return h
		}
	}
	// Only a broken build gets here; report it rather than crash the server.
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		setSecurityHeaders(w.Header())
		http.Error(w, "dashboard unavailable: "+err.Error(), http.StatusInternalServerError)
	})
}

func newHandler(fsys fs.FS) (*handler, error) {
	h := &handler{files: make(map[string]*file)}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		f, err := prepare(name, body)
		if err != nil {
			return err
		}
		h.files["/"+name] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: load bundle: %w", err)
	}
	index, ok := h.files["/index.html"]
	if !ok {
		return nil, fmt.Errorf("web: bundle has no index.html (run make web)")
	}
	h.files["/"] = index
	return h, nil
}

func prepare(name string, body []byte) (*file, error) {
	ext := path.Ext(name)
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:12])
	f := &file{
		body:         body,
		etag:         strconv.Quote(tag),
		gzETag:       strconv.Quote(tag + "-gz"),
		contentType:  contentTypes[ext],
		cacheControl: cacheRevalidate,
	}
	if f.contentType == "" {
		f.contentType = "application/octet-stream"
	}
	if strings.HasPrefix("/"+name, assetsPrefix) {
		f.cacheControl = cacheImmutable
	}
	if compressible[ext] && len(body) >= gzipMinBytes {
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return nil, fmt.Errorf("web: gzip %s: %w", name, err)
		}
		if _, err := zw.Write(body); err != nil {
			return nil, fmt.Errorf("web: gzip %s: %w", name, err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("web: gzip %s: %w", name, err)
		}
		if buf.Len() < len(body) {
			f.gz = buf.Bytes()
		}
	}
	return f, nil
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	setSecurityHeaders(hdr)
	f, ok := h.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("Cache-Control", f.cacheControl)
	body, etag := f.body, f.etag
	if f.gz != nil {
		hdr.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			body, etag = f.gz, f.gzETag
			hdr.Set("Content-Encoding", "gzip")
		}
	}
	hdr.Set("ETag", etag)
	// ServeContent answers If-None-Match with 304 and handles Range and HEAD.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether Accept-Encoding values allow gzip: an
// explicit "gzip" coding decides by its q-value; otherwise "*" does.
func acceptsGzip(values []string) bool {
	gzip, star := -1.0, -1.0
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "gzip", "x-gzip":
				gzip = max(gzip, quality(params))
			case "*":
				star = max(star, quality(params))
			}
		}
	}
	if gzip >= 0 {
		return gzip > 0
	}
	return star > 0
}

// quality reads the q parameter: 1 when absent, 0 when malformed.
func quality(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || q < 0 || q > 1 {
			return 0
		}
		return q
	}
	return 1
}
