//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package client

import "os"

// lockFile does nothing where flock(2) is not available: there, keeping
// two FileStores off one file is up to the program.
func lockFile(f *os.File) error { return nil }
