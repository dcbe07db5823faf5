package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/device/ntptest"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// BenchmarkTTFF measures time to first frame, offer published to the first
// complete keyframe at the viewer, through the embedded broker over
// loopback. Run with -benchtime 20x for the 20 sessions of the target.
func BenchmarkTTFF(b *testing.B) {
	broker := mqtttest.Embedded(b)
	startDaemon(b, testConfig(broker))
	ctx := context.Background()
	v, err := viewer.NewClient(ctx, viewer.Config{Broker: broker, DevID: testDevID, P2PPassword: testPassword}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	ttffs := benchTTFF(ctx, b, v, viewer.WatchOptions{Duration: time.Millisecond})
	b.ReportMetric(float64(ttffs[len(ttffs)-1])/float64(time.Millisecond), "ttff-max-ms")
}

// benchTTFF watches b.N sessions with opt and reports their TTFF p50 and
// p95; it returns the TTFFs, sorted.
func benchTTFF(ctx context.Context, b *testing.B, v *viewer.Client, opt viewer.WatchOptions) []time.Duration {
	var ttffs []time.Duration
	b.ResetTimer()
	for range b.N {
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		res, err := v.Watch(wctx, opt)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		ttffs = append(ttffs, res.TTFF)
	}
	b.StopTimer()
	slices.Sort(ttffs)
	pct := func(p float64) float64 {
		return float64(ttffs[int(p*float64(len(ttffs)-1)+0.5)]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.5), "ttff-p50-ms")
	b.ReportMetric(pct(0.95), "ttff-p95-ms")
	return ttffs
}

// BenchmarkSessionHeap measures the device's heap per streaming session on a
// 2 Mbit/s clip. The viewers run in a separate ipcapp process so that only
// the device's heap is counted.
func BenchmarkSessionHeap(b *testing.B) {
	clip, ipcapp := benchClip(b)
	const viewers = 5
	broker := mqtttest.Embedded(b)
	cfg := testConfig(broker)
	cfg.Log.Level = "info"
	cfg.Media.Sources.Main.Path = clip
	cfg.Media.MemoryMB = 16
	rd := startDaemon(b, cfg)
	time.Sleep(2 * time.Second) // rings full, pion warmed up
	idle, idleInuse := heapLive()

	b.ResetTimer()
	for range b.N {
		cmd := startViewers(b, rd, ipcapp, broker, viewers, 6)
		time.Sleep(3 * time.Second)
		streaming, streamingInuse := heapLive()
		if p := os.Getenv("BENCH_HEAPPROFILE"); p != "" {
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("ipcapp bench: %v", err)
		}
		// Live objects after a GC, and the spans holding them (which adds
		// fragmentation); the first is what a session costs, the second
		// what the runtime keeps for it.
		b.ReportMetric(float64(streaming-idle)/viewers/1024, "heap-live-KB/session")
		b.ReportMetric(float64(streamingInuse-idleInuse)/viewers/1024, "heap-inuse-KB/session")
		b.ReportMetric(float64(idle)/1024/1024, "heap-idle-MB")
	}
}

// startViewers runs ipcapp bench with n viewers for seconds and returns
// once the daemon has n sessions; the caller waits for the command.
func startViewers(b *testing.B, rd *runningDaemon, ipcapp, broker string, n, seconds int) *exec.Cmd {
	b.Helper()
	cmd := exec.Command(ipcapp, "bench", "-broker", broker, "-dev-id", testDevID, "-p2p-password", testPassword,
		"-sessions", "0", "-viewers", strconv.Itoa(n), "-seconds", strconv.Itoa(seconds))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for rd.sessions(b) < n {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			b.Fatalf("only %d of %d sessions started", rd.sessions(b), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd
}

// BenchmarkSessionMarginal measures what each viewer past the first costs
// the device on a 2 Mbit/s clip, from 1 to 10 viewers (the span of the
// RSS-per-viewer figure of make bench): the anonymous RSS as it runs, then
// after a collection the live heap, heap spans, free heap not returned to
// the system, goroutine stacks, the runtime's own structures, goroutines
// and OS threads. The viewers run in a separate ipcapp process. With
// BENCH_PROFILE_DIR set, heap and goroutine profiles at 1 and 10 viewers are
// written there (go tool pprof -diff_base heap1.pb.gz heap10.pb.gz); with
// BENCH_CLASSES set, the runtime's memory classes (runtime/metrics
// /memory/classes/...) at 1 and 10 viewers go to stderr.
func BenchmarkSessionMarginal(b *testing.B) {
	clip, ipcapp := benchClip(b)
	dir := os.Getenv("BENCH_PROFILE_DIR")
	if dir != "" {
		runtime.MemProfileRate = 512 // every allocation of a session, not one in 512 KB
	}
	defer debug.SetGCPercent(debug.SetGCPercent(defaultGCPercent)) // as ipcd runs
	broker := mqtttest.Embedded(b)
	cfg := testConfig(broker)
	cfg.Log.Level = "info"
	cfg.Media.Sources.Main.Path = clip
	cfg.Media.MemoryMB = 16
	cfg.Stream.MaxClients = 16
	rd := startDaemon(b, cfg)
	// The rings full (buffer_seconds of the clip), so that only sessions grow.
	time.Sleep(time.Duration(cfg.Media.BufferSeconds+1) * time.Second)

	type sample struct{ anon, live, inuse, free, retained, stack, meta, sys, goroutines, threads uint64 }
	measure := func(viewers int) sample {
		cmd := startViewers(b, rd, ipcapp, broker, viewers, 7)
		time.Sleep(3 * time.Second)
		anon, threads := procStatus(b, "RssAnon")*1024, procStatus(b, "Threads") // as it runs, before the collection below
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if os.Getenv("BENCH_CLASSES") != "" {
			var all []metrics.Sample
			for _, d := range metrics.All() {
				if strings.HasPrefix(d.Name, "/memory/classes/") {
					all = append(all, metrics.Sample{Name: d.Name})
				}
			}
			metrics.Read(all)
			for _, m := range all {
				fmt.Fprintf(os.Stderr, "classes %d %s %d\n", viewers, m.Name, m.Value.Uint64())
			}
		}
		s := sample{anon, ms.HeapAlloc, ms.HeapInuse, ms.HeapIdle - ms.HeapReleased, ms.HeapSys - ms.HeapReleased, ms.StackInuse,
			ms.MSpanInuse + ms.MCacheInuse + ms.GCSys + ms.OtherSys + ms.BuckHashSys, ms.Sys - ms.HeapReleased,
			uint64(runtime.NumGoroutine()), threads}
		if dir != "" {
			for _, name := range []string{"heap", "goroutine"} {
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s%d.pb.gz", name, viewers)))
				if err != nil {
					b.Fatal(err)
				}
				_ = pprof.Lookup(name).WriteTo(f, 0)
				_ = f.Close()
			}
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("ipcapp bench: %v", err)
		}
		for rd.sessions(b) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		return s
	}
	b.ResetTimer()
	for range b.N {
		one, ten := measure(1), measure(10)
		per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / 9 / 1024 }
		b.ReportMetric(per(one.anon, ten.anon), "anon-rss-KB/viewer")
		b.ReportMetric(per(one.live, ten.live), "heap-live-KB/viewer")
		b.ReportMetric(per(one.inuse, ten.inuse), "heap-inuse-KB/viewer")
		b.ReportMetric(per(one.retained, ten.retained), "heap-retained-KB/viewer")
		b.ReportMetric(per(one.free, ten.free), "heap-free-KB/viewer")
		b.ReportMetric(per(one.stack, ten.stack), "stack-KB/viewer")
		b.ReportMetric(per(one.meta, ten.meta), "runtime-meta-KB/viewer")
		b.ReportMetric(per(one.sys, ten.sys), "sys-KB/viewer")
		b.ReportMetric(per(one.goroutines, ten.goroutines)*1024, "goroutines/viewer")
		b.ReportMetric(float64(ten.threads)-float64(one.threads), "threads-added")
		st := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
		metrics.Read(st)
		b.ReportMetric(float64(st[0].Value.Uint64()), "stack-start-B")
	}
}

// procStatus is a number field of /proc/self/status (kB for sizes).
func procStatus(b *testing.B, field string) uint64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.Fields(v)[0], 10, 64)
			if err != nil {
				b.Fatalf("/proc/self/status %s: %v", field, err)
			}
			return n
		}
	}
	b.Fatalf("/proc/self/status has no %s", field)
	return 0
}

// benchClip makes a 10 s 2 Mbit/s 720p H.264 clip and builds ipcapp, in a
// temporary directory; it skips without ffmpeg.
func benchClip(b *testing.B) (clip, ipcapp string) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		b.Skip("ffmpeg not installed: cannot make the 2 Mbit/s clip")
	}
	dir := b.TempDir()
	clip = filepath.Join(dir, "2mbit.h264")
	gen := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "10",
		"-c:v", "libx264", "-profile:v", "baseline", "-b:v", "2M", "-maxrate", "2M", "-bufsize", "1M",
		"-x264-params", "keyint=25:min-keyint=25:scenecut=0:repeat-headers=1", "-f", "h264", clip)
	if out, err := gen.CombinedOutput(); err != nil {
		b.Fatalf("ffmpeg: %v: %s", err, out)
	}
	ipcapp = filepath.Join(dir, "ipcapp")
	if out, err := exec.Command("go", "build", "-o", ipcapp, "../ipcapp").CombinedOutput(); err != nil {
		b.Fatalf("build ipcapp: %v: %s", err, out)
	}
	return clip, ipcapp
}

func heapLive() (alloc, inuse uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.HeapInuse
}

// BenchmarkStartToReady measures an activated device from start to Ready
// (the `listen ok` line): with the system clock, and with NTP answered on
// loopback.
func BenchmarkStartToReady(b *testing.B) {
	broker := mqtttest.Embedded(b)
	ntp := ntptest.Start(b, 0)
	for _, source := range []string{"system", "ntp"} {
		b.Run(source, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				cfg := testConfig(broker)
				cfg.Log.Level = "info"
				cfg.Time.Source = source
				cfg.Time.Servers = []string{ntp}
				start := time.Now()
				rd := startDaemonWait(b, cfg, false)
				rd.log.waitLog(b, 10*time.Second, "listen ok")
				total += time.Since(start)
				rd.stop()
			}
			b.ReportMetric(float64(total)/float64(b.N)/float64(time.Millisecond), "ms/ready")
		})
	}
}
