//go:build !unix

package media

import "os"

// mapFile reads path where mapping is not available.
func mapFile(path string) ([]byte, func(), error) {
	data, err := os.ReadFile(path)
	return data, func() {}, err
}
