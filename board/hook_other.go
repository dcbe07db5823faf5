//go:build !unix

package board

import "os/exec"

func setProcessGroup(*exec.Cmd) {}
