package doctor

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Outcome is what one step found.
type Outcome int

// Outcomes. NotSeen means the log has no line for the step: the step did
// not happen, or the log does not reach that far (not at debug level).
const (
	NotSeen Outcome = iota
	Pass
	Fail
)

func (o Outcome) String() string {
	switch o {
	case Pass:
		return "pass"
	case Fail:
		return "FAIL"
	}
	return "not seen"
}

// Step is one step of the procedure with its evidence.
type Step struct {
	Name     string
	Outcome  Outcome
	Evidence *Record // the line that decided, nil when not seen
	Detail   string  // what was read from it
	Advice   string  // for Fail and NotSeen
}

// Verdict codes, one per session.
const (
	VerdictHealthy          = "healthy"
	VerdictNoOffer          = "offer_not_received"
	VerdictOfferDropped     = "offer_dropped"
	VerdictPrivacy          = "privacy_mode"
	VerdictAuth             = "auth_failed"
	VerdictSessionsFull     = "sessions_full"
	VerdictNoMemory         = "out_of_media_memory"
	VerdictNoAnswer         = "no_answer"
	VerdictNoAppCandidates  = "no_candidates_from_app"
	VerdictNoPath           = "no_ice_path"
	VerdictSourceStopped    = "source_stopped"
	VerdictNoFrames         = "no_frames"
	VerdictConnectedNoVideo = "connected_no_video"
)

// Session is the report of one session id.
type Session struct {
	ID      string
	Steps   []Step
	Verdict string // one of the Verdict codes
	Summary string // the one-line explanation
}

// Report is the whole diagnosis.
type Report struct {
	Service  []Step
	Sessions []Session
}

var (
	reSessionID = regexp.MustCompile(`"sessionid":"([^"\\]{1,128})"`)
	reType      = regexp.MustCompile(`"type":"([a-z_]{1,32})"`)
)

// revMQTT is a received 302 message as the Rev MQTT line shows it.
type revMQTT struct {
	rec     *Record
	session string
	typ     string
}

func parseRev(r *Record) (revMQTT, bool) {
	p, ok := strings.CutPrefix(r.Msg, MsgRevMQTT)
	if !ok || !strings.Contains(p, `"protocol":302`) {
		return revMQTT{}, false
	}
	m := reSessionID.FindStringSubmatch(p)
	t := reType.FindStringSubmatch(p)
	if m == nil || t == nil {
		return revMQTT{}, false
	}
	return revMQTT{rec: r, session: m[1], typ: t[1]}, true
}

// sessionOf returns the session a device line is about.
func sessionOf(r *Record) string {
	if s := r.attr("session"); s != "" {
		return s
	}
	return r.attr("sessionid")
}

// Diagnose walks the procedure over recs. With only set, sessions other
// than that one are left out, and a session with no line at all is
// reported as never having reached the device.
func Diagnose(recs []Record, only string) Report {
	var rep Report
	rep.Service = serviceSteps(recs)
	byID := map[string][]*Record{}
	revs := map[string][]revMQTT{}
	var order []string
	note := func(id string) {
		if _, seen := byID[id]; !seen {
			byID[id] = nil
			order = append(order, id)
		}
	}
	for i := range recs {
		r := &recs[i]
		if rv, ok := parseRev(r); ok {
			note(rv.session)
			revs[rv.session] = append(revs[rv.session], rv)
			continue
		}
		if id := sessionOf(r); id != "" {
			note(id)
			byID[id] = append(byID[id], r)
		}
	}
	if only != "" {
		order = []string{only}
	}
	src := sourceStop(recs)
	for _, id := range order {
		rep.Sessions = append(rep.Sessions, diagnoseSession(id, revs[id], byID[id], recs, src))
	}
	return rep
}

func find(recs []*Record, pred func(*Record) bool) *Record {
	for _, r := range recs {
		if pred(r) {
			return r
		}
	}
	return nil
}

func msgIs(m string) func(*Record) bool {
	return func(r *Record) bool { return strings.HasPrefix(r.Msg, m) }
}

func serviceSteps(recs []Record) []Step {
	all := make([]*Record, len(recs))
	for i := range recs {
		all[i] = &recs[i]
	}
	var steps []Step
	up := Step{Name: "service up (listen ok)", Advice: "the device never reached Ready: check the lifecycle state lines (not activated? clock never trusted? broker never connected?); a device that is not Ready ignores offers (rule=not_ready)"}
	if r := find(all, msgIs(MsgListenOK)); r != nil {
		up.Outcome, up.Evidence = Pass, r
	} else if r := lastOf(all, func(r *Record) bool { return r.Msg == MsgWaitBroker || msgIs(MsgState)(r) }); r != nil && r.Msg == MsgWaitBroker {
		up.Evidence, up.Detail = r, "Ready, but the broker connection of the activated identity never came up"
		up.Advice = "the service starts once the dev_id connection is subscribed: check the mqtt lines after the activation (the broker refusing the activation's MQTT credentials, or the dev_id topic)"
	} else if r != nil {
		up.Evidence, up.Detail = r, "last state "+r.attr("state")
	}
	steps = append(steps, up)

	rev := Step{Name: "MQTT messages received (Rev MQTT:)", Advice: "the device is not connected to the broker or subscribed to the wrong topic: the `mqtt identity` and `mqtt connected` lines name the topics; the log must be at debug level"}
	if r := find(all, msgIs(MsgRevMQTT)); r != nil {
		rev.Outcome, rev.Evidence = Pass, r
	}
	steps = append(steps, rev)

	alive := Step{Name: "sender alive (media send proc alive)", Advice: "printed every 10 s while Ready; a log shorter than that has none"}
	if r := lastOf(all, msgIs(MsgAlive)); r != nil {
		alive.Outcome, alive.Evidence, alive.Detail = Pass, r, "sessions="+r.attr("sessions")
	}
	steps = append(steps, alive)

	feed := Step{Name: "source feeding the ring", Outcome: Pass, Detail: "no source stopped"}
	if r := sourceStop(recs); r != nil {
		feed.Outcome, feed.Evidence, feed.Detail = Fail, r, r.Msg
		feed.Advice = "the capture path stopped feeding: sessions get the buffered frames and then nothing; restart the encoder or check its device"
	} else if r := lastOf(all, msgIs(MsgRingRejected)); r != nil {
		feed.Outcome, feed.Evidence, feed.Detail = Fail, r, "frames rejected"
		feed.Advice = "the capture path feeds bad frames (oversized audio, PTS going backwards, I frame without parameter sets): see the rule counts on the line"
	}
	steps = append(steps, feed)
	return steps
}

// sourceStop returns the last line saying a source stopped feeding.
func sourceStop(recs []Record) *Record {
	var last *Record
	for i := range recs {
		r := &recs[i]
		for _, m := range []string{MsgFileFinished, MsgPipeWriterClosed, MsgPipeStopped, MsgFeedClosed, MsgSourceFailed} {
			if strings.HasPrefix(r.Msg, m) {
				last = r
			}
		}
	}
	return last
}

func lastOf(recs []*Record, pred func(*Record) bool) *Record {
	for i := len(recs) - 1; i >= 0; i-- {
		if pred(recs[i]) {
			return recs[i]
		}
	}
	return nil
}

// sessionDiag builds the steps of one session's diagnosis; the first
// verdict set stands.
type sessionDiag struct {
	s       Session
	id      string
	revs    []revMQTT
	lines   []*Record
	all     []Record
	refused bool
}

func (d *sessionDiag) add(st Step) { d.s.Steps = append(d.s.Steps, st) }

func (d *sessionDiag) verdict(code, summary string) {
	if d.s.Verdict == "" {
		d.s.Verdict, d.s.Summary = code, summary
	}
}

func diagnoseSession(id string, revs []revMQTT, lines []*Record, all []Record, src *Record) Session {
	d := &sessionDiag{s: Session{ID: id}, id: id, revs: revs, lines: lines, all: all}
	offer, appCands, appCand := d.offer()
	d.refusals()
	answer := d.answer(offer)
	_, conn := d.candidatesAndPath(answer, appCands, appCand)
	first, frames, end := d.media()
	// A source that stopped before the session's last line (not at the
	// daemon's shutdown, after it) starved it.
	if src != nil && (len(lines) == 0 || src.N > lines[len(lines)-1].N) {
		src = nil
	}
	if conn.Outcome == Pass {
		switch {
		case src != nil:
			d.verdict(VerdictSourceStopped, fmt.Sprintf("the source stopped feeding (%q at line %d): the session got the buffered frames and then nothing", src.Msg, src.N))
		case first.Outcome != Pass:
			d.verdict(VerdictConnectedNoVideo, first.Advice)
		case frames.Outcome == Fail:
			d.verdict(VerdictNoFrames, frames.Advice)
		case end.Outcome == Fail:
			d.verdict(VerdictNoPath, "connected, then "+MsgSessionTimeout+": "+end.Advice)
		}
	}
	if end.Evidence != nil && end.Evidence.Msg == MsgPrivacy {
		d.verdict(VerdictPrivacy, "closed by privacy mode (close reason 2): turn it off from the app or the board")
	}
	d.verdict(VerdictHealthy, "streamed: "+frames.Detail+", "+first.Detail)
	return d.s
}

// offer finds the offer and counts the app's candidates.
func (d *sessionDiag) offer() (offer Step, appCands int, appCand *Record) {
	offer = Step{Name: "offer received (Rev MQTT: 302 offer)",
		Advice: "the app never asked, or asked another device id (rule=to_not_this_device), or the device was not Ready (rule=not_ready)"}
	for _, rv := range d.revs {
		switch rv.typ {
		case "offer":
			if offer.Evidence == nil {
				offer.Outcome, offer.Evidence = Pass, rv.rec
			}
		case "candidate":
			appCands++
			if appCand == nil {
				appCand = rv.rec
			}
		}
	}
	if offer.Evidence == nil {
		// Say why when the log does.
		for i := range d.all {
			r := &d.all[i]
			if rule := r.attr("rule"); (rule == "not_ready" || rule == "to_not_this_device") && offer.Evidence == nil {
				offer.Evidence, offer.Detail = r, "rule="+rule
			}
		}
		if offer.Evidence == nil && find(d.lines, func(*Record) bool { return true }) != nil {
			offer.Detail = "no Rev MQTT line for it (the log is not at debug level?)"
		}
	}
	d.add(offer)
	if offer.Outcome != Pass && len(d.lines) == 0 {
		d.verdict(VerdictNoOffer, fmt.Sprintf("the device never received the offer of session %s: %s", d.id, offer.Advice))
	}
	return offer, appCands, appCand
}

// refusal adds the step of one way the device refuses an offer.
func (d *sessionDiag) refusal(name, msg, code, advice string, detail func(*Record) string) {
	st := Step{Name: name, Outcome: Pass}
	r := find(d.lines, func(r *Record) bool {
		if msg == MsgDrop302 {
			// Drops of the offer itself; candidates dropped after a
			// refusal are its consequence.
			switch r.attr("rule") {
			case "unknown_session", "from_mismatch", "bad_candidate", "session_queue_full":
				return false
			}
			if t := r.attr("type"); t != "" && t != "offer" {
				return false
			}
		}
		return strings.HasPrefix(r.Msg, msg) && strings.EqualFold(r.Level, "WARN") && r.attr("video_frames") == ""
	})
	if r != nil {
		st.Outcome, st.Evidence, st.Advice = Fail, r, advice
		if detail != nil {
			st.Detail = detail(r)
		}
		d.verdict(code, strings.TrimSpace(strings.TrimSpace(msg+" "+st.Detail)+" — "+advice))
		d.refused = true
	}
	d.add(st)
}

func (d *sessionDiag) refusals() {
	d.refusal("privacy mode off", MsgPrivacy, VerdictPrivacy,
		"privacy mode is on (close reason 2, app code -102): turn it off from the app (312 privacy 0) or the board socket", nil)
	d.refusal("auth ok", MsgAuthFailed, VerdictAuth,
		"close reason 5, app code -105: the stored password (`get p2p passwd = ad****(len N)`) must be the app's; an app that cached an old password or token must refresh it from the cloud",
		func(r *Record) string { return "reason=" + r.attr("reason") })
	d.refusal("a free session slot", MsgSessionsFull, VerdictSessionsFull,
		"close reason 4, app code -104: max_clients sessions were live; right after the user left and re-entered, the old session was still being torn down",
		func(r *Record) string {
			return "sessions=" + r.attr("sessions") + " max_clients=" + r.attr("max_clients")
		})
	d.refusal("media memory available", MsgAllocFailed, VerdictNoMemory,
		"close reason 14, app code -114: the media memory budget (media.memory_mb) is spent; raise it or lower max_clients/nack_buffer", nil)
	d.refusal("offer not dropped (drop 302 message)", MsgDrop302, VerdictOfferDropped,
		"the rule names why: malformed, stale t, too large, duplicate offer…", func(r *Record) string { return "rule=" + r.attr("rule") })
}

func (d *sessionDiag) answer(offer Step) Step {
	answer := Step{Name: "answer sent (Send MQTT Msg.P:302 type=answer)",
		Advice: fmt.Sprintf("no `Send MQTT Msg.P:302` with type answer after the offer of session %s: the device did not answer; see the auth/sessions lines", d.id)}
	if r := find(d.lines, func(r *Record) bool { return strings.HasPrefix(r.Msg, MsgSend302) && r.attr("type") == "answer" }); r != nil {
		answer.Outcome, answer.Evidence = Pass, r
	}
	d.add(answer)
	if offer.Outcome == Pass && answer.Outcome != Pass {
		d.verdict(VerdictNoAnswer, answer.Advice)
	}
	return answer
}

// candidatesAndPath adds the candidate steps of both sides and whether a
// path connected.
func (d *sessionDiag) candidatesAndPath(answer Step, appCands int, appCand *Record) (ac, conn Step) {
	ac = Step{Name: "candidates from the app (Rev MQTT: 302 candidate)",
		Advice: "the app sent no candidates: its network gave it none, or the relay lost them"}
	if appCand != nil {
		ac.Outcome, ac.Evidence, ac.Detail = Pass, appCand, strconv.Itoa(appCands)+" received"
	}
	d.add(ac)

	dc := Step{Name: "candidates from the device (Send MQTT Msg.P:302 type=candidate)",
		Advice: "the device gathered no candidates: check stream.network_interfaces and the ICE servers"}
	devCands := 0
	var devCand *Record
	for _, r := range d.lines {
		if strings.HasPrefix(r.Msg, MsgSend302) && r.attr("type") == "candidate" {
			devCands++
			if devCand == nil {
				devCand = r
			}
		}
	}
	if devCand != nil {
		dc.Outcome, dc.Evidence, dc.Detail = Pass, devCand, strconv.Itoa(devCands)+" sent"
	}
	d.add(dc)

	conn = Step{Name: "connected (peer connection state connected)",
		Advice: "candidates went both ways but no path works (a NAT pair that cannot punch through): a TURN server must be in the offer's token or stream.ice_servers"}
	if r := find(d.lines, func(r *Record) bool { return strings.HasPrefix(r.Msg, MsgPCState) && r.attr("state") == "connected" }); r != nil {
		conn.Outcome, conn.Evidence = Pass, r
	} else if r := find(d.lines, func(r *Record) bool { return strings.HasPrefix(r.Msg, MsgPCState) && r.attr("state") == "failed" }); r != nil {
		conn.Outcome, conn.Evidence = Fail, r
	}
	d.add(conn)
	if answer.Outcome == Pass && conn.Outcome != Pass {
		if ac.Outcome != Pass {
			d.verdict(VerdictNoAppCandidates, fmt.Sprintf("no candidates from the app for session %s and never connected: %s", d.id, ac.Advice))
		} else {
			d.verdict(VerdictNoPath, conn.Advice)
		}
	}
	return ac, conn
}

// media adds the steps of the frames sent and of the session's end.
func (d *sessionDiag) media() (first, frames, end Step) {
	first = Step{Name: "first frame sent",
		Advice: "connected but no frame left: no keyframe yet, or the session's stream has no source"}
	if r := find(d.lines, msgIs(MsgFirstFrame)); r != nil {
		first.Outcome, first.Evidence, first.Detail = Pass, r, "ttff="+r.attr("ttff")
	}
	d.add(first)

	frames = Step{Name: "frames counted (session send video cnt / session end)",
		Advice: "video stuck at 0: no keyframe, or the app stopped video (video_stop)"}
	if video, r := videoFrames(d.lines); r != nil {
		frames.Evidence, frames.Detail = r, fmt.Sprintf("video frames %d", video)
		frames.Outcome = Pass
		if video == 0 {
			frames.Outcome = Fail
		}
	}
	d.add(frames)

	end = Step{Name: "ended", Outcome: Pass, Detail: "still running at the end of the log"}
	if d.refused {
		end.Detail = "refused"
	}
	if r := lastOf(d.lines, func(r *Record) bool { return r.attr("video_frames") != "" }); r != nil {
		end.Evidence, end.Detail = r, r.Msg
		if r.Msg == MsgSessionTimeout {
			end.Outcome, end.Advice = Fail, "the peer went silent for stream.liveness_timeout"
		}
	}
	d.add(end)
	return first, frames, end
}

// videoFrames is the last video frame count the session's lines report,
// with the line; nil when none does.
func videoFrames(lines []*Record) (int64, *Record) {
	var video int64 = -1
	var rec *Record
	for _, r := range lines {
		if v := r.attr("video_frames"); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				video, rec = n, r
			}
		}
		if strings.HasPrefix(r.Msg, MsgVideoCnt) {
			if n, err := strconv.ParseInt(r.attr("frames"), 10, 64); err == nil {
				video, rec = n, r
			}
		}
	}
	return video, rec
}

// Write prints the report: each step with its outcome, evidence and
// advice, then one verdict line per session.
func (rep Report) Write(w io.Writer) {
	fmt.Fprintln(w, "service")
	for _, st := range rep.Service {
		writeStep(w, st)
	}
	for _, s := range rep.Sessions {
		fmt.Fprintf(w, "\nsession %s\n", s.ID)
		for _, st := range s.Steps {
			writeStep(w, st)
		}
	}
	fmt.Fprintln(w)
	if len(rep.Sessions) == 0 {
		fmt.Fprintln(w, "verdict: no session in the log")
	}
	for _, s := range rep.Sessions {
		fmt.Fprintf(w, "verdict %s: %s: %s\n", s.ID, s.Verdict, s.Summary)
	}
}

func writeStep(w io.Writer, st Step) {
	fmt.Fprintf(w, "  [%-8s] %s", st.Outcome, st.Name)
	if st.Detail != "" {
		fmt.Fprintf(w, ": %s", st.Detail)
	}
	fmt.Fprintln(w)
	if st.Evidence != nil {
		fmt.Fprintf(w, "             line %d: %s\n", st.Evidence.N, cut(st.Evidence.Raw, 240))
	}
	if st.Outcome != Pass && st.Advice != "" {
		fmt.Fprintf(w, "             advice: %s\n", st.Advice)
	}
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
