package media_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ipcd/ipcd/media"
)

const sampleH264 = "../configs/media/main.h264"

func TestSplitNALUs(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []string
	}{
		{"4-byte start codes", annexB(nalSPS, nalPPS, nalIDR), []string{nalSPS, nalPPS, nalIDR}},
		{"3-byte start codes", annexB3(nalSPS, nalPPS, nalIDR), []string{nalSPS, nalPPS, nalIDR}},
		{"mixed start codes", concat(annexB(nalSPS), annexB3(nalPPS), annexB(nalIDR)), []string{nalSPS, nalPPS, nalIDR}},
		{"leading junk ignored", concat([]byte{0xff, 0x01, 0x00}, annexB(nalP)), []string{nalP}},
		{"trailing zeros stripped", concat(annexB(nalP), []byte{0, 0, 0, 0}, annexB3(nalP2), []byte{0}), []string{nalP, nalP2}},
		{"empty NAL units skipped", concat(annexB(), []byte{0, 0, 1, 0, 0, 0, 1}, annexB(nalP), []byte{0, 0, 1}), []string{nalP}},
		{"no start code", []byte{0x65, 0x88, 0x84}, nil},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := media.SplitNALUs(tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d NAL units %x, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if string(got[i]) != tt.want[i] {
					t.Errorf("NAL %d = %x, want %x", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestSplitNALUsDoesNotAliasFollowingBytes(t *testing.T) {
	in := annexB(nalSPS, nalPPS)
	nals := media.SplitNALUs(in)
	_ = append(nals[0], 0xee)
	if string(media.SplitNALUs(in)[1]) != nalPPS {
		t.Fatalf("appending to a returned NAL unit overwrote the input")
	}
}

type wantAU struct {
	payload []byte
	key     bool
}

func TestSplitAccessUnitsH264(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []wantAU
	}{
		{
			name: "4-byte start codes",
			in:   annexB(nalSPS, nalPPS, nalIDR, nalP, nalP),
			want: []wantAU{{annexB(nalSPS, nalPPS, nalIDR), true}, {annexB(nalP), false}, {annexB(nalP), false}},
		},
		{
			name: "3-byte start codes normalised to 4",
			in:   annexB3(nalSPS, nalPPS, nalIDR, nalP, nalP),
			want: []wantAU{{annexB(nalSPS, nalPPS, nalIDR), true}, {annexB(nalP), false}, {annexB(nalP), false}},
		},
		{
			name: "junk before first start code and trailing zeros",
			in:   concat([]byte{0x12, 0x34}, annexB(nalSPS, nalPPS, nalIDR), []byte{0, 0}, annexB3(nalP), []byte{0, 0, 0}),
			want: []wantAU{{annexB(nalSPS, nalPPS, nalIDR), true}, {annexB(nalP), false}},
		},
		{
			name: "AUD and filler dropped",
			in:   annexB(nalAUD, nalSPS, nalPPS, nalIDR, nalFiller, nalAUD, nalP, nalFiller, nalAUD, nalP),
			want: []wantAU{{annexB(nalSPS, nalPPS, nalIDR), true}, {annexB(nalP), false}, {annexB(nalP), false}},
		},
		{
			name: "parameter sets inserted before a bare IDR",
			in:   annexB(nalSPS, nalPPS, nalIDR, nalP, nalSEI, nalIDR, nalP),
			want: []wantAU{
				{annexB(nalSPS, nalPPS, nalIDR), true}, {annexB(nalP), false},
				{annexB(nalSPS, nalPPS, nalSEI, nalIDR), true}, {annexB(nalP), false},
			},
		},
		{
			name: "most recent parameter sets inserted",
			in:   annexB(nalSPS, nalPPS, nalIDR, nalSPS2, nalPPS, nalP, nalIDR),
			want: []wantAU{
				{annexB(nalSPS, nalPPS, nalIDR), true}, {annexB(nalSPS2, nalPPS, nalP), false},
				{annexB(nalSPS2, nalPPS, nalIDR), true},
			},
		},
		{
			name: "only the missing parameter set inserted",
			in:   annexB(nalSPS, nalPPS, nalIDR, nalPPS, nalIDR),
			want: []wantAU{{annexB(nalSPS, nalPPS, nalIDR), true}, {annexB(nalSPS, nalPPS, nalIDR), true}},
		},
		{
			name: "multi-slice pictures",
			in:   annexB(nalSPS, nalPPS, nalIDR, nalIDR2, nalP, nalP2, nalP2, nalP),
			want: []wantAU{
				{annexB(nalSPS, nalPPS, nalIDR, nalIDR2), true},
				{annexB(nalP, nalP2, nalP2), false},
				{annexB(nalP), false},
			},
		},
		{
			name: "SEI after a slice starts the next access unit",
			in:   annexB(nalSPS, nalPPS, nalIDR, nalSEI, nalP),
			want: []wantAU{{annexB(nalSPS, nalPPS, nalIDR), true}, {annexB(nalSEI, nalP), false}},
		},
		{
			name: "trailing NAL units without a slice discarded",
			in:   annexB(nalSPS, nalPPS, nalIDR, nalSPS, nalPPS),
			want: []wantAU{{annexB(nalSPS, nalPPS, nalIDR), true}},
		},
		{
			name: "IDR with no parameter sets anywhere stays bare",
			in:   annexB(nalIDR, nalP),
			want: []wantAU{{annexB(nalIDR), true}, {annexB(nalP), false}},
		},
		{
			name: "parameter sets without slices",
			in:   annexB(nalSPS, nalPPS),
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := media.SplitAccessUnitsH264(tt.in)
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
			checkIdempotent(t, got)
		})
	}
}

func TestSplitAccessUnitsH264NoNALUnits(t *testing.T) {
	for _, in := range [][]byte{nil, {}, {0x65, 0x88}, {0, 0, 0, 0}, {0, 0, 1}, {0, 0, 1, 0, 0}} {
		if _, err := media.SplitAccessUnitsH264(in); !errors.Is(err, media.ErrNoNALUnits) {
			t.Errorf("SplitAccessUnitsH264(%x) error = %v, want ErrNoNALUnits", in, err)
		}
	}
}

func TestH264AUSplitterStreaming(t *testing.T) {
	// Push copies: a caller reusing its read buffer must not corrupt output.
	var s media.H264AUSplitter
	var got []media.AccessUnit
	scratch := make([]byte, 0, 64)
	for _, nal := range []string{nalSPS, nalPPS, nalIDR, nalP, nalP} {
		scratch = append(scratch[:0], nal...)
		if au, ok := s.Push(scratch); ok {
			got = append(got, au)
		}
		for i := range scratch {
			scratch[i] = 0xee
		}
	}
	if au, ok := s.Flush(); ok {
		got = append(got, au)
	}
	want, err := media.SplitAccessUnitsH264(annexB(nalSPS, nalPPS, nalIDR, nalP, nalP))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d access units, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].Payload, want[i].Payload) || got[i].Key != want[i].Key {
			t.Errorf("AU %d = %x, want %x", i, got[i].Payload, want[i].Payload)
		}
	}
	if _, ok := s.Flush(); ok {
		t.Error("second Flush returned an access unit")
	}
}

func TestSplitAccessUnitsH264SampleFile(t *testing.T) {
	data := readFile(t, sampleH264)
	aus, err := media.SplitAccessUnitsH264(data)
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
		if au.Key != media.IsH264Keyframe(au.Payload) {
			t.Errorf("AU %d: Key %v but IsH264Keyframe %v", i, au.Key, !au.Key)
		}
		if au.Key {
			keys++
			if !media.H264HasParameterSets(au.Payload) {
				t.Errorf("keyframe AU %d lacks SPS/PPS", i)
			}
		}
	}
	if keys != 10 {
		t.Errorf("got %d keyframes, want 10", keys)
	}
	checkIdempotent(t, aus)
}

func TestIsH264KeyframeAndParameterSets(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		key, ps bool
	}{
		{"IDR with parameter sets", annexB(nalSPS, nalPPS, nalSEI, nalIDR), true, true},
		{"bare IDR", annexB3(nalIDR), true, false},
		{"IDR with SPS only", annexB(nalSPS, nalIDR), true, false},
		{"P with parameter sets", annexB(nalSPS, nalPPS, nalP), false, true},
		{"P", annexB(nalP), false, false},
		{"parameter sets after the slice do not count", annexB(nalIDR, nalSPS, nalPPS), true, false},
		{"empty", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := media.IsH264Keyframe(tt.in); got != tt.key {
				t.Errorf("IsH264Keyframe = %v, want %v", got, tt.key)
			}
			if got := media.H264HasParameterSets(tt.in); got != tt.ps {
				t.Errorf("H264HasParameterSets = %v, want %v", got, tt.ps)
			}
		})
	}
	if !media.H265HasParameterSets(annexB(nalH5VPS, nalH5SPS, nalH5PPS, nalH5IDR)) {
		t.Error("H265HasParameterSets = false for VPS+SPS+PPS+IDR")
	}
	if media.H265HasParameterSets(annexB(nalH5SPS, nalH5PPS, nalH5IDR)) {
		t.Error("H265HasParameterSets = true without VPS")
	}
}

// checkIdempotent splits the concatenated output again and expects the same
// access units: the end-to-end test compares streams this way.
func checkIdempotent(t testing.TB, aus []media.AccessUnit) {
	t.Helper()
	if len(aus) == 0 {
		return
	}
	var joined []byte
	for _, au := range aus {
		joined = append(joined, au.Payload...)
	}
	again, err := media.SplitAccessUnitsH264(joined)
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
