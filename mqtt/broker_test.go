//go:build !nobroker

package mqtt_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/mqtt/mqtttest"
)

// TestEmbeddedBrokerWebSocket is the path the browser viewer takes: MQTT
// over WebSocket to the embedded broker.
func TestEmbeddedBrokerWebSocket(t *testing.T) {
	check := goroutines(t)
	brokerLog, brokerLogs := newLogger(slog.LevelInfo)
	wsAddr := fmt.Sprintf("127.0.0.1:%d", mqtttest.FreePort(t))
	b, err := mqtt.NewEmbeddedBroker("127.0.0.1:0", wsAddr, brokerLog)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	// A client whose out topic is its in topic hears itself.
	cfg := mqtt.Config{Brokers: []string{"ws://" + wsAddr}, ClientID: "ws", TopicIn: "loop/{id}", TopicOut: "loop/{id}", ID: "ws"}
	hearsItself(t, cfg, "ws").stop(t)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	check()

	// mochi's own lines (connects, listener attach) are debug, so an info
	// log shows only the broker's one line.
	if n := strings.Count(brokerLogs.String(), "\n"); n != 1 || !strings.Contains(brokerLogs.String(), "embedded mqtt broker listening") {
		t.Fatalf("broker info log is not quiet:\n%s", brokerLogs)
	}
}

func TestEmbeddedBrokerLogsRouted(t *testing.T) {
	log, logs := newLogger(slog.LevelDebug)
	b, err := mqtt.NewEmbeddedBroker("127.0.0.1:0", "", log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	<-b.Ready()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if line := logs.Line("mochi mqtt starting"); !strings.Contains(line, "level=DEBUG") || !strings.Contains(line, "component=mqtt-broker") {
		t.Fatalf("mochi's start line is not a debug line of the broker component:\n%s", logs)
	}
}

func TestEmbeddedBrokerPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()

	if _, err := mqtt.NewEmbeddedBroker(taken, "", nil); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("tcp on a taken port: %v", err)
	}
	if _, err := mqtt.NewEmbeddedBroker("127.0.0.1:0", taken, nil); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("websocket on a taken port: %v", err)
	}
}

// TestEmbeddedBrokerSameClientID: a client that disconnects cleanly and at
// once reconnects under the same client id, as a restarting device does,
// receives what is published to it every time. mochi alone loses the new
// connection's subscription in about one round of a hundred, when its
// cleanup of the old connection runs after the new one registered.
func TestEmbeddedBrokerSameClientID(t *testing.T) {
	broker := mqtttest.Embedded(t)
	pub := cloud(t, broker)
	const rounds = 500
	lost := 0
	for i := range rounds {
		conn := func() (paho.Client, chan struct{}) {
			got := make(chan struct{}, 8)
			o := paho.NewClientOptions().AddBroker(broker).SetClientID("same-id").SetAutoReconnect(false).SetCleanSession(true)
			c := paho.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
				t.Fatalf("round %d: connect: %v", i, tok.Error())
			}
			if tok := c.Subscribe("restart/in", 1, func(paho.Client, paho.Message) { got <- struct{}{} }); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
				t.Fatalf("round %d: subscribe: %v", i, tok.Error())
			}
			return c, got
		}
		old, _ := conn()
		old.Disconnect(250)
		c, got := conn()
		publishRaw(t, pub, "restart/in", []byte("x"))
		select {
		case <-got:
		case <-time.After(time.Second):
			lost++
		}
		c.Disconnect(250)
	}
	if lost > 0 {
		t.Fatalf("%d of %d reconnects under the same client id received nothing", lost, rounds)
	}
}
