package record

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ipcd/ipcd/media"
)

// BenchmarkRecordWrite records a clip (RECORD_BENCH_CLIP, an Annex-B H.264
// file at 25 fps; the sample clip by default) with PCMU audio to files in
// a temporary directory, synced every 500 ms as the default sync_interval
// does. One op is one second of media. It reports the process CPU time
// (user + system) per Mbit/s recorded, and the bytes written per hour at
// the clip's bitrate.
func BenchmarkRecordWrite(b *testing.B) {
	path := os.Getenv("RECORD_BENCH_CLIP")
	if path == "" {
		path = "../../configs/media/main.h264"
	}
	v, err := media.ReadAccessUnits(path)
	if err != nil {
		b.Fatal(err)
	}
	a, err := media.ReadAccessUnits("../../configs/media/audio.pcmu")
	if err != nil {
		b.Fatal(err)
	}
	c := clip{video: v, audio: a}
	root := b.TempDir()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	frames := c.frames(start, b.N)
	var payload int64
	for _, f := range frames {
		payload += int64(len(f.Payload))
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	writeFrames(b, root, frames, 60)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	var written int64
	segs, _ := filepathGlob(root)
	for _, s := range segs {
		written += fileSize(s+segExt) + fileSize(s+idxExt)
	}
	seconds := float64(b.N)
	mbps := float64(payload) * 8 / seconds / 1e6
	b.ReportMetric(mbps, "Mbit/s")
	b.ReportMetric(100*cpu.Seconds()/seconds/mbps, "cpu-%/Mbit/s")
	b.ReportMetric(float64(written)/seconds*3600/1e6, "MB/h")
	b.ReportMetric(100*float64(written-payload)/float64(payload), "overhead-%")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
