// Package atomicfile replaces a file's contents so that a crash leaves the
// old contents or the new ones, never a mix: it writes a temporary file
// beside it, fsyncs it, and renames it over the file.
package atomicfile

import "os"

// Write replaces path with data (a file of perm if new), through
// path+".tmp", which it removes if anything fails. Without sync the
// temporary file is not fsynced before the rename: for a file whose loss
// after a machine crash costs only time (a rename can then point at
// unwritten blocks). The rename is durable only once the caller fsyncs
// the directory.
func Write(path string, data []byte, perm os.FileMode, sync bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
