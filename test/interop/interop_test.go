// Package interop drives ipcd with go2rtc's Tuya client, unmodified: a
// fake of the cloud endpoints it calls, mosquitto, a relay between its
// topics and the device's, and the client in a network namespace of its
// own, since it gathers no loopback candidates.
package interop

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/p2p"
)

const (
	cloudHost  = "openapi.tuyaus.com"
	brokerHost = "m1.tuyaus.com"
	devID      = "6c1e0000go2rtc01"
	uid        = "az1700000000000001"
	motoID     = "moto_ipcd_01"
	p2pPass    = "ad2rtc12"
	hostAddr   = "10.231.7.1"
	nsAddr     = "10.231.7.2"
	brokerPort = 18883
	mediaDir   = "../../configs/media/"
)

func TestMain(m *testing.M) {
	if os.Getenv("IPCD_INTEROP_CLIENT") == "1" {
		os.Exit(runClient(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// env is one namespace, broker, cloud and relay shared by the scenarios.
type env struct {
	ns, vethHost string
	dir, ca      string
	ipcdBin      string
	broker       string
	cloud        *cloud
}

// need skips the test (fails it under CI=true) when a part is missing.
func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("interop: %s is required under CI", what)
	}
	t.Skipf("interop: %s missing, skipping", what)
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func setup(t *testing.T) *env {
	t.Helper()
	need(t, os.Geteuid() == 0, "root (network namespaces)")
	_, errIP := exec.LookPath("ip")
	need(t, errIP == nil, "iproute2")
	_, errFF := exec.LookPath("ffprobe")
	need(t, errFF == nil, "ffprobe")
	mosq := "/usr/sbin/mosquitto"
	if _, err := os.Stat(mosq); err != nil {
		mosq, _ = exec.LookPath("mosquitto")
	}
	need(t, mosq != "", "mosquitto")

	e := &env{dir: t.TempDir()}
	tag := fmt.Sprintf("%d", os.Getpid()%100000)
	e.ns, e.vethHost = "ipcdi"+tag, "ipcdh"+tag
	vethNS := "ipcdn" + tag
	run(t, "ip", "netns", "add", e.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", e.ns).Run() })
	run(t, "ip", "link", "add", e.vethHost, "type", "veth", "peer", "name", vethNS)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", e.vethHost).Run() })
	run(t, "ip", "link", "set", vethNS, "netns", e.ns)
	run(t, "ip", "addr", "add", hostAddr+"/24", "dev", e.vethHost)
	run(t, "ip", "link", "set", e.vethHost, "up")
	run(t, "ip", "netns", "exec", e.ns, "ip", "addr", "add", nsAddr+"/24", "dev", vethNS)
	run(t, "ip", "netns", "exec", e.ns, "ip", "link", "set", vethNS, "up")
	run(t, "ip", "netns", "exec", e.ns, "ip", "link", "set", "lo", "up")
	// ip netns exec bind-mounts /etc/netns/NAME/hosts over /etc/hosts: the
	// cloud's names resolve to this side of the veth pair, and the
	// namespace has no route anywhere else.
	etc := filepath.Join("/etc/netns", e.ns)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.RemoveAll(etc)
		_ = os.Remove("/etc/netns") // only when no other namespace uses it
	})
	hosts := fmt.Sprintf("127.0.0.1 localhost\n%s %s %s\n", hostAddr, cloudHost, brokerHost)
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}

	e.ca = filepath.Join(e.dir, "ca.pem")
	tlsCfg := makeCA(t, e.ca, cloudHost)
	e.cloud = startCloud(t, tlsCfg)
	e.broker = startMosquitto(t, mosq, e.dir)
	startRelay(t, e.broker)
	e.ipcdBin = filepath.Join(e.dir, "ipcd")
	// Built in ipcd's own module, with its own pins.
	build := exec.Command("go", "build", "-o", e.ipcdBin, "./cmd/ipcd")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ipcd: %v: %s", err, out)
	}
	return e
}

// makeCA writes a CA made for this run to caPath and returns a server
// config with a certificate it signed for host.
func makeCA(t *testing.T, caPath, host string) *tls.Config {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ipcd interop CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// cloud fakes the three endpoints of Tuya's cloud API that go2rtc's client
// calls: token, webrtc-configs (skill, auth, moto id, ICE servers) and the
// IoT hub's MQTT access.
type cloud struct {
	mu    sync.Mutex
	skill string
	auth  string // "" = a valid token
}

// set describes the camera: main and sub codecs (2 H.264, 4 H.265).
func (c *cloud) set(mainCodec, subCodec int, badAuth bool) {
	skill, _ := json.Marshal(map[string]any{
		"webrtc": 1<<4 | 1<<5,
		"audios": []map[string]int{{"channels": 1, "dataBit": 16, "codecType": 105, "sampleRate": 8000}},
		"videos": []map[string]int{
			{"streamType": 2, "codecType": mainCodec, "width": 640, "height": 360, "sampleRate": 90000},
			{"streamType": 4, "codecType": subCodec, "width": 320, "height": 180, "sampleRate": 90000},
		},
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skill = string(skill)
	c.auth = ""
	if badAuth {
		c.auth = p2p.SignAuth("wrong-password", devID, uid, time.Now().Add(time.Hour).Unix())
	}
}

func startCloud(t *testing.T, cfg *tls.Config) *cloud {
	t.Helper()
	c := &cloud{}
	c.set(2, 2, false)
	reply := func(w http.ResponseWriter, result any) {
		_ = json.NewEncoder(w).Encode(map[string]any{"success": true, "t": time.Now().Unix(), "result": result})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/token", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"uid": uid, "access_token": "at", "refresh_token": "rt", "expire_time": 7200})
	})
	mux.HandleFunc("GET /v1.0/users/{uid}/devices/{dev}/webrtc-configs", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		skill, auth := c.skill, c.auth
		c.mu.Unlock()
		if auth == "" {
			auth = p2p.SignAuth(p2pPass, r.PathValue("dev"), r.PathValue("uid"), time.Now().Add(time.Hour).Unix())
		}
		reply(w, map[string]any{"auth": auth, "id": r.PathValue("dev"), "moto_id": motoID, "skill": skill,
			"p2p_config": map[string]any{"ices": []any{}}, "supports_webrtc": true,
			"audio_attributes": map[string]any{"call_mode": []int{1, 2}, "hardware_capability": []int{1, 2}}})
	})
	mux.HandleFunc("POST /v2.0/open-iot-hub/access/config", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"url": fmt.Sprintf("tcp://%s:%d", brokerHost, brokerPort), "client_id": "go2rtc-" + fmt.Sprint(time.Now().UnixNano()),
			"username": "u", "password": "p", "expire_time": 7200,
			"sink_topic": map[string]string{"ipc": "/av/moto/moto_id/u/{device_id}"}, "source_topic": map[string]string{"ipc": "/av/u/" + uid}})
	})
	ln, err := net.Listen("tcp", hostAddr+":443")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return c
}

// startMosquitto runs mosquitto on the host side of the veth pair, with
// Nagle off as docs/brokers.md asks.
func startMosquitto(t *testing.T, bin, dir string) string {
	t.Helper()
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %d %s\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nlog_dest stderr\n", brokerPort, hostAddr)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort(hostAddr, fmt.Sprint(brokerPort))
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("mosquitto did not start: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "tcp://" + addr
}

// startRelay plays the cloud's part between the app's topics and the
// device's: /av/moto/<moto_id>/u/<devId> to smart/device/in/<devId>, and
// the device's replies to /av/u/<header.to>.
func startRelay(t *testing.T, broker string) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("relay"))
	if tok := c.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	sub := func(topic string, h func(string, []byte)) {
		if tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { h(m.Topic(), m.Payload()) }); tok.Wait() && tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	sub("/av/moto/+/u/+", func(topic string, b []byte) {
		dev := topic[strings.LastIndex(topic, "/")+1:]
		c.Publish("smart/device/in/"+dev, 1, false, b)
	})
	sub("smart/device/out/+", func(_ string, b []byte) {
		env, err := mqtt.DecodeEnvelope(b)
		if err != nil {
			return
		}
		var m struct {
			Header struct {
				To string `json:"to"`
			} `json:"header"`
		}
		if json.Unmarshal(env.Data, &m) == nil && m.Header.To != "" {
			c.Publish("/av/u/"+m.Header.To, 1, false, b)
		}
	})
}

// device is one ipcd process.
type device struct {
	log     *bytes.Buffer
	speaker string
	mu      *sync.Mutex
}

func (d device) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// writeConfig writes an ipcd configuration with main and sub files and the
// speaker written to a file; extra is appended to the stream section.
func (e *env) writeConfig(t *testing.T, main, sub, extra string) (path, speaker string) {
	t.Helper()
	abs := func(p string) string { a, _ := filepath.Abs(mediaDir + p); return a }
	speaker = filepath.Join(t.TempDir(), "speaker.pcmu")
	subSrc := "{type: none}"
	if sub != "" {
		subSrc = fmt.Sprintf("{type: file, path: %s, fps: 25, loop: true}", abs(sub))
	}
	cfg := fmt.Sprintf(`log: {level: debug}
device:
  uuid: ipc-interop-0001
  authkey: interop-authkey
  store: %s
  activation: {dev_id: %s, local_key: "0123456789abcdef", p2p_password: %s}
mqtt:
  brokers: [%q]
  client_id: ipcd-interop
time: {source: system}
stream:
  network_interfaces: [%s]
%s
media:
  sources:
    main: {type: file, path: %s, fps: 25, loop: true}
    sub: %s
    audio: {type: file, path: %s, codec: pcmu}
  speaker: {type: file, path: %s}
`, filepath.Join(t.TempDir(), "state.json"), devID, p2pPass, e.broker, e.vethHost, extra, abs(main), subSrc, abs("audio.pcmu"), speaker)
	path = filepath.Join(t.TempDir(), "ipcd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, speaker
}

// startIPCD runs the ipcd binary on the configuration of writeConfig.
func (e *env) startIPCD(t *testing.T, main, sub, extra string) device {
	t.Helper()
	path, speaker := e.writeConfig(t, main, sub, extra)
	d := device{log: &bytes.Buffer{}, speaker: speaker, mu: &sync.Mutex{}}
	cmd := exec.Command(e.ipcdBin, "-config", path)
	cmd.Stdout, cmd.Stderr = lockedWriter{d.mu, d.log}, lockedWriter{d.mu, d.log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("ipcd log:\n%s", d.logText())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(d.logText(), "listen ok") {
		if time.Now().After(deadline) {
			t.Fatalf("ipcd did not start:\n%s", d.logText())
		}
		if strings.Contains(d.logText(), "ipcd: config:") {
			t.Fatalf("ipcd config refused:\n%s", d.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

// client runs go2rtc's Tuya client in the namespace once.
func (e *env) client(t *testing.T, resolution string, seconds float64, talk string) (clientResult, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "video")
	url := fmt.Sprintf("tuya://%s?device_id=%s&uid=%s&client_id=cid&client_secret=secret&resolution=%s", cloudHost, devID, uid, resolution)
	args := []string{"netns", "exec", e.ns, "env", "IPCD_INTEROP_CLIENT=1", "SSL_CERT_FILE=" + e.ca, exe,
		"-url", url, "-out", out, "-seconds", fmt.Sprint(seconds)}
	if talk != "" {
		args = append(args, "-talk", talk)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v: %s", err, stderr.String())
	}
	var res clientResult
	if err := json.Unmarshal(stdout, &res); err != nil {
		t.Fatalf("client output %q: %v; stderr: %s", stdout, err, stderr.String())
	}
	return res, out
}

// ffprobe decodes a recording and returns the frame sizes it saw; any
// decoder message fails the test.
func ffprobe(t *testing.T, path, codec string) []string {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-f", codec, "-show_entries", "frame=width,height", "-of", "csv=p=0", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe %s: %v: %s", codec, err, stderr.String())
	}
	var sizes []string
	for _, l := range strings.Fields(string(out)) {
		l = strings.Trim(l, ",")
		if len(sizes) == 0 || sizes[len(sizes)-1] != l {
			sizes = append(sizes, l)
		}
	}
	if len(sizes) == 0 {
		t.Fatalf("ffprobe %s: no frames", codec)
	}
	return sizes
}

func TestGo2rtcTuya(t *testing.T) {
	e := setup(t)
	for _, st := range []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"h264 main and sub", tuyaMainAndSub},
		{"312 switch", tuyaSwitch},
		{"h265 main over fmp4Stream", tuyaH265},
		{"talkback", tuyaTalkback},
		{"five immediate re-entries", tuyaReentries},
		{"refusal", tuyaRefusal},
	} {
		t.Run(st.name, func(t *testing.T) { st.run(t, e) })
	}
}

func tuyaMainAndSub(t *testing.T, e *env) {
	e.cloud.set(2, 2, false)
	e.startIPCD(t, "main.h264", "sub.h264", "")
	for _, tc := range []struct{ res, size string }{{"hd", "640,360"}, {"sd", "320,180"}} {
		res, out := e.client(t, tc.res, 2, "")
		if res.Error != "" || res.Frames < 25 || res.Codec != "H264" {
			t.Fatalf("%s: %+v", tc.res, res)
		}
		if sizes := ffprobe(t, out, "h264"); !slices.Equal(sizes, []string{tc.size}) {
			t.Errorf("%s: frame sizes %v, want %s", tc.res, sizes, tc.size)
		}
	}
}

func tuyaSwitch(t *testing.T, e *env) {
	e.cloud.set(2, 2, false)
	d := e.startIPCD(t, "main.h264", "sub.h264", "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The app's 312 through the relay, once the session is up.
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(d.logText(), "first frame sent") {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Second)
		sid := sessionOf(d.logText())
		pub := paho.NewClient(paho.NewClientOptions().AddBroker(e.broker).SetClientID("app-312"))
		if tok := pub.Connect(); tok.Wait() && tok.Error() != nil {
			return
		}
		defer pub.Disconnect(100)
		one := 1
		payload, _ := mqtt.Encode(p2p.ControlProtocol, time.Now(), p2p.Message{
			Header: p2p.Header{Type: p2p.ControlResolution, From: uid, To: devID, SessionID: sid, MotoID: motoID},
			Msg:    mustJSON(p2p.ControlCmd{CmdValue: &one}),
		})
		pub.Publish("/av/moto/"+motoID+"/u/"+devID, 1, false, payload).Wait()
	}()
	res, out := e.client(t, "hd", 4, "")
	<-done
	if res.Error != "" {
		t.Fatalf("%+v", res)
	}
	if sizes := ffprobe(t, out, "h264"); !slices.Equal(sizes, []string{"640,360", "320,180"}) {
		t.Errorf("frame sizes %v, want main then sub", sizes)
	}
}

func tuyaH265(t *testing.T, e *env) {
	e.cloud.set(4, 2, false)
	d := e.startIPCD(t, "main.h265", "sub.h264", "")
	res, out := e.client(t, "hd", 3, "")
	if res.Error != "" || res.Frames < 25 || res.Codec != "H265" {
		t.Fatalf("%+v", res)
	}
	if sizes := ffprobe(t, out, "hevc"); !slices.Equal(sizes, []string{"640,360"}) {
		t.Errorf("frame sizes %v", sizes)
	}
	if !strings.Contains(d.logText(), "fmp4Stream handshake complete") {
		t.Error("no fmp4Stream handshake in the log")
	}
}

func tuyaTalkback(t *testing.T, e *env) {
	e.cloud.set(2, 2, false)
	if !talkbackKnown(t, e) {
		t.Skip("stream.talkback is not a configuration key of this ipcd: talkback without 312 is not built in")
	}
	d := e.startIPCD(t, "main.h264", "", "  talkback: auto")
	talk := filepath.Join(t.TempDir(), "talk.pcmu")
	src, _ := os.ReadFile(mediaDir + "audio.pcmu")
	// 240-byte frames go out whole: send a multiple of them.
	src = src[:len(src)/2/240*240]
	if err := os.WriteFile(talk, src, 0o600); err != nil {
		t.Fatal(err)
	}
	res, _ := e.client(t, "hd", float64(len(src))/8000+1.5, talk)
	if res.Error != "" || res.TalkBytes != int64(len(src)) {
		t.Fatalf("%+v", res)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := os.ReadFile(d.speaker)
		if bytes.Equal(got, src) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("speaker file has %d bytes, sent %d; equal prefix %v", len(got), len(src), bytes.HasPrefix(src, got))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tuyaReentries(t *testing.T, e *env) {
	e.cloud.set(2, 2, false)
	d := e.startIPCD(t, "main.h264", "sub.h264", "")
	for i := range 5 {
		res, _ := e.client(t, "hd", 0.3, "")
		if res.Error != "" || res.Frames == 0 {
			t.Fatalf("entry %d: %+v", i, res)
		}
	}
	if l := grep(d.logText(), "incoming connection refused"); l != "" {
		t.Errorf("re-entry refused:\n%s", l)
	}
}

func tuyaRefusal(t *testing.T, e *env) {
	e.cloud.set(2, 2, true)
	d := e.startIPCD(t, "main.h264", "", "")
	res, _ := e.client(t, "hd", 1, "")
	if res.Error == "" || res.DialMS > 5000 {
		t.Fatalf("bad auth: %+v, want a prompt refusal", res)
	}
	if !strings.Contains(d.logText(), "auth failed") {
		t.Errorf("no auth failed in the log")
	}
	t.Logf("go2rtc reports the refusal as %q after %.0f ms", res.Error, res.DialMS)
}

// talkbackKnown reports whether this ipcd knows stream.talkback: its
// configuration refuses unknown keys by name.
func talkbackKnown(t *testing.T, e *env) bool {
	path, _ := e.writeConfig(t, "main.h264", "", "  talkback: auto")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, e.ipcdBin, "-config", path, "-log-level", "error").CombinedOutput()
	return !strings.Contains(string(out), `unknown key "stream.talkback"`)
}

func grep(log, word string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// sessionOf is the id of the last session the log started.
func sessionOf(log string) string {
	sid := ""
	for _, l := range strings.Split(grep(log, "session start"), "\n") {
		if i := strings.Index(l, "session="); i >= 0 {
			sid = strings.Fields(l[i+len("session="):])[0]
		}
	}
	return sid
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// TestGo2rtcTuyaMeasure prints numbers, no verdicts (INTEROP_MEASURE=1):
// go2rtc's time to first keyframe, H.264 over RTP and H.265 over the
// fmp4Stream channel, p50/p95 of 20 sessions; and the bytes per second on
// the wire for the same H.265 stream over the channel and over RTP.
func TestGo2rtcTuyaMeasure(t *testing.T) {
	if os.Getenv("INTEROP_MEASURE") != "1" {
		t.Skip("set INTEROP_MEASURE=1 to measure")
	}
	e := setup(t)
	ttff := func(name string, mainCodec int, main string) {
		t.Run(name, func(t *testing.T) {
			e.cloud.set(mainCodec, 2, false)
			d := e.startIPCD(t, main, "sub.h264", "")
			var ms []float64
			for range 20 {
				res, _ := e.client(t, "hd", 0, "")
				if res.Error != "" {
					t.Fatalf("%+v", res)
				}
				ms = append(ms, res.TTFFMS)
			}
			slices.Sort(ms)
			t.Logf("MEASURE %s time to first keyframe at go2rtc's consumer: p50 %.1f ms, p95 %.1f ms (n=20, from the start of Dial)", name, ms[9], ms[18])
			// The device's side: offer received to first frame handed to
			// the track or channel.
			var dev []float64
			for _, l := range strings.Split(grep(d.logText(), "first frame sent"), "\n") {
				if i := strings.Index(l, "ttff="); i >= 0 {
					if v, err := time.ParseDuration(strings.Fields(l[i+5:])[0]); err == nil {
						dev = append(dev, float64(v.Microseconds())/1000)
					}
				}
			}
			if len(dev) == 20 {
				slices.Sort(dev)
				t.Logf("MEASURE %s time to first frame sent by ipcd: p50 %.1f ms, p95 %.1f ms", name, dev[9], dev[18])
			}
		})
	}
	ttff("h264 rtp", 2, "main.h264")
	ttff("h265 fmp4Stream", 4, "main.h265")

	// The same H.265 main stream over the channel and over RTP, received
	// by ipcd's own client in the namespace; bytes counted on the veth
	// pair, both ways.
	ipcapp := filepath.Join(e.dir, "ipcapp")
	build := exec.Command("go", "build", "-o", ipcapp, "./cmd/ipcapp")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ipcapp: %v: %s", err, out)
	}
	e.cloud.set(4, 2, false)
	e.startIPCD(t, "main.h265", "sub.h264", "")
	const seconds = 8
	wire := func(name string, extra ...string) float64 {
		var total, media float64
		for range 3 {
			before := vethBytes(t, e.vethHost)
			start := time.Now()
			args := append([]string{"netns", "exec", e.ns, ipcapp, "live", "-broker", e.broker, "-dev-id", devID,
				"-p2p-password", p2pPass, "-codec", "h265", "-seconds", fmt.Sprint(seconds), "-json"}, extra...)
			out, err := exec.Command("ip", args...).Output()
			var st struct {
				Bytes int64 `json:"bytes"`
			}
			if err != nil || json.Unmarshal(out, &st) != nil || st.Bytes == 0 {
				t.Fatalf("ipcapp live %v: %v: %s", extra, err, out)
			}
			total += float64(vethBytes(t, e.vethHost)-before) / time.Since(start).Seconds()
			media += float64(st.Bytes) / seconds
		}
		t.Logf("MEASURE %s: %.0f bytes/s on the wire, %.0f bytes/s of media received", name, total/3, media/3)
		return total / 3
	}
	ch := wire("h265 fmp4Stream", "-datachannel-media")
	rtp := wire("h265 rtp")
	t.Logf("MEASURE channel overhead against RTP: %.0f bytes/s (%.1f%%)", ch-rtp, 100*(ch-rtp)/rtp)
}

func vethBytes(t *testing.T, dev string) int64 {
	var sum int64
	for _, f := range []string{"tx_bytes", "rx_bytes"} {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", dev, "statistics", f))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		fmt.Sscan(string(b), &n)
		sum += n
	}
	return sum
}
