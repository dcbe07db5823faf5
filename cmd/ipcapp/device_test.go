package main

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/cmd/ipcapp/viewer"
	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/p2p"
)

const (
	testDevID    = "6c1e0000test0001"
	testPassword = "ad12ab34"
	mediaDir     = "../../configs/media/"
)

// startDevice runs ipcd's media stream service (p2p.Service over file
// sources, as cmd/ipcd wires it) behind a minimal MQTT bridge, so that the
// commands meet the real device side: its codec negotiation, packetizers
// and 312 control. sub may be empty.
func startDevice(t *testing.T, broker, main, sub string) {
	t.Helper()
	startDeviceWith(t, broker, main, sub, p2p.Config{})
}

// startDeviceWith is startDevice with the talkback and event settings of
// extra.
func startDeviceWith(t *testing.T, broker, main, sub string, extra p2p.Config) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	var m p2p.Media
	for _, s := range []struct {
		path   string
		stream media.Stream
		ring   **media.Ring
	}{{main, media.StreamMain, &m.Main}, {sub, media.StreamSub, &m.Sub}, {"audio.pcmu", media.StreamAudio, &m.Audio}} {
		if s.path == "" {
			continue
		}
		r, err := media.NewRing(media.RingConfig{Stream: s.stream, Codec: codecOfFile(t, s.path), MaxBytes: 4 << 20, MaxFrames: 500}, log)
		if err != nil {
			t.Fatal(err)
		}
		src, err := media.NewFileSource(media.FileSourceConfig{Path: mediaDir + s.path, FPS: 25, Loop: true}, r, log)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = src.Run(ctx) })
		*s.ring = r
	}

	pub := &bridge{}
	svc, err := p2p.NewService(p2p.Config{NetworkInterfaces: loopbackInterfaces(t), LoopbackCandidates: true,
		Speaker: extra.Speaker, Events: extra.Events, Recordings: extra.Recordings}, m, pub, log)
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan mqtt.Envelope, 64)
	pub.m = connectMQTT(t, broker, topic(viewer.DefaultTopicIn, testDevID), func(b []byte) {
		if env, err := mqtt.DecodeEnvelope(b); err == nil {
			in <- env
		}
	})
	pub.out = topic(viewer.DefaultTopicOut, testDevID)
	wg.Go(func() { _ = svc.Run(ctx, p2p.Credentials{DevID: testDevID, P2PPassword: testPassword}) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case env := <-in:
				switch env.Protocol {
				case p2p.Protocol:
					svc.Deliver(env.Data)
				case p2p.ControlProtocol:
					svc.DeliverControl(env.Data)
				}
			}
		}
	})
}

func codecOfFile(t *testing.T, path string) media.Codec {
	units, err := media.ReadAccessUnits(mediaDir + path)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case len(units) > 0 && media.IsH265Keyframe(units[0].Payload):
		return media.CodecH265
	case path == "audio.pcmu":
		return media.CodecPCMU
	}
	return media.CodecH264
}

// bridge publishes the service's messages on the device's topic_out.
type bridge struct {
	m   paho.Client
	out string
}

func (b *bridge) Publish(protocol int, data any) error {
	payload, err := mqtt.Encode(protocol, time.Now(), data)
	if err != nil {
		return err
	}
	tok := b.m.Publish(b.out, 1, false, payload)
	tok.WaitTimeout(5 * time.Second)
	return tok.Error()
}

// connectMQTT connects a test client subscribed to sub; deliver runs on
// paho's goroutine.
func connectMQTT(t *testing.T, broker, sub string, deliver func([]byte)) paho.Client {
	t.Helper()
	m := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("dev-" + randomHex(4)))
	if tok := m.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { m.Disconnect(100) })
	if tok := m.Subscribe(sub, 1, func(_ paho.Client, pm paho.Message) { deliver(pm.Payload()) }); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	return m
}

func topic(template, id string) string {
	for i := 0; i+4 <= len(template); i++ {
		if template[i:i+4] == "{id}" {
			return template[:i] + id + template[i+4:]
		}
	}
	return template
}

func loopbackInterfaces(t *testing.T) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			names = append(names, i.Name)
		}
	}
	return names
}

// startResponder answers activations for uuid and resets for devID like
// ipcd, verifying with the device package, and reports what it got.
func startResponder(t *testing.T, broker, uuid, authKey, devID, localKey string) <-chan device.ActivateMsg {
	t.Helper()
	got := make(chan device.ActivateMsg, 8)
	var out paho.Client
	reply := func(id string) func([]byte) {
		return func(b []byte) {
			env, err := mqtt.DecodeEnvelope(b)
			if err != nil {
				t.Errorf("responder: %v", err)
				return
			}
			msg, err := device.DecodeActivate(env.Data)
			if err != nil {
				t.Errorf("responder: %v", err)
				return
			}
			got <- msg
			var ack device.Ack
			if msg.Type == device.TypeActivate {
				_, _, err = device.VerifyActivate(msg, uuid, authKey, env.T)
				ack = device.ActivateAck(msg.DevID, err)
			} else {
				ack = device.ResetAck(msg.DevID, device.VerifyReset(msg, devID, localKey, env.T))
			}
			payload, _ := mqtt.Encode(device.ProtocolActivation, time.Now(), ack)
			out.Publish(topic(viewer.DefaultTopicOut, id), 1, false, payload)
		}
	}
	out = connectMQTT(t, broker, topic(viewer.DefaultTopicIn, uuid), reply(uuid))
	connectMQTT(t, broker, topic(viewer.DefaultTopicIn, devID), func(b []byte) { reply(devID)(b) })
	return got
}
