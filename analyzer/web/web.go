// Package web holds the web UI: plain HTML, CSS and JavaScript embedded in
// the binary, with no build step. The UI reads everything from the REST
// API (package api), which pages, filters and sorts on the server, so the
// browser never holds more than one page of a large inventory.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// FS returns the UI's files: index.html, login.html and assets/.
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time; it exists
	}
	return sub
}
