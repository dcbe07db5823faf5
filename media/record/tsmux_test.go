package record

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipcd/ipcd/media"
)

// muxedUnit is what went into the muxer.
type muxedUnit struct {
	video   bool
	key     bool
	pts90   int64
	payload []byte
	offset  int64 // the muxer's offset before the write
}

// muxClip muxes seconds of the sample clip (H.264 + PCMU) the way a segment
// does, plus payloads around the packet boundaries, and returns the stream
// and what went in.
func muxClip(t *testing.T, seconds int) ([]byte, []muxedUnit) {
	t.Helper()
	c := loadClip(t)
	var buf bytes.Buffer
	m, err := newTSMuxer(&buf, media.CodecH264, media.CodecPCMU)
	if err != nil {
		t.Fatal(err)
	}
	var in []muxedUnit
	for _, f := range c.frames(t0, seconds) {
		u := muxedUnit{video: f.Stream.IsVideo(), key: f.Kind == media.KindI, pts90: ptsOrigin + f.PTS*9/100, payload: f.Payload, offset: m.offset()}
		if u.video {
			err = m.writeVideo(u.payload, u.key, u.pts90)
		} else {
			err = m.writeAudio(u.payload, u.pts90)
		}
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, u)
	}
	// Audio frames whose PES ends exactly at, or one or two bytes short
	// of, the end of a packet, and one over one packet: each stuffing path.
	pts := in[len(in)-1].pts90
	for _, n := range []int{170, 169, 168, 171, 184 + 170, 800} {
		pts += 100
		p := bytes.Repeat([]byte{byte(n)}, n)
		in = append(in, muxedUnit{pts90: pts, payload: p, offset: m.offset()})
		if err := m.writeAudio(p, pts); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.flush(); err != nil {
		t.Fatal(err)
	}
	if m.offset() != int64(buf.Len()) {
		t.Fatalf("offset %d, wrote %d bytes", m.offset(), buf.Len())
	}
	return buf.Bytes(), in
}

func TestTSMuxPacketLayout(t *testing.T) {
	ts, in := muxClip(t, 3)
	if len(ts)%tsPacketSize != 0 {
		t.Fatalf("%d bytes is not a whole number of packets", len(ts))
	}
	cc := map[int]int{}
	pcrs, rais, starts := 0, 0, map[int]int{}
	for off := 0; off < len(ts); off += tsPacketSize {
		p := ts[off : off+tsPacketSize]
		if p[0] != 0x47 {
			t.Fatalf("packet at %d: sync byte %#x", off, p[0])
		}
		pid := int(p[1]&0x1f)<<8 | int(p[2])
		afc := p[3] >> 4 & 3
		if afc&1 == 0 {
			t.Fatalf("packet at %d: no payload", off)
		}
		if prev, ok := cc[pid]; ok && int(p[3]&0x0f) != (prev+1)&0x0f {
			t.Fatalf("packet at %d, PID %#x: continuity counter %d after %d", off, pid, p[3]&0x0f, prev)
		} else if !ok && p[3]&0x0f != 0 {
			t.Fatalf("PID %#x starts at continuity counter %d", pid, p[3]&0x0f)
		}
		cc[pid] = int(p[3] & 0x0f)
		if p[1]&0x40 != 0 {
			starts[pid]++
		}
		if afc&2 != 0 {
			n := int(p[4])
			if n > 183 {
				t.Fatalf("packet at %d: adaptation field of %d bytes", off, n)
			}
			if n > 0 {
				if p[5]&0x10 != 0 {
					pcrs++
					if pid != pidVideo || p[1]&0x40 == 0 {
						t.Fatalf("packet at %d: PCR on PID %#x outside a PES start", off, pid)
					}
				}
				if p[5]&0x40 != 0 {
					rais++
				}
			}
		}
		if pid == pidVideo && p[1]&0x40 != 0 && (afc&2 == 0 || p[5]&0x10 == 0) {
			t.Fatalf("packet at %d: video PES without a PCR", off)
		}
	}
	var video, audio, keys int
	for _, u := range in {
		switch {
		case u.video && u.key:
			video++
			keys++
			// The index points here: PAT then PMT, then the keyframe.
			p := ts[u.offset:]
			if pid := int(p[1]&0x1f)<<8 | int(p[2]); pid != pidPAT {
				t.Fatalf("keyframe at %d: first packet on PID %#x, not the PAT", u.offset, pid)
			}
			if pid := int(p[tsPacketSize+1]&0x1f)<<8 | int(p[tsPacketSize+2]); pid != pidPMT {
				t.Fatalf("keyframe at %d: second packet on PID %#x, not the PMT", u.offset, pid)
			}
		case u.video:
			video++
		default:
			audio++
		}
	}
	if pcrs != video || starts[pidVideo] != video || starts[pidAudio] != audio {
		t.Fatalf("%d PCRs, %d video and %d audio PES starts for %d video and %d audio frames",
			pcrs, starts[pidVideo], starts[pidAudio], video, audio)
	}
	if rais != keys || starts[pidPAT] != keys || starts[pidPMT] != keys {
		t.Fatalf("%d random access indicators, %d PATs, %d PMTs for %d keyframes", rais, starts[pidPAT], starts[pidPMT], keys)
	}
}

func TestTSMuxReadBack(t *testing.T) {
	ts, in := muxClip(t, 3)
	r := newTSReader(bytes.NewReader(ts), int64(len(ts)))
	var got []tsUnit
	for {
		u, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, u)
	}
	if r.vPID != pidVideo || r.aPID != pidAudio || r.vCodec != media.CodecH264 || r.aCodec != media.CodecPCMU {
		t.Fatalf("PMT read as video %#x %s, audio %#x %s", r.vPID, r.vCodec, r.aPID, r.aCodec)
	}
	// The reader gives a video unit when the next one starts: compare each
	// stream in its own order.
	split := func(video bool) (g []tsUnit, w []muxedUnit) {
		for _, u := range got {
			if u.stream.IsVideo() == video {
				g = append(g, u)
			}
		}
		for _, u := range in {
			if u.video == video {
				w = append(w, u)
			}
		}
		return g, w
	}
	for _, video := range []bool{true, false} {
		g, w := split(video)
		if len(g) != len(w) || len(w) == 0 {
			t.Fatalf("video=%v: read %d units, muxed %d", video, len(g), len(w))
		}
		for i, u := range g {
			if u.pts90 != w[i].pts90 || !bytes.Equal(u.payload, w[i].payload) || u.key != w[i].key {
				t.Fatalf("video=%v unit %d: read key=%v pts %d (%d bytes), muxed key=%v pts %d (%d bytes)",
					video, i, u.key, u.pts90, len(u.payload), w[i].key, w[i].pts90, len(w[i].payload))
			}
		}
	}

	// A reader that starts at a keyframe offset, as playback does from the
	// index, finds the tables there.
	var key muxedUnit
	for _, u := range in[1:] {
		if u.key {
			key = u
			break
		}
	}
	r = newTSReader(bytes.NewReader(ts[key.offset:]), int64(len(ts))-key.offset)
	u, err := r.next()
	if err != nil || !u.key || u.pts90 != key.pts90 {
		t.Fatalf("from the keyframe at %d: key=%v pts %d, %v; want pts %d", key.offset, u.key, u.pts90, err, key.pts90)
	}
}

func TestTSMuxTables(t *testing.T) {
	for _, tc := range []struct {
		video, audio media.Codec
	}{
		{media.CodecH264, media.CodecUnknown},
		{media.CodecH265, media.CodecPCMA},
		{media.CodecH264, media.CodecPCMU},
	} {
		var buf bytes.Buffer
		m, err := newTSMuxer(&buf, tc.video, tc.audio)
		if err != nil {
			t.Fatal(err)
		}
		// The PTS wraps at 33 bits.
		if err := m.writeVideo([]byte{0, 0, 0, 1, 0x65, 1, 2, 3}, true, ptsWrap+1234); err != nil {
			t.Fatal(err)
		}
		err = m.writeAudio(make([]byte, 320), 5678)
		if tc.audio == media.CodecUnknown {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("audio into a segment without audio: %v", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		if err := m.flush(); err != nil {
			t.Fatal(err)
		}
		r := newTSReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		u, err := r.next()
		if err != nil || u.pts90 != 1234 {
			t.Fatalf("%s/%s: pts %d, %v", tc.video, tc.audio, u.pts90, err)
		}
		wantA := -1
		if tc.audio != media.CodecUnknown {
			wantA = pidAudio
		}
		if r.vCodec != tc.video || r.aCodec != tc.audio || r.aPID != wantA {
			t.Fatalf("PMT of %s/%s read as %s/%s on audio PID %d", tc.video, tc.audio, r.vCodec, r.aCodec, r.aPID)
		}
	}
	if _, err := newTSMuxer(io.Discard, media.CodecPCMU, media.CodecUnknown); !errors.Is(err, ErrConfig) {
		t.Fatalf("PCMU as video: %v", err)
	}
}

// crc32MPEG matches the check value of CRC-32/MPEG-2.
func TestTSMuxCRC(t *testing.T) {
	if got := crc32MPEG([]byte("123456789")); got != 0x0376e6e7 {
		t.Fatalf("crc %#x", got)
	}
}

func TestTSMuxFFprobe(t *testing.T) {
	ts, in := muxClip(t, 4)
	path := filepath.Join(t.TempDir(), "mux.ts")
	if err := os.WriteFile(path, ts, 0o644); err != nil {
		t.Fatal(err)
	}
	video := 0
	for _, u := range in {
		if u.video {
			video++
		}
	}
	if n, d := ffprobe(t, path); n != video || d < 3.9 {
		t.Fatalf("ffprobe decoded %d frames over %.2f s, muxed %d over 4 s", n, d, video)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=index,codec_type,codec_name",
		"-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	// The streams are listed once per program and once in the file.
	streams := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			streams[line] = true
		}
	}
	if len(streams) != 2 || !streams["0,h264,video"] || !streams["1,bin_data,data"] {
		t.Fatalf("ffprobe streams:\n%s", out)
	}
}
