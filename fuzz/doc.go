// Package fuzz holds the native Go fuzz targets of the packet codec. It has
// no API; run the targets with go test -fuzz (see README.md).
package fuzz
