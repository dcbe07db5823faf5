//go:build unix

package board

import (
	"os/exec"
	"syscall"
)

// setProcessGroup makes the hook the leader of its own process group so
// that a timeout kills what a script started too.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
