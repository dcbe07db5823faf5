//go:build unix

package board

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// runBounded runs path with env, stdin as its input, until it exits or
// timeout passes, when it is killed with its process group (what a script
// started goes too). It returns the start of the output. os.StartProcess
// rather than os/exec: os/exec costs the ARMv7 build 64 KB of its flash
// budget for features a hook does not need.
func runBounded(ctx context.Context, path string, env []string, stdin []byte, timeout time.Duration) (string, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return "", err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return "", err
	}
	p, err := os.StartProcess(path, []string{path}, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{inR, outW, outW},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return "", err
	}
	// An event line is far below a pipe's capacity: this write does not
	// wait for the hook to read.
	_, _ = inW.Write(stdin)
	inW.Close()

	var out limitedBuffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&out, outR)
	}()
	exited := make(chan error, 1)
	go func() {
		st, err := p.Wait()
		if err == nil && !st.Success() {
			err = fmt.Errorf("hook: %s", st)
		}
		exited <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-exited:
	case <-timer.C:
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		<-exited
		err = errHookTimeout
	case <-ctx.Done():
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		<-exited
		err = ctx.Err()
	}
	// A child the hook left running may hold the output open: stop
	// reading a second after the hook itself is gone.
	_ = outR.SetReadDeadline(time.Now().Add(time.Second))
	<-read
	outR.Close()
	return out.String(), err
}
