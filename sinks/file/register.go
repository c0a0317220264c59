package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/pgstream/pgstream/sinks"
)

func init() {
	sinks.Register(sinks.Type{Name: "file", Summary: "one JSON line per event appended to a file, fsynced per batch",
		NewConfig: func() sinks.Config { return new(Config) }})
}

// Open builds the sink c configures (sinks.Config).
func (c *Config) Open(env sinks.Env) (sinks.Sink, error) { return New(*c, env) }

var _ sinks.Checker = (*Config)(nil)

// Check reports whether New could open Path for appending, creating the file and its directories
// as New does, without creating anything (sinks.Checker: opening the sink would create the file).
func (c *Config) Check(context.Context) (note string, err error) {
	path := c.Path
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return "", fmt.Errorf("%s is a directory; path names the output file", path)
	case err == nil:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return "", fmt.Errorf("cannot open %s for appending: %w", path, pathErr(err))
		}
		_ = f.Close()
		return "appends to " + path, nil
	case !missing(err):
		return "", fmt.Errorf("cannot open %s: %w", path, pathErr(err))
	}
	// New would create the file, and the missing directories under the nearest one that exists.
	dir := filepath.Dir(path)
	exists := dir
	for {
		fi, err := os.Stat(exists)
		if err == nil && !fi.IsDir() {
			return "", fmt.Errorf("cannot create %s: %s is not a directory", path, exists)
		}
		if err == nil {
			break
		}
		parent := filepath.Dir(exists)
		if !missing(err) || parent == exists {
			return "", fmt.Errorf("cannot create %s: %w", path, err)
		}
		exists = parent
	}
	if err := writableDir(exists); err != nil {
		return "", fmt.Errorf("cannot create %s: directory %s is not writable: %w", path, exists, err)
	}
	if exists != dir {
		return fmt.Sprintf("%s missing; run would create it and directory %s", path, dir), nil
	}
	return fmt.Sprintf("%s missing; run would create it", path), nil
}

// missing reports whether a Stat error means that the path, or a directory on the way to it, does
// not exist (ENOTDIR: a file stands where a directory would be created).
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// pathErr strips the operation and path of a *fs.PathError, which the message already names.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// writableDir reports whether this process may create entries in dir, without creating one.
func writableDir(dir string) error {
	const wOK, xOK = 2, 1 // W_OK and X_OK of access(2)
	return syscall.Access(dir, wOK|xOK)
}
