package media_test

import (
	"bytes"
	"testing"

	"github.com/ipcd/ipcd/media"
)

func FuzzSplitAccessUnitsH264(f *testing.F) {
	f.Add(annexB(nalSPS, nalPPS, nalIDR, nalP, nalP))
	f.Add(annexB3(nalAUD, nalSPS, nalPPS, nalIDR, nalIDR2, nalFiller, nalAUD, nalP, nalP2))
	f.Add(annexB(nalSPS, nalPPS, nalIDR, nalSEI, nalIDR, nalSPS2, nalP, nalIDR))
	f.Add(concat([]byte{0xff, 0, 0}, annexB(nalIDR), []byte{0, 0, 0, 0}))
	f.Add([]byte{0, 0, 1, 0, 0, 0, 1, 0x65})
	f.Fuzz(func(t *testing.T, data []byte) {
		aus, err := media.SplitAccessUnitsH264(data)
		if err != nil {
			if len(media.SplitNALUs(data)) != 0 {
				t.Fatalf("error %v although the input has NAL units", err)
			}
			return
		}
		for i, au := range aus {
			if !bytes.HasPrefix(au.Payload, []byte{0, 0, 0, 1}) || len(au.Payload) < 5 {
				t.Fatalf("AU %d = %x: not a start code followed by a NAL unit", i, au.Payload)
			}
			if au.Payload[len(au.Payload)-1] == 0 {
				t.Fatalf("AU %d ends with a zero byte", i)
			}
			for _, nal := range media.SplitNALUs(au.Payload) {
				if typ := nal[0] & 0x1f; typ == 9 || typ == 12 {
					t.Fatalf("AU %d keeps NAL type %d", i, typ)
				}
			}
		}
		checkIdempotent(t, aus)
	})
}

func FuzzSplitNALUs(f *testing.F) {
	f.Add(annexB(nalSPS, nalPPS, nalIDR))
	f.Add(annexB3(nalP, nalP2))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 0, 0, 1, 0x41, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		nals := media.SplitNALUs(data)
		var joined []byte
		for i, nal := range nals {
			if len(nal) == 0 || nal[len(nal)-1] == 0 {
				t.Fatalf("NAL %d = %x: empty or ends with zero", i, nal)
			}
			if bytes.Contains(nal, []byte{0, 0, 1}) {
				t.Fatalf("NAL %d = %x contains a start code", i, nal)
			}
			joined = append(joined, 0, 0, 0, 1)
			joined = append(joined, nal...)
		}
		again := media.SplitNALUs(joined)
		if len(again) != len(nals) {
			t.Fatalf("re-split gave %d NAL units, want %d", len(again), len(nals))
		}
		for i := range nals {
			if !bytes.Equal(again[i], nals[i]) {
				t.Fatalf("re-split NAL %d = %x, want %x", i, again[i], nals[i])
			}
		}
	})
}
