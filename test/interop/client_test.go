package interop

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/AlexxIT/go2rtc/pkg/core"
	"github.com/AlexxIT/go2rtc/pkg/h264"
	"github.com/AlexxIT/go2rtc/pkg/h264/annexb"
	"github.com/AlexxIT/go2rtc/pkg/h265"
	"github.com/AlexxIT/go2rtc/pkg/tuya"
	"github.com/pion/rtp"
)

// clientResult is what one run of go2rtc's Tuya client reports to the test.
type clientResult struct {
	Error     string  `json:"error,omitempty"`
	DialMS    float64 `json:"dial_ms"`
	TTFFMS    float64 `json:"ttff_ms"`
	Codec     string  `json:"codec"`
	Frames    int     `json:"frames"`
	Bytes     int64   `json:"bytes"`
	TalkBytes int64   `json:"talk_bytes"`
}

// runClient is the test binary re-executed inside the network namespace:
// go2rtc's Tuya client, unmodified, as go2rtc's tuya source drives it. It
// records the video as Annex-B and sends -talk as talkback.
func runClient(args []string) int {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	url := fs.String("url", "", "tuya:// source URL")
	out := fs.String("out", "", "video recording")
	seconds := fs.Float64("seconds", 3, "record this long after the first frame")
	talk := fs.String("talk", "", "PCMU file sent as talkback")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	res := dial(*url, *out, *talk, time.Duration(*seconds*float64(time.Second)))
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

func dial(url, out, talk string, d time.Duration) clientResult {
	start := time.Now()
	prod, err := tuya.Dial(url)
	rec := &recorder{start: start, first: make(chan struct{})}
	rec.res.DialMS = ms(time.Since(start))
	if err != nil {
		rec.res.Error = err.Error()
		return rec.res
	}
	client := prod.(*tuya.Client)
	defer func() { _ = client.Stop() }()

	rec.f, err = os.Create(out)
	if err != nil {
		rec.res.Error = err.Error()
		return rec.res
	}
	defer rec.f.Close()
	defer rec.closeSenders()

	for _, m := range client.GetMedias() {
		switch {
		case m.Kind == core.KindVideo && m.Direction == core.DirectionRecvonly:
			err = rec.receiveVideo(client, m)
		case m.Kind == core.KindAudio && m.Direction == core.DirectionSendonly && talk != "":
			err = rec.sendTalk(client, m, talk)
		}
		if err != nil {
			return rec.result(err)
		}
	}
	go func() { _ = client.Start() }()
	select {
	case <-rec.first:
	case <-time.After(15 * time.Second):
		j, _ := client.MarshalJSON()
		return rec.result(errors.New("no video within 15s: " + string(j)))
	}
	time.Sleep(d)
	return rec.result(nil)
}

// recorder writes the video go2rtc's client receives as Annex-B and counts
// what it receives and sends.
type recorder struct {
	start   time.Time
	f       *os.File
	first   chan struct{}
	once    sync.Once
	isH265  bool
	started bool
	senders []*core.Sender

	mu  sync.Mutex
	res clientResult
}

func (r *recorder) result(err error) clientResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.res.Error = err.Error()
	}
	return r.res
}

func (r *recorder) closeSenders() {
	for _, s := range r.senders {
		s.Close()
	}
}

func (r *recorder) write(p *rtp.Packet) {
	// From the first keyframe that carries its parameter sets on:
	// packets that came before the receivers were made went
	// elsewhere, and they may have been the parameter sets of the
	// first keyframe the receivers see.
	if !r.started && !keyframeWithParams(p.Payload, r.isH265) {
		return
	}
	r.started = true
	r.once.Do(func() {
		r.mu.Lock()
		r.res.TTFFMS = ms(time.Since(r.start))
		r.mu.Unlock()
		close(r.first)
	})
	au := annexb.DecodeAVCC(p.Payload, true)
	r.mu.Lock()
	r.res.Frames++
	r.res.Bytes += int64(len(au))
	_, _ = r.f.Write(au)
	r.mu.Unlock()
}

// receiveVideo attaches the recorder to the answer's video.
func (r *recorder) receiveVideo(client *tuya.Client, m *core.Media) error {
	// go2rtc routes RTP by payload type to the receiver of that
	// codec, and the answer may list one codec under several
	// payload types: a receiver for each. In fmp4Stream mode its
	// codecs come from the skill, main stream first, and the last
	// video receiver takes the channel's video: the main's only.
	name := m.Codecs[0].Name
	r.res.Codec = name
	r.isH265 = name == core.CodecH265
	for _, codec := range m.Codecs {
		if codec.Name != name {
			continue
		}
		rcv, err := client.GetTrack(m, codec)
		if err != nil {
			return err
		}
		sender := core.NewSender(m, codec)
		if name == core.CodecH265 {
			sender.Handler = h265.RTPDepay(codec, r.write)
		} else {
			sender.Handler = h264.RTPDepay(codec, r.write)
		}
		sender.HandleRTP(rcv)
		r.senders = append(r.senders, sender)
	}
	return nil
}

// sendTalk sends the PCMU file talk as talkback from the first frame on.
func (r *recorder) sendTalk(client *tuya.Client, m *core.Media, talk string) error {
	var codec *core.Codec
	for _, c := range m.Codecs {
		if c.Name == core.CodecPCMU {
			codec = c
		}
	}
	if codec == nil {
		return errors.New("no PCMU in the answer's audio")
	}
	pcm, err := os.ReadFile(talk)
	if err != nil {
		return err
	}
	rcv := core.NewReceiver(m, codec)
	if err := client.AddTrack(m, codec, rcv); err != nil {
		return err
	}
	go func() {
		<-r.first
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i+160 <= len(pcm); i += 160 {
			<-tick.C
			rcv.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Timestamp: uint32(i), SequenceNumber: uint16(i / 160)}, Payload: pcm[i : i+160]})
			r.mu.Lock()
			r.res.TalkBytes += 160
			r.mu.Unlock()
		}
	}()
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

var _ = fmt.Sprint

// keyframeWithParams reports whether an AVCC access unit is a keyframe
// that carries its parameter sets: SPS and PPS (and VPS for H.265) before
// the IDR or IRAP picture.
func keyframeWithParams(au []byte, isH265 bool) bool {
	seen := map[byte]bool{}
	for len(au) >= 4 {
		n := int(au[0])<<24 | int(au[1])<<16 | int(au[2])<<8 | int(au[3])
		if n <= 0 || n > len(au)-4 {
			return false
		}
		if isH265 {
			seen[(au[4]>>1)&0x3f] = true
		} else {
			seen[au[4]&0x1f] = true
		}
		au = au[4+n:]
	}
	if isH265 {
		irap := seen[16] || seen[17] || seen[18] || seen[19] || seen[20] || seen[21]
		return seen[32] && seen[33] && seen[34] && irap
	}
	return seen[7] && seen[8] && seen[5]
}
