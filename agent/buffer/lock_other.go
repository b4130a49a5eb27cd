//go:build !unix

package buffer

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir only creates the lock file where advisory locks are not
// available; the agent's targets are all unix.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	return f, nil
}
