package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildIPCD builds the daemon with the build tags into dir.
func buildIPCD(t *testing.T, dir string, tags ...string) string {
	t.Helper()
	bin := filepath.Join(dir, "ipcd")
	build := exec.Command("go", "build", "-tags", strings.Join(tags, " "), "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ipcd with tags %q: %v: %s", tags, err, out)
	}
	return bin
}

// process is an ipcd process started by a test.
type process struct {
	cmd *exec.Cmd
	// logDone is closed when its stderr has ended.
	logDone chan struct{}
	log     strings.Builder // read after logDone
}

// startProcess runs bin with the configuration file and the environment
// added to the test's, and returns once a line of its log contains want.
// It fails the test when the process exits first or within timeout
// writes no such line.
func startProcess(t *testing.T, bin, config string, env []string, want string, timeout time.Duration) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, "-config", config), logDone: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := make(chan bool, 1)
	go func() {
		defer close(p.logDone)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			p.log.WriteString(sc.Text() + "\n")
			if !sent && strings.Contains(sc.Text(), want) {
				up <- true
				sent = true
			}
		}
		if !sent {
			up <- false
		}
	}()
	select {
	case ok := <-up:
		if !ok {
			_ = p.cmd.Wait()
			<-p.logDone
			t.Fatalf("ipcd exited before %q:\n%s", want, p.log.String())
		}
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		t.Fatalf("ipcd wrote no %q within %s", want, timeout)
	}
	return p
}

// stop interrupts the process and waits for it, killing it after 10 s.
func (p *process) stop() error {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		err = <-done
	}
	<-p.logDone
	return err
}
