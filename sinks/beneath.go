package sinks

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/batchpipe/batchpipe/batcher"
)

// maxName is the longest file name component a per-batch file gets: 255,
// the limit of most file systems, less what its temporary name adds
// ("." and ".tmp" and 10 digits).
const maxName = 240

// shortName returns a component longer than maxName as its first bytes, "%~"
// and the SHA-256 of the whole in hex, so that a key too long for a file
// name lands all the same, and never where another does: an escaped key
// holds '%' only before two hex digits, or alone for the empty key.
func shortName(c string) string {
	if len(c) <= maxName {
		return c
	}
	cut := 160
	for cut > 0 && (c[cut-1] == '%' || cut > 1 && c[cut-2] == '%' || c[cut]&0xc0 == 0x80) {
		cut-- // not inside a %XX, nor inside a UTF-8 character
	}
	h := sha256.Sum256([]byte(c))
	return c[:cut] + "%~" + hex.EncodeToString(h[:])
}

// errSymlink is a symbolic link met below the template's fixed directory.
var errSymlink = errors.New("is a symbolic link (give --follow-symlinks to write through it)")

// openBeneath opens the directory rel below root, creating what is
// missing with mode 0755. Unless follow, no symbolic link is followed, and
// rel never leaves root: a link planted at out/<key> does not take that
// key's files elsewhere.
func openBeneath(root *os.File, rel string, follow bool) (*os.File, error) {
	if rel == "." || rel == "" {
		fd, err := dupFd(root)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), root.Name()), nil
	}
	if !follow {
		if fd, err := openat2Beneath(int(root.Fd()), rel); err == nil {
			return os.NewFile(uintptr(fd), root.Name()+"/"+rel), nil
		}
		// Missing, or no openat2 here: walk, which names what is wrong.
	}
	cur, err := dupFd(root)
	if err != nil {
		return nil, err
	}
	name := root.Name()
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			unix.Close(cur)
			return nil, fmt.Errorf("%s: '..' below the template's directory", name)
		}
		name += "/" + c
		fd, err := openDirAt(cur, c, follow)
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(cur, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				fd, err = openDirAt(cur, c, follow)
			}
		}
		unix.Close(cur)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		cur = fd
	}
	return os.NewFile(uintptr(cur), name), nil
}

func dupFd(f *os.File) (int, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return fd, nil
}

// openDirAt opens the directory name in dir; a symbolic link there is
// errSymlink unless follow.
func openDirAt(dir int, name string, follow bool) (int, error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Openat(dir, name, flags, 0)
	if err != nil && (errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR)) && isSymlinkAt(dir, name) {
		return -1, errSymlink
	}
	return fd, err
}

func isSymlinkAt(dir int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

// writeAt writes data to a new file name in dir as writeNew does: a
// temporary file, fsynced, linked into place (which never replaces a
// file), the directory fsynced. A file already there is checked by
// sameFileAt.
func writeAt(dir *os.File, name string, data []byte, follow bool) (err error) {
	dfd := int(dir.Fd())
	var st unix.Stat_t
	statFlags := unix.AT_SYMLINK_NOFOLLOW
	if follow {
		statFlags = 0
	}
	if unix.Fstatat(dfd, name, &st, statFlags) == nil {
		return sameFileAt(dfd, name, data, follow)
	}
	var tmp string
	var fd int
	for range 100 {
		tmp = "." + name + ".tmp" + strconv.FormatUint(uint64(rand.Uint32()), 10)
		fd, err = unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("create a temporary file: %w", err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	if err := f.Chmod(0o644); err != nil { // whatever the umask
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// A hard link never replaces an existing name, unlike rename.
	if err := unix.Linkat(dfd, tmp, dfd, name, 0); err != nil {
		if errors.Is(err, unix.EEXIST) {
			unix.Unlinkat(dfd, tmp, 0)
			return sameFileAt(dfd, name, data, follow)
		}
		if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("link %s: %w", name, err)
		}
		// No hard links here: rename, having checked for the name above.
		if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
			return fmt.Errorf("rename to %s: %w", name, err)
		}
	} else {
		// The batch is in place: a temporary name left behind (it starts
		// with a dot) is no reason to send the batch again.
		unix.Unlinkat(dfd, tmp, 0)
	}
	if err := dir.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// sameFileAt is sameFile for name in dir: a symbolic link there is
// refused unless follow, and a FIFO planted there does not block.
func sameFileAt(dir int, name string, data []byte, follow bool) error {
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Openat(dir, name, flags, 0)
	if errors.Is(err, unix.ELOOP) {
		return batcher.Permanent(errSymlink)
	}
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return batcher.Permanent(fmt.Errorf("%w and is no regular file (%v): not overwriting it", os.ErrExist, fi.Mode().Type()))
	}
	have, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	if !bytes.Equal(have, data) {
		return batcher.Permanent(fmt.Errorf("%w with other bytes (%d, the batch has %d): not overwriting it", os.ErrExist, len(have), len(data)))
	}
	return nil
}
