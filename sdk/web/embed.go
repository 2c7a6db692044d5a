// Package web holds OnAir's browser SDK, onair-express.js with its type
// declarations, so that the gateway serves the very files of this directory
// (at /sdk/onair-express.js) from the binary. The SDK itself is JavaScript;
// see README.md beside this file.
package web

import "embed"

// Files holds onair-express.js and onair-express.d.ts.
//
//go:embed onair-express.js onair-express.d.ts
var Files embed.FS
