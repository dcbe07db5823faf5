package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
	"github.com/ipcd/ipcd/p2p"
)

// ackHolder is a TCP proxy in front of a broker that can hold back the
// PUBACKs the broker sends to its clients, as a broker does that stops
// acknowledging: everything else passes.
type ackHolder struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	hold  bool
	held  []heldAck
	conns []net.Conn
	wg    sync.WaitGroup
}

type heldAck struct {
	w   io.Writer
	pkt []byte
}

func startAckHolder(t *testing.T, broker string) *ackHolder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ackHolder{ln: ln, target: strings.TrimPrefix(broker, "tcp://")}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *ackHolder) url() string { return "tcp://" + p.ln.Addr().String() }

func (p *ackHolder) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(b, c); b.Close() })
		p.wg.Go(func() { p.fromBroker(b, c); c.Close() })
	}
}

// fromBroker forwards MQTT packets from the broker, holding PUBACKs while
// asked to.
func (p *ackHolder) fromBroker(b io.Reader, c io.Writer) {
	r := bufio.NewReader(b)
	for {
		first, err := r.ReadByte()
		if err != nil {
			return
		}
		pkt := []byte{first}
		n, mult := 0, 1
		for {
			d, err := r.ReadByte()
			if err != nil {
				return
			}
			pkt = append(pkt, d)
			n += int(d&0x7f) * mult
			mult *= 128
			if d&0x80 == 0 {
				break
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		pkt = append(pkt, body...)
		p.mu.Lock()
		if p.hold && first>>4 == 4 { // PUBACK
			p.held = append(p.held, heldAck{c, pkt})
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
		if _, err := c.Write(pkt); err != nil {
			return
		}
	}
}

func (p *ackHolder) setHold(on bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = on
	n := len(p.held)
	if !on {
		for _, h := range p.held {
			_, _ = h.w.Write(h.pkt)
		}
		p.held = nil
	}
	return n
}

// TestBrokerStopsAcknowledging: while the broker acknowledges nothing the
// device publishes, the service loop goes on: an offer is processed and
// answered, running sessions stream, and once the broker recovers what was
// queued leaves or is counted as dropped.
func TestBrokerStopsAcknowledging(t *testing.T) {
	leakCheck(t)
	broker := mqtttest.Embedded(t)
	proxy := startAckHolder(t, broker)
	cfg := testConfig(proxy.url())
	rd := startDaemon(t, cfg)
	v := newViewer(t, broker) // the app talks to the broker directly

	w := startWatch(t, v, viewer.WatchOptions{})
	waitFor(t, 15*time.Second, "the first session", func() bool { return w.fl.count() > 5 })

	proxy.setHold(true)
	// Three refusals, then an offer: each reply waits for an
	// acknowledgement that does not come (3 s each); the loop must not.
	topicIn, _ := deviceTopics(cfg)
	raw := rawClient(t, broker, "bad-app")
	for i := range 3 {
		h := p2p.Header{Type: p2p.TypeOffer, From: "bad-app", To: testDevID, SessionID: fmt.Sprintf("bad%d", i)}
		raw.Publish(topicIn, 1, false, offerEnvelope(t, h, p2p.Offer{Mode: p2p.ModeWebRTC, SDP: sampleOfferSDP(t), Auth: "1.x"})).Wait()
	}
	id := "during-stall"
	w2 := startWatch(t, v, viewer.WatchOptions{SessionID: id})
	rd.log.waitLog(t, 2*time.Second, "session start", "session="+id)
	n := w.fl.count()
	waitFor(t, 5*time.Second, "the first session streaming through the stall", func() bool { return w.fl.count() > n+25 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if got := len(rd.d.running.Load().Sessions(ctx)); got != 2 {
		t.Errorf("service loop answered with %d sessions during the stall, want 2", got)
	}
	cancel()
	held := proxy.setHold(false)
	t.Logf("%d acknowledgements held", held)
	if held == 0 {
		t.Fatal("no acknowledgement was held: the stall did not happen")
	}
	waitFor(t, 20*time.Second, "the session offered during the stall to stream", func() bool { return w2.fl.count() > 5 })
	svc := rd.d.running.Load()
	waitFor(t, 10*time.Second, "the outbox to drain", func() bool {
		st := svc.Outbox()
		return st.Sent+st.Dropped+st.Failed > 0 && len(rd.log.lines("Send MQTT Msg.P:302", "sessionid="+id)) > 0
	})
	st := svc.Outbox()
	t.Logf("outbox: sent %d, dropped %d, failed %d", st.Sent, st.Dropped, st.Failed)
	w.stop()
	w2.stop()
	if w.err != nil || w2.err != nil {
		t.Fatalf("sessions: %v / %v", w.err, w2.err)
	}
	got, _ := w.fl.snapshot()
	checkContiguous(t, sourceAUs(t), got)
}
