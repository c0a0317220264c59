//go:build unix

package file

import (
	"os"
	"syscall"
)

// links returns fi's hard link count: 0 once the file was deleted while open.
func links(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true
}
