package viewer

import "github.com/ipcd/ipcd/media"

// VideoSize returns the picture size that the first sequence parameter set
// in an Annex-B access unit declares, after the frame cropping (H.264) or
// conformance window (H.265) is applied. codec is "H264" or "H265" in any
// case, as in Result.Codec or WatchOptions.Codecs. ok is false when the
// access unit carries no SPS of the base layer or the SPS cannot be parsed;
// only keyframes carry one.
//
// After a stream switch this tells which stream an access unit belongs to,
// since the RTP stream itself does not change.
func VideoSize(au []byte, codec string) (w, h int, ok bool) {
	switch parseCodec(codec) {
	case codecH264:
		return media.VideoSize(au, media.CodecH264)
	case codecH265:
		return media.VideoSize(au, media.CodecH265)
	}
	return 0, 0, false
}
