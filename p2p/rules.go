package p2p

// Rule names why an input from outside was dropped or refused. The names
// are what the warn log's rule= attribute carries and what docs/protocol.md
// lists; field engineers search for them.
type Rule string

// Input rules of the media stream service.
const (
	RuleMalformed          Rule = "malformed"
	RuleMissingField       Rule = "missing_field"
	RuleUnknownType        Rule = "unknown_type"
	RuleFieldTooLong       Rule = "field_too_long"
	RuleNotThisDevice      Rule = "to_not_this_device"
	RuleDuplicateOffer     Rule = "duplicate_offer"
	RuleBadOffer           Rule = "bad_offer"
	RuleBadSDP             Rule = "bad_sdp"
	RuleTooManyMLines      Rule = "too_many_mlines"
	RuleUnknownSession     Rule = "unknown_session"
	RuleFromMismatch       Rule = "from_mismatch"
	RuleUnexpectedType     Rule = "unexpected_type"
	RuleBadCandidate       Rule = "bad_candidate"
	RuleTooManyCandidates  Rule = "too_many_candidates"
	RuleSessionQueueFull   Rule = "session_queue_full"
	RuleSenderQueueFull    Rule = "sender_queue_full"
	RuleInboxFull          Rule = "inbox_full"
	RuleAuthFailed         Rule = "auth_failed"
	RuleRefusalRateLimited Rule = "refusal_rate_limited"
	RuleSenderRateLimited  Rule = "sender_rate_limited"
	RuleReplyTooLarge      Rule = "reply_too_large"
	RuleOutboxFull         Rule = "outbox_full"
	RulePublishFailed      Rule = "publish_failed"

	RuleFMP4UnexpectedChannel Rule = "fmp4_unexpected_channel"
	RuleFMP4OutOfOrder        Rule = "fmp4_out_of_order"
	RuleFMP4UnknownMessage    Rule = "fmp4_unknown_message"
	RuleFMP4BadValue          Rule = "fmp4_bad_value"

	// RuleSpeakerSink: the speaker failed a write; the session's talkback
	// is dropped.
	RuleSpeakerSink Rule = "speaker_sink"
	// RuleChannelCongested: a slow fmp4Stream channel skipped to the next
	// keyframe.
	RuleChannelCongested Rule = "channel_congested"
	// RuleTooManySSRCs: the viewer's RTP and RTCP named more SSRCs than
	// MaxUnreadSSRCs; the session is closed.
	RuleTooManySSRCs Rule = "too_many_ssrcs"
)

// Bounds on what the service accepts from outside (SPEC §5.3).
const (
	// MaxHeaderField bounds each 302/312 header field.
	MaxHeaderField = 128
	// MaxMLines bounds the media sections of an offer.
	MaxMLines = 16
	// MaxRemoteCandidates bounds the candidates one session takes.
	MaxRemoteCandidates = 64
	// MaxCandidateLine bounds one candidate string.
	MaxCandidateLine = 512
	// MaxPublish bounds every message the device publishes, envelope
	// included: apps and relays drop larger ones.
	MaxPublish = 8 << 10
)

// Refusals the service answers; they are rate limited and summarized like
// drops.
const (
	RuleSessionsFull Rule = "sessions_full"
	RuleNoMemory     Rule = "no_memory"
)
