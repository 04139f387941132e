//go:build !linux

package sinks

import "golang.org/x/sys/unix"

// openat2Beneath needs Linux's openat2: elsewhere the walk does it.
func openat2Beneath(dir int, rel string) (int, error) { return -1, unix.ENOSYS }
