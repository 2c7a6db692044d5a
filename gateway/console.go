package gateway

import (
	"embed"
	"io/fs"
	"net/http"
	"path"

	sdkweb "github.com/onair-dev/onair/sdk/web"
)

// console is the web console served at /: a page built on the browser SDK
// to join a room, publish the camera and play every stream.
//
//go:embed console
var console embed.FS

// consoleCSP keeps the console to its own scripts and the gateway it came
// from; media may come from the camera (mediastream:) and WebRTC.
const consoleCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// serveStatic mounts the console at / (and its files under /console/) and
// the browser SDK at /sdk/onair-express.js, all open (they are public files)
// and embedded in the binary.
func (g *Gateway) serveStatic() {
	files, _ := fs.Sub(console, "console")
	consoleFiles := http.FileServerFS(files)
	g.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		staticHeaders(w, "index.html")
		w.Header().Set("Content-Security-Policy", consoleCSP)
		http.ServeFileFS(w, r, files, "index.html")
	})
	g.mux.Handle("GET /console/", http.StripPrefix("/console", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" || r.URL.Path == "/index.html" {
			http.Redirect(w, r, "/", http.StatusFound)
			return
		}
		staticHeaders(w, r.URL.Path)
		consoleFiles.ServeHTTP(w, r)
	})))
	for _, name := range []string{"onair-express.js", "onair-express.d.ts"} {
		g.mux.HandleFunc("GET /sdk/"+name, func(w http.ResponseWriter, r *http.Request) {
			staticHeaders(w, name)
			http.ServeFileFS(w, r, sdkweb.Files, name)
		})
	}
}

// staticHeaders sets the type of an embedded file and asks browsers to check
// for a newer one each time (the files change with the binary).
func staticHeaders(w http.ResponseWriter, name string) {
	h := w.Header()
	switch path.Ext(name) {
	case ".js":
		h.Set("Content-Type", "text/javascript; charset=utf-8")
	case ".ts":
		h.Set("Content-Type", "text/plain; charset=utf-8")
	case ".css":
		h.Set("Content-Type", "text/css; charset=utf-8")
	case ".html":
		h.Set("Content-Type", "text/html; charset=utf-8")
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
}
