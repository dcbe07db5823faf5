package p2p

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v4/vnet"
	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"

	"github.com/ipcd/ipcd/media"
)

// natKind is a home router's NAT as the Tuya guide names them, expressed as
// vnet mapping and filtering behaviours (RFC 4787).
type natKind struct {
	name               string
	mapping, filtering vnet.EndpointDependencyType
}

var natKinds = []natKind{
	{"full cone", vnet.EndpointIndependent, vnet.EndpointIndependent},
	{"restricted cone", vnet.EndpointIndependent, vnet.EndpointAddrDependent},
	{"port restricted cone", vnet.EndpointIndependent, vnet.EndpointAddrPortDependent},
	{"symmetric", vnet.EndpointAddrPortDependent, vnet.EndpointAddrPortDependent},
}

// tuyaPossible is the Tuya guide's table of direct (hole-punched)
// connectivity: [device NAT][viewer NAT], indices of natKinds.
var tuyaPossible = [4][4]bool{
	{true, true, true, true},
	{true, true, true, true},
	{true, true, true, false},
	{true, true, false, false},
}

const (
	natServerIP = "1.2.3.4"
	natTURNUser = "viewer"
	natTURNPass = "vnet-turn-pass"
)

// natWorld is one virtual internet: a STUN/TURN server on the WAN, the
// device behind one NAT and the viewer behind another.
type natWorld struct {
	wan            *vnet.Router
	device, viewer *vnet.Net
	server         *turn.Server
}

// vnetBuild serializes building virtual networks: vnet draws MAC
// addresses from a package-level counter without a lock.
var vnetBuild sync.Mutex

func newNATWorld(t testing.TB, dev, view natKind, wanCfg func(*vnet.RouterConfig)) *natWorld {
	t.Helper()
	vnetBuild.Lock()
	defer vnetBuild.Unlock()
	quiet := newPionLogs(slog.New(slog.DiscardHandler))
	cfg := &vnet.RouterConfig{CIDR: "0.0.0.0/0", LoggerFactory: quiet}
	if wanCfg != nil {
		wanCfg(cfg)
	}
	wan, err := vnet.NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srvNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{natServerIP}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(srvNet); err != nil {
		t.Fatal(err)
	}
	lan := func(k natKind, global, local string) *vnet.Net {
		r, err := vnet.NewRouter(&vnet.RouterConfig{
			StaticIPs:     []string{global},
			CIDR:          local + "/24",
			NATType:       &vnet.NATType{MappingBehavior: k.mapping, FilteringBehavior: k.filtering, MappingLifeTime: 30 * time.Second},
			LoggerFactory: quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{local}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.AddNet(n); err != nil {
			t.Fatal(err)
		}
		if err := wan.AddRouter(r); err != nil {
			t.Fatal(err)
		}
		return n
	}
	w := &natWorld{wan: wan, device: lan(dev, "27.1.1.1", "10.1.0.2"), viewer: lan(view, "28.1.1.1", "10.2.0.2")}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	pc, err := srvNet.ListenPacket("udp4", natServerIP+":3478")
	if err != nil {
		t.Fatal(err)
	}
	w.server, err = turn.NewServer(turn.ServerConfig{
		Realm:         "ipcd.test",
		LoggerFactory: quiet,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if ra.Username != natTURNUser {
				return "", nil, false
			}
			return ra.Username, turn.GenerateAuthKey(ra.Username, ra.Realm, natTURNPass), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP(natServerIP), Address: "0.0.0.0", Net: srvNet,
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.server.Close()
		_ = wan.Stop()
	})
	return w
}

// natCell is what one pair of NATs measured.
type natCell struct {
	streamed  bool
	candidate string // the device's side of the selected pair
	ttff      time.Duration
}

// runNATCell runs one session between a device and a viewer of w: the
// device gets the servers of token in the offer, the viewer STUN only. It
// reports whether the viewer received 10 frames within wait.
func runNATCell(t testing.TB, w *natWorld, ring *media.Ring, token []ICEServer, wait time.Duration) natCell {
	d := startDevice(t, Media{Main: ring}, Config{Net: w.device, LivenessTimeout: wait}, nil)
	se := &webrtc.SettingEngine{}
	se.SetNet(w.viewer)
	se.SetICETimeouts(wait/2, wait/2, time.Second)
	v := newRTPViewer(t, viewerOptions{se: se, config: webrtc.Configuration{
		ICEServers: []webrtc.ICEServer{{URLs: []string{"stun:" + natServerIP + ":3478"}}},
	}})
	defer v.close()
	defer d.stop()
	start := time.Now()
	v.connect(t, d, "nat0001", token)
	var c natCell
	deadline := time.After(wait)
	for n := 0; n < 10; {
		select {
		case <-v.frames:
			n++
			if n == 1 {
				c.ttff = time.Since(start)
			}
		case <-deadline:
			return c
		}
	}
	c.streamed = true
	c.candidate = sessionStats(t, d).CandidateType
	return c
}

// TestNATMatrix reproduces the Tuya guide's NAT table on pion's virtual
// network: with STUN only, exactly the 13 "possible" pairs connect and
// stream; with a TURN server in the offer's token all 16 do, the other 3
// over the relay.
func TestNATMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("16 sessions twice")
	}
	noLeaks(t)
	ring := fileRing(t, mediaDir+"main.h264", media.StreamMain, media.CodecH264, 25)
	stun := ICEServer{URLs: URLList{"stun:" + natServerIP + ":3478"}}
	turnSrv := ICEServer{URLs: URLList{"turn:" + natServerIP + ":3478?transport=udp"}, Username: natTURNUser, Credential: natTURNPass, TTL: 600}
	for _, tc := range []struct {
		name  string
		token []ICEServer
	}{
		{"stun", []ICEServer{stun}},
		{"turn", []ICEServer{stun, turnSrv}},
	} {
		var mu sync.Mutex
		var cells [4][4]natCell
		t.Run(tc.name, func(t *testing.T) {
			for i, dev := range natKinds {
				for j, view := range natKinds {
					t.Run(fmt.Sprintf("%d%d", i, j), func(t *testing.T) {
						t.Parallel()
						w := newNATWorld(t, dev, view, nil)
						// Pairs that cannot connect directly fail after
						// this; those that can take well under a second.
						c := runNATCell(t, w, ring, tc.token, 8*time.Second)
						mu.Lock()
						cells[i][j] = c
						mu.Unlock()
					})
				}
			}
		})
		var b strings.Builder
		fmt.Fprintf(&b, "NAT table with %s (rows: device, columns: viewer; direct/relay and time to first frame):\n%-22s", tc.name, "")
		for _, k := range natKinds {
			fmt.Fprintf(&b, "| %-22s", k.name)
		}
		b.WriteString("\n")
		total := 0
		for i, dev := range natKinds {
			fmt.Fprintf(&b, "%-22s", dev.name)
			for j := range natKinds {
				c := cells[i][j]
				cell := "not possible"
				if c.streamed {
					total++
					cell = fmt.Sprintf("%s %v", c.candidate, c.ttff.Round(time.Millisecond))
				}
				fmt.Fprintf(&b, "| %-22s", cell)
				switch want := tuyaPossible[i][j]; {
				case tc.name == "stun" && c.streamed != want:
					t.Errorf("%s device, %s viewer, STUN only: streamed %v, the guide says possible %v", dev.name, natKinds[j].name, c.streamed, want)
				case tc.name == "turn" && !c.streamed:
					t.Errorf("%s device, %s viewer, with TURN: did not stream", dev.name, natKinds[j].name)
				case tc.name == "turn" && !want && c.candidate != "relay":
					t.Errorf("%s device, %s viewer, with TURN: streamed over %s, want relay", dev.name, natKinds[j].name, c.candidate)
				}
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%d/16 streamed\n", total)
		t.Log(b.String())
	}
}
