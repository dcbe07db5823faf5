package media_test

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/ipcd/ipcd/media"
)

const sampleH265 = "../configs/media/main.h265"

// Synthetic H.265 NAL units (without start code): the 2-byte header
// (type << 1, then layer id << 3 | temporal id + 1) and, for slices, the
// first_slice_segment_in_pic_flag bit are all the parser looks at.
const (
	h5VPS       = nalH5VPS
	h5SPS       = nalH5SPS
	h5SPS2      = "\x42\x01\x01\x02\x60"
	h5PPS       = nalH5PPS
	h5IDR       = nalH5IDR           // IDR_W_RADL, first segment
	h5IDR2      = "\x26\x01\x2f\x06" // further segment of the same picture
	h5CRA       = "\x2a\x01\xc4\x02" // CRA, first segment
	h5TRAIL     = "\x02\x01\xd0\x01" // TRAIL_R, first segment
	h5TRAIL2    = "\x02\x01\x50\x01" // further segment
	h5AUD       = "\x46\x01\x50"
	h5EOS       = "\x48\x01"
	h5FD        = "\x4c\x01\xff\xff"
	h5SEI       = "\x4e\x01\x05\x01\x80"
	h5SuffixSEI = "\x50\x01\x05\x01\x80"
	h5RSV41     = "\x52\x01\x11"
	h5TRAILL1   = "\x02\x09\xd0\x01" // TRAIL_R of layer 1, first segment
	h5PPSL1     = "\x44\x09\xc1\x72" // PPS of layer 1
)

func TestSplitAccessUnitsH265(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []wantAU
	}{
		{
			name: "IDR with parameter sets then trailing pictures",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5TRAIL, h5TRAIL),
			want: []wantAU{{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true}, {annexB(h5TRAIL), false}, {annexB(h5TRAIL), false}},
		},
		{
			name: "3-byte start codes, junk and trailing zeros",
			in:   concat([]byte{0x12, 0x34}, annexB3(h5VPS, h5SPS, h5PPS, h5IDR), []byte{0, 0}, annexB3(h5TRAIL), []byte{0, 0, 0}),
			want: []wantAU{{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true}, {annexB(h5TRAIL), false}},
		},
		{
			name: "AUD and filler dropped, EOS kept",
			in:   annexB(h5AUD, h5VPS, h5SPS, h5PPS, h5IDR, h5FD, h5AUD, h5TRAIL, h5EOS, h5AUD, h5CRA),
			want: []wantAU{
				{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true},
				{annexB(h5TRAIL, h5EOS), false},
				{annexB(h5VPS, h5SPS, h5PPS, h5CRA), true},
			},
		},
		{
			name: "multi-segment pictures",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5IDR2, h5IDR2, h5TRAIL, h5TRAIL2, h5TRAIL),
			want: []wantAU{
				{annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5IDR2, h5IDR2), true},
				{annexB(h5TRAIL, h5TRAIL2), false},
				{annexB(h5TRAIL), false},
			},
		},
		{
			name: "prefix SEI starts an access unit, suffix SEI stays",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5SuffixSEI, h5SEI, h5TRAIL, h5SuffixSEI),
			want: []wantAU{
				{annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5SuffixSEI), true},
				{annexB(h5SEI, h5TRAIL, h5SuffixSEI), false},
			},
		},
		{
			name: "reserved non-VCL type 41 starts an access unit",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5RSV41, h5TRAIL),
			want: []wantAU{{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true}, {annexB(h5RSV41, h5TRAIL), false}},
		},
		{
			name: "each parameter set after a slice starts an access unit",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5PPS, h5TRAIL, h5SPS, h5TRAIL),
			want: []wantAU{
				{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true},
				{annexB(h5PPS, h5TRAIL), false},
				{annexB(h5SPS, h5TRAIL), false},
			},
		},
		{
			name: "parameter sets inserted before a bare IRAP",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5TRAIL, h5SEI, h5CRA, h5TRAIL),
			want: []wantAU{
				{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true}, {annexB(h5TRAIL), false},
				{annexB(h5VPS, h5SPS, h5PPS, h5SEI, h5CRA), true}, {annexB(h5TRAIL), false},
			},
		},
		{
			name: "only the missing parameter sets inserted, most recent ones",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5SPS2, h5TRAIL, h5PPS, h5IDR),
			want: []wantAU{
				{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true},
				{annexB(h5SPS2, h5TRAIL), false},
				{annexB(h5VPS, h5SPS2, h5PPS, h5IDR), true},
			},
		},
		{
			name: "other layers neither start access units nor replace parameter sets",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5TRAILL1, h5PPSL1, h5TRAIL, h5IDR),
			want: []wantAU{
				{annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5TRAILL1, h5PPSL1), true},
				{annexB(h5TRAIL), false},
				{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true},
			},
		},
		{
			name: "NAL units shorter than the header dropped",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, "\x02", h5TRAIL),
			want: []wantAU{{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true}, {annexB(h5TRAIL), false}},
		},
		{
			name: "trailing NAL units without a slice discarded",
			in:   annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5VPS, h5SPS),
			want: []wantAU{{annexB(h5VPS, h5SPS, h5PPS, h5IDR), true}},
		},
		{
			name: "IRAP with no parameter sets anywhere stays bare",
			in:   annexB(h5IDR, h5TRAIL),
			want: []wantAU{{annexB(h5IDR), true}, {annexB(h5TRAIL), false}},
		},
		{
			name: "parameter sets without slices",
			in:   annexB(h5VPS, h5SPS, h5PPS),
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := media.SplitAccessUnitsH265(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d access units, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				if !bytes.Equal(got[i].Payload, tt.want[i].payload) || got[i].Key != tt.want[i].key {
					t.Errorf("AU %d = {%x key=%v}, want {%x key=%v}", i, got[i].Payload, got[i].Key, tt.want[i].payload, tt.want[i].key)
				}
			}
			checkIdempotentH265(t, got)
		})
	}
}

func TestSplitAccessUnitsH265NoNALUnits(t *testing.T) {
	for _, in := range [][]byte{nil, {0x26, 0x01}, {0, 0, 0, 0}, {0, 0, 1}, {0, 0, 1, 0, 0}} {
		if _, err := media.SplitAccessUnitsH265(in); !errors.Is(err, media.ErrNoNALUnits) {
			t.Errorf("SplitAccessUnitsH265(%x) error = %v, want ErrNoNALUnits", in, err)
		}
	}
}

func TestH265AUSplitterStreaming(t *testing.T) {
	nals := []string{h5VPS, h5SPS, h5PPS, h5IDR, h5TRAIL, h5SEI, h5CRA}
	var s media.H265AUSplitter
	var got []media.AccessUnit
	scratch := make([]byte, 0, 64)
	for _, nal := range nals {
		scratch = append(scratch[:0], nal...)
		if au, ok := s.Push(scratch); ok {
			got = append(got, au)
		}
		for i := range scratch {
			scratch[i] = 0xee // Push must have copied
		}
	}
	if au, ok := s.Flush(); ok {
		got = append(got, au)
	}
	want, err := media.SplitAccessUnitsH265(annexB(nals...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(got) != len(want) {
		t.Fatalf("got %d access units, want 3 and %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].Payload, want[i].Payload) || got[i].Key != want[i].Key {
			t.Errorf("AU %d = %x, want %x", i, got[i].Payload, want[i].Payload)
		}
	}
	if _, ok := s.Flush(); ok {
		t.Error("second Flush returned an access unit")
	}
	// Parameter sets survive Flush, so a partial access unit can be dropped
	// and the next bare IRAP still gets them.
	s.Push([]byte(h5TRAIL))
	s.Flush()
	s.Push([]byte(h5IDR))
	au, ok := s.Flush()
	if !ok || !bytes.Equal(au.Payload, annexB(h5VPS, h5SPS, h5PPS, h5IDR)) || !au.Key {
		t.Errorf("IRAP after Flush = %x, %v; want it with the cached parameter sets", au.Payload, ok)
	}
}

func TestIsH265KeyframeAndParameterSets(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		key, ps bool
	}{
		{"IDR with parameter sets", annexB(h5VPS, h5SPS, h5PPS, h5SEI, h5IDR), true, true},
		{"CRA", annexB3(h5CRA), true, false},
		{"BLA_W_LP", annexB("\x20\x01\x80"), true, false},
		{"reserved IRAP type 23", annexB("\x2e\x01\x80"), true, false},
		{"RASL is not a keyframe", annexB("\x10\x01\x80"), false, false},
		{"trailing picture", annexB(h5VPS, h5SPS, h5PPS, h5TRAIL), false, true},
		{"no VPS", annexB(h5SPS, h5PPS, h5IDR), true, false},
		{"first slice decides", annexB(h5TRAIL, h5IDR), false, false},
		{"short NAL skipped", annexB("\x26", h5IDR), true, false},
		{"empty", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := media.IsH265Keyframe(tt.in); got != tt.key {
				t.Errorf("IsH265Keyframe = %v, want %v", got, tt.key)
			}
			if got := media.H265HasParameterSets(tt.in); got != tt.ps {
				t.Errorf("H265HasParameterSets = %v, want %v", got, tt.ps)
			}
		})
	}
}

func TestSplitAccessUnitsH265SampleFile(t *testing.T) {
	aus, err := media.SplitAccessUnitsH265(readFile(t, sampleH265))
	if err != nil {
		t.Fatal(err)
	}
	if len(aus) != 250 {
		t.Fatalf("got %d access units, want 250 (10 s at 25 fps)", len(aus))
	}
	keys := 0
	for i, au := range aus {
		if !bytes.HasPrefix(au.Payload, []byte{0, 0, 0, 1}) {
			t.Fatalf("AU %d does not start with a 4-byte start code", i)
		}
		if au.Key != (i%25 == 0) {
			t.Errorf("AU %d key = %v, want a keyframe exactly every 25 frames", i, au.Key)
		}
		if au.Key != media.IsH265Keyframe(au.Payload) {
			t.Errorf("AU %d: Key %v but IsH265Keyframe %v", i, au.Key, !au.Key)
		}
		if au.Key {
			keys++
			if !media.H265HasParameterSets(au.Payload) {
				t.Errorf("keyframe AU %d lacks VPS/SPS/PPS", i)
			}
		}
	}
	if keys != 10 {
		t.Errorf("got %d keyframes, want 10", keys)
	}
	checkIdempotentH265(t, aus)

	// The file source reads the same units.
	units, err := media.ReadAccessUnits(sampleH265)
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != len(aus) || !bytes.Equal(units[249].Payload, aus[249].Payload) {
		t.Errorf("ReadAccessUnits gave %d access units, want the same %d as the splitter", len(units), len(aus))
	}
}

// TestSplitAccessUnitsH265AgreesWithFFprobe checks the split against an
// independent parser: ffprobe's HEVC parser must find as many frames, with
// keyframes at the same positions.
func TestSplitAccessUnitsH265AgreesWithFFprobe(t *testing.T) {
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Skip("ffprobe not installed")
	}
	out, err := exec.Command(ffprobe, "-v", "error", "-f", "hevc", "-show_entries", "packet=flags",
		"-of", "csv=p=0", sampleH265).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	lines := strings.Fields(string(out))
	aus, err := media.SplitAccessUnitsH265(readFile(t, sampleH265))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(aus) {
		t.Fatalf("ffprobe counts %d frames, the splitter %d access units", len(lines), len(aus))
	}
	for i, flags := range lines {
		if k := strings.HasPrefix(flags, "K"); k != aus[i].Key {
			t.Errorf("frame %d: ffprobe keyframe %v (flags %q), splitter %v", i, k, flags, aus[i].Key)
		}
	}
}

func FuzzSplitAccessUnitsH265(f *testing.F) {
	f.Add(annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5TRAIL, h5TRAIL))
	f.Add(annexB3(h5AUD, h5VPS, h5SPS, h5PPS, h5IDR, h5IDR2, h5FD, h5SuffixSEI, h5AUD, h5TRAIL, h5TRAIL2, h5EOS))
	f.Add(annexB(h5VPS, h5SPS, h5PPS, h5IDR, h5SEI, h5CRA, h5SPS2, h5TRAIL, h5TRAILL1, h5PPSL1, h5IDR))
	f.Add(concat([]byte{0xff, 0, 0}, annexB(h5IDR), []byte{0, 0, 0, 0}, annexB("\x02", h5RSV41, h5TRAIL)))
	f.Fuzz(func(t *testing.T, data []byte) {
		aus, err := media.SplitAccessUnitsH265(data)
		if err != nil {
			if len(media.SplitNALUs(data)) != 0 {
				t.Fatalf("error %v although the input has NAL units", err)
			}
			return
		}
		for i, au := range aus {
			if !bytes.HasPrefix(au.Payload, []byte{0, 0, 0, 1}) || len(au.Payload) < 6 {
				t.Fatalf("AU %d = %x: not a start code followed by a NAL unit", i, au.Payload)
			}
			if au.Payload[len(au.Payload)-1] == 0 {
				t.Fatalf("AU %d ends with a zero byte", i)
			}
			vcl, irap := false, false
			for _, nal := range media.SplitNALUs(au.Payload) {
				if len(nal) < 2 {
					t.Fatalf("AU %d keeps a NAL unit shorter than its header: %x", i, nal)
				}
				switch typ := (nal[0] >> 1) & 0x3f; {
				case typ == 35 || typ == 38:
					t.Fatalf("AU %d keeps NAL type %d", i, typ)
				case typ < 32:
					vcl = true
					irap = irap || (typ >= 16 && typ <= 23)
				}
			}
			if !vcl || au.Key != irap {
				t.Fatalf("AU %d: slice present %v, Key %v, IRAP segment present %v", i, vcl, au.Key, irap)
			}
		}
		checkIdempotentH265(t, aus)
	})
}

// checkIdempotentH265 splits the concatenated output again and expects the
// same access units.
func checkIdempotentH265(t testing.TB, aus []media.AccessUnit) {
	t.Helper()
	if len(aus) == 0 {
		return
	}
	var joined []byte
	for _, au := range aus {
		joined = append(joined, au.Payload...)
	}
	again, err := media.SplitAccessUnitsH265(joined)
	if err != nil {
		t.Fatalf("re-split: %v", err)
	}
	if len(again) != len(aus) {
		t.Fatalf("re-split gave %d access units, want %d", len(again), len(aus))
	}
	for i := range aus {
		if !bytes.Equal(again[i].Payload, aus[i].Payload) || again[i].Key != aus[i].Key {
			t.Fatalf("re-split AU %d = {%x key=%v}, want {%x key=%v}", i, again[i].Payload, again[i].Key, aus[i].Payload, aus[i].Key)
		}
	}
}
