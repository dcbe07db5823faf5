package mqtt

import (
	"encoding/json"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Presence is the retained payload on Config.StatusTopic. It is not an
// envelope: the cloud and the app read it with a plain subscription, and the
// broker itself publishes the offline one as the last will.
//
// T is unix seconds. In {"online":true} it is when the connection was made
// or, with Config.HoldOnline, when the owner started serving on it. In the
// last will it is when the connection was made, since the will is fixed in
// the CONNECT; the broker publishes it whenever it finds the connection
// dead. In the offline status of a clean shutdown or of the owner stopping
// to serve it is the time of that event.
//
// While online, the message also carries "health", the daemon's last report
// (PublishHealth), which Presence leaves out.
type Presence struct {
	Online bool  `json:"online"`
	T      int64 `json:"t"`
}

// status is Presence with the health report, as published.
type status struct {
	Online bool            `json:"online"`
	T      int64           `json:"t"`
	Health json.RawMessage `json:"health,omitempty"`
}

func presence(online bool, at time.Time, health json.RawMessage) []byte {
	if !online {
		health = nil
	}
	b, err := json.Marshal(status{Online: online, T: at.Unix(), Health: health})
	if err != nil {
		// Only a health report that is not JSON fails; PublishHealth
		// checks, so this is the report of an older caller.
		b, _ = json.Marshal(Presence{Online: online, T: at.Unix()})
	}
	return b
}

// announce publishes the retained status of the connection made at at:
// online, or with Config.HoldOnline and the owner not serving, offline. A
// failure is only logged: a broker that does not acknowledge is about to be
// noticed as lost, and one that refuses the topic by ACL still serves the
// device's signaling.
func (c *Client) announce(pc paho.Client, at time.Time, online bool) {
	if c.statusTopic == "" {
		return
	}
	c.publishStatus(pc, online, at)
}

// serve publishes a change of SetServing, dated now: the statuses of one
// connection then follow each other in time. The will keeps the time of
// the connect.
func (c *Client) serve(pc paho.Client, online bool) {
	if c.statusTopic == "" {
		return
	}
	c.publishStatus(pc, online, c.now())
}

// goodbye publishes the retained offline status before a clean disconnect,
// which makes the broker discard the last will: without it the topic would
// keep saying online.
func (c *Client) goodbye(pc paho.Client) {
	if c.statusTopic == "" {
		return
	}
	c.publishStatus(pc, false, c.now())
}

func (c *Client) publishStatus(pc paho.Client, online bool, at time.Time) {
	c.health.online.Store(online)
	if online {
		c.health.upAt.Store(at.Unix())
	}
	tok := pc.Publish(c.statusTopic, qosAtLeastOnce, true, presence(online, at, c.health.load()))
	if !tok.WaitTimeout(publishTimeout) {
		c.log.Warn("mqtt status not acknowledged", "topic", c.statusTopic, "online", online, "after", publishTimeout)
		return
	}
	if err := tok.Error(); err != nil {
		c.log.Warn("mqtt status not published", "topic", c.statusTopic, "online", online, "err", err)
	}
}
