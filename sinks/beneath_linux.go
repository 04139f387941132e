package sinks

import "golang.org/x/sys/unix"

// openat2Beneath opens the directory rel below dir in one system call,
// following no symbolic link and never leaving dir.
func openat2Beneath(dir int, rel string) (int, error) {
	return unix.Openat2(dir, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
}
