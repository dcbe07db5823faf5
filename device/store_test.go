package device

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// captureLog is a concurrency-safe log sink for assertions on log lines.
type captureLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *captureLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *captureLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines containing s.
func (l *captureLog) lines(s string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

func newCaptureLogger() (*slog.Logger, *captureLog) {
	c := new(captureLog)
	return slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})), c
}

func testActivation(n int) Activation {
	return Activation{
		DevID:       fmt.Sprintf("6c1e%08d", n),
		LocalKey:    fmt.Sprintf("lk%014d", n),
		P2PPassword: fmt.Sprintf("ad%06d", n),
	}
}

func openTestStore(t *testing.T) (*Store, *captureLog, string) {
	t.Helper()
	log, buf := newCaptureLogger()
	path := filepath.Join(t.TempDir(), "data", "state.json")
	s, err := OpenStore(path, log)
	if err != nil {
		t.Fatal(err)
	}
	return s, buf, path
}

func mustLoad(t *testing.T, s *Store) (Activation, bool) {
	t.Helper()
	a, ok, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return a, ok
}

func TestStoreRoundTrip(t *testing.T) {
	s, logs, path := openTestStore(t)
	if a, ok := mustLoad(t, s); ok || a != (Activation{}) {
		t.Fatalf("empty store loaded %+v, %v", a, ok)
	}
	want := testActivation(1)
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("store file mode %v, want 0600: it holds secrets", perm)
	}

	// A second Store on the same file sees it, as after a reboot.
	log2, logs2 := newCaptureLogger()
	s2, err := OpenStore(path, log2)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := mustLoad(t, s2); !ok || got != want {
		t.Fatalf("reopened store loaded %+v, %v; want %+v", got, ok, want)
	}
	if l := logs2.lines("get p2p passwd = "); len(l) != 1 || !strings.Contains(l[0], "get p2p passwd = ad****(len 8)") || !strings.Contains(l[0], "level=DEBUG") {
		t.Fatalf("password log lines %q", l)
	}
	for _, secret := range []string{want.P2PPassword, want.LocalKey} {
		if strings.Contains(logs.String()+logs2.String(), secret) {
			t.Fatalf("a secret reached the log:\n%s%s", logs, logs2)
		}
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("scratch file left behind: %v", err)
	}
}

func TestStoreSaveRejectsInvalid(t *testing.T) {
	s, _, path := openTestStore(t)
	bad := testActivation(1)
	bad.P2PPassword = "xx123456"
	if err := s.Save(bad); !errors.Is(err, ErrActivationInvalid) {
		t.Fatalf("Save(invalid) = %v, want ErrActivationInvalid", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("invalid activation was written: %v", err)
	}
}

func TestStoreKeepsPreviousAsBackup(t *testing.T) {
	s, _, path := openTestStore(t)
	a1, a2 := testActivation(1), testActivation(2)
	for _, a := range []Activation{a1, a2} {
		if err := s.Save(a); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := readRecord(path + ".bak"); err != nil || !r.ok || r.a != a1 {
		t.Fatalf("backup holds %+v, %v, %v; want %+v", r.a, r.ok, err, a1)
	}
	if got, _ := mustLoad(t, s); got != a2 {
		t.Fatalf("loaded %+v, want %+v", got, a2)
	}
}

func TestStoreSaveSameWritesNothing(t *testing.T) {
	s, _, path := openTestStore(t)
	a1, a2 := testActivation(1), testActivation(2)
	for _, a := range []Activation{a1, a2} {
		if err := s.Save(a); err != nil {
			t.Fatal(err)
		}
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(a2); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("saving the stored activation replaced the file")
	}
	if r, _ := readRecord(path + ".bak"); r.a != a1 {
		got := r.a
		t.Fatalf("saving the stored activation changed the backup to %+v", got)
	}
}

func TestStoreWipe(t *testing.T) {
	s, _, path := openTestStore(t)
	for _, a := range []Activation{testActivation(1), testActivation(2)} {
		if err := s.Save(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Wipe(); err != nil {
		t.Fatal(err)
	}
	if a, ok := mustLoad(t, s); ok {
		t.Fatalf("wiped store loaded %+v", a)
	}
	// Neither file may still carry a key: a later corruption of the main
	// file must not resurrect the old owner.
	for _, p := range []string{path, path + ".bak"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := decodeRecord(b); r.ok || err != nil {
			ok := r.ok
			t.Fatalf("%s after wipe: ok=%v err=%v", p, ok, err)
		}
		if bytes.Contains(b, []byte("6c1e")) {
			t.Fatalf("%s still mentions a dev_id: %s", p, b)
		}
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a, ok := mustLoad(t, s); ok {
		t.Fatalf("corrupt main after wipe resurrected %+v", a)
	}

	// Activation after a wipe works and keeps the wiped state as backup.
	a3 := testActivation(3)
	if err := s.Save(a3); err != nil {
		t.Fatal(err)
	}
	if got, ok := mustLoad(t, s); !ok || got != a3 {
		t.Fatalf("after re-activation loaded %+v, %v", got, ok)
	}
}

// corruptions turn a valid record into one Load must refuse.
func corruptions() []struct {
	name string
	make func(good []byte) []byte
} {
	validBadActivation := encodeRecord([]byte(`{"dev_id":"6c1e","local_key":"k","p2p_password":"xx12"}`), 0)
	return []struct {
		name string
		make func(good []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated", func(g []byte) []byte { return g[:len(g)/2] }},
		{"truncated by one byte", func(g []byte) []byte { return g[:len(g)-2] }},
		{"garbage", func([]byte) []byte { return []byte("\x00\xff\x13garbage") }},
		{"zeroed block", func(g []byte) []byte { return make([]byte, len(g)) }},
		{"json array", func([]byte) []byte { return []byte(`[1,2,3]`) }},
		{"wrong version", func(g []byte) []byte {
			return bytes.Replace(g, []byte(`"version":2`), []byte(`"version":3`), 1)
		}},
		{"no version", func(g []byte) []byte {
			return bytes.Replace(g, []byte(`"version":2,`), nil, 1)
		}},
		{"no activation field", func([]byte) []byte {
			return []byte(`{"version":1,"sha256":"74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b"}`)
		}},
		{"checksum mismatch", func(g []byte) []byte {
			return bytes.Replace(g, []byte(`"p2p_password":"ad`), []byte(`"p2p_password":"ae`), 1)
		}},
		{"flipped bit in key", func(g []byte) []byte {
			b := bytes.Clone(g)
			i := bytes.Index(b, []byte(`"local_key":"`)) + len(`"local_key":"`)
			b[i] ^= 0x01
			return b
		}},
		{"activation not an object", func([]byte) []byte { return encodeRecord([]byte(`"6c1e"`), 0) }},
		{"invalid activation", func([]byte) []byte { return validBadActivation }},
	}
}

func TestStoreCorruptMainFallsBackToBackup(t *testing.T) {
	a1, a2 := testActivation(1), testActivation(2)
	for _, tc := range corruptions() {
		t.Run(tc.name, func(t *testing.T) {
			s, logs, path := openTestStore(t)
			for _, a := range []Activation{a1, a2} {
				if err := s.Save(a); err != nil {
					t.Fatal(err)
				}
			}
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.make(good), 0o600); err != nil {
				t.Fatal(err)
			}
			got, ok := mustLoad(t, s)
			if !ok || got != a1 {
				t.Fatalf("loaded %+v, %v; want the backup %+v", got, ok, a1)
			}
			warns := logs.lines("using backup")
			if len(warns) != 1 || !strings.Contains(warns[0], "level=WARN") || !strings.Contains(warns[0], "reason=") {
				t.Fatalf("want one warn saying why, got %q", warns)
			}

			// Saving over a damaged main file keeps the good backup.
			if err := s.Save(testActivation(3)); err != nil {
				t.Fatal(err)
			}
			if r, _ := readRecord(path + ".bak"); r.a != a1 {
				b := r.a
				t.Fatalf("backup after saving over a damaged main is %+v, want %+v", b, a1)
			}
		})
	}
}

func TestStoreBothCorrupt(t *testing.T) {
	for _, tc := range corruptions() {
		t.Run(tc.name, func(t *testing.T) {
			s, logs, path := openTestStore(t)
			for _, a := range []Activation{testActivation(1), testActivation(2)} {
				if err := s.Save(a); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []string{path, path + ".bak"} {
				good, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, tc.make(good), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			a, ok, err := s.Load()
			if !errors.Is(err, ErrStoreCorrupt) || ok || a != (Activation{}) {
				t.Fatalf("Load = %+v, %v, %v; want zero, false, ErrStoreCorrupt", a, ok, err)
			}
			if len(logs.lines("level=WARN")) == 0 {
				t.Fatal("no warning logged")
			}
			// The device recovers by being activated again.
			if err := s.Save(testActivation(4)); err != nil {
				t.Fatal(err)
			}
			if got, ok := mustLoad(t, s); !ok || got != testActivation(4) {
				t.Fatalf("after re-activation loaded %+v, %v", got, ok)
			}
		})
	}
}

func TestStoreMissingMainUsesBackup(t *testing.T) {
	s, logs, path := openTestStore(t)
	a1 := testActivation(1)
	for _, a := range []Activation{a1, testActivation(2)} {
		if err := s.Save(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got, ok := mustLoad(t, s); !ok || got != a1 {
		t.Fatalf("loaded %+v, %v; want backup %+v", got, ok, a1)
	}
	if len(logs.lines("using backup")) != 1 {
		t.Fatalf("no warning:\n%s", logs)
	}
}

func TestStoreMissingMainCorruptBackup(t *testing.T) {
	s, _, path := openTestStore(t)
	if err := os.WriteFile(path+".bak", []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load(); !errors.Is(err, ErrStoreCorrupt) || ok {
		t.Fatalf("Load = %v, %v; want ErrStoreCorrupt", ok, err)
	}
}

func TestOpenStore(t *testing.T) {
	log, _ := newCaptureLogger()
	if _, err := OpenStore("", log); !errors.Is(err, ErrStorePath) {
		t.Fatalf("empty path: %v", err)
	}
	dir := t.TempDir()
	if _, err := OpenStore(dir, log); !errors.Is(err, ErrStorePath) {
		t.Fatalf("directory path: %v", err)
	}
	path := filepath.Join(dir, "state.json")
	for _, p := range []string{path + ".tmp", path + ".bak.tmp"} {
		if err := os.WriteFile(p, []byte("half a rec"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenStore(path, log); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path + ".tmp", path + ".bak.tmp"} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("stale %s not removed: %v", p, err)
		}
	}
}

// The power-cut test runs the store in a child process (this test binary
// re-executed in writer mode) and SIGKILLs it at random moments. SIGKILL
// stops the process between any two system calls, which is what the rename
// protocol must survive; it does not drop the page cache, so it does not
// test fsync itself.
const (
	writerDirEnv   = "IPCD_TEST_STORE_WRITER_DIR"
	writerStartEnv = "IPCD_TEST_STORE_WRITER_START"
)

// writerOp is the i-th operation of the writer: every fourth one is a wipe.
// It returns the state the store holds once the operation completed.
func writerOp(i int) (a Activation, ok bool) {
	if i%4 == 3 {
		return Activation{}, false
	}
	return testActivation(i), true
}

// TestStoreWriterProcess is the child of TestStorePowerCut; run alone it
// skips.
func TestStoreWriterProcess(t *testing.T) {
	dir := os.Getenv(writerDirEnv)
	if dir == "" {
		t.Skip("writer mode of TestStorePowerCut")
	}
	start, err := strconv.Atoi(os.Getenv(writerStartEnv))
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(filepath.Join(dir, "state.json"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriterSize(os.Stdout, 64)
	report := func(line string) {
		// Unbuffered in effect: the parent must see each line as soon as
		// the operation it reports has returned.
		_, _ = out.WriteString(line + "\n")
		if err := out.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	report("ready")
	// The deadline bounds an orphaned writer whose parent died.
	for i, deadline := start, time.Now().Add(30*time.Second); time.Now().Before(deadline); i++ {
		if a, ok := writerOp(i); ok {
			err = s.Save(a)
		} else {
			err = s.Wipe()
		}
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		report("done " + strconv.Itoa(i))
	}
	t.Fatal("writer was not killed")
}

// writerProc is a TestStoreWriterProcess child, killed by the test.
type writerProc struct {
	cmd      *exec.Cmd
	stderr   bytes.Buffer
	lastDone chan int
	other    []string
}

// startWriter starts a writer at operation next and waits until it is
// ready.
func startWriter(t *testing.T, k int, dir string, next int) *writerProc {
	t.Helper()
	w := &writerProc{lastDone: make(chan int, 1)}
	w.cmd = exec.Command(os.Args[0], "-test.run=^TestStoreWriterProcess$", "-test.count=1")
	w.cmd.Env = append(os.Environ(), writerDirEnv+"="+dir, writerStartEnv+"="+strconv.Itoa(next))
	w.cmd.Stderr = &w.stderr
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		last := -1
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				close(ready)
			case strings.HasPrefix(line, "done "):
				n, err := strconv.Atoi(strings.TrimPrefix(line, "done "))
				if err == nil {
					last = n
					continue
				}
				fallthrough
			default:
				w.other = append(w.other, line)
			}
		}
		w.lastDone <- last
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.lastDone
		_ = w.cmd.Wait()
		t.Fatalf("kill %d: writer not ready; output %q; stderr:\n%s", k, w.other, w.stderr.String())
	}
	return w
}

// kill kills the writer and returns the last operation it completed, -1
// for none.
func (w *writerProc) kill(t *testing.T, k int) int {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	last := <-w.lastDone
	err := w.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("kill %d: writer ended by itself (%v); output %q; stderr:\n%s", k, err, w.other, w.stderr.String())
	}
	return last
}

// loadAfterKill loads the store a kill left: readable without a warning,
// with an intact backup.
func loadAfterKill(t *testing.T, k, last int, path string) (Activation, bool) {
	t.Helper()
	log, logs := newCaptureLogger()
	s, err := OpenStore(path, log)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Load()
	if err != nil {
		t.Fatalf("kill %d (after op %d): Load: %v", k, last, err)
	}
	if w := logs.lines("level=WARN"); len(w) > 0 {
		t.Fatalf("kill %d: a process crash left the main file unusable: %q", k, w)
	}
	if _, err := readRecord(path + ".bak"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("kill %d: backup damaged: %v", k, err)
	}
	return got, ok
}

func TestStorePowerCut(t *testing.T) {
	kills := 200
	if testing.Short() {
		kills = 20
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)

	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	var (
		cur        Activation // what the store holds now
		curOK      bool
		next       int // index of the next operation
		midOp      int // kills after which the in-progress operation had landed
		totalOps   int
		killWindow = 4 * time.Millisecond
	)
	began := time.Now()
	for k := range kills {
		w := startWriter(t, k, dir, next)
		// A machine where no write completes within the window (an
		// emulated board, a busy one) gets a wider one: kills that all
		// land before the first write test nothing.
		if totalOps == 0 && k > 0 && k%10 == 0 && killWindow < 512*time.Millisecond {
			killWindow *= 2
		}
		time.Sleep(time.Duration(rng.Int64N(int64(killWindow))))
		last := w.kill(t, k)

		// Allowed: the last completed operation's result (or the state
		// before this writer, if none completed) and the one in progress.
		before, beforeOK := cur, curOK
		if last >= 0 {
			totalOps += last - next + 1
			before, beforeOK = writerOp(last)
		}
		inProgress := next
		if last >= 0 {
			inProgress = last + 1
		}
		after, afterOK := writerOp(inProgress)

		got, ok := loadAfterKill(t, k, last, path)
		switch {
		case ok == afterOK && got == after && (ok != beforeOK || got != before):
			midOp++
		case ok == beforeOK && got == before:
		default:
			t.Fatalf("kill %d: store holds %+v (ok=%v); want %+v (ok=%v) after op %d or %+v (ok=%v) from op %d",
				k, got, ok, before, beforeOK, last, after, afterOK, inProgress)
		}
		cur, curOK = got, ok
		next = inProgress + 1
	}
	t.Logf("%d kills in %v: %d operations completed, %d kills landed after the in-progress operation took effect",
		kills, time.Since(began).Round(time.Millisecond), totalOps, midOp)
	if totalOps == 0 {
		t.Fatal("no operation ever completed: the kill window is too short to test anything")
	}
}
