package config

import (
	"errors"
	"fmt"

	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt"
)

// Feature is a part of ipcd that a build may leave out.
type Feature string

// Features that build tags leave out or add.
const (
	// FeatureEmbeddedBroker is left out by -tags nobroker (the default of
	// make cross).
	FeatureEmbeddedBroker Feature = "embedded_broker"
	// FeatureV4L2 is built only with -tags v4l2 (cgo).
	FeatureV4L2 Feature = "v4l2"
)

// BuildTag is the build tag that decides whether the feature is in a
// build; a leading "!" means the tag leaves it out.
func (f Feature) BuildTag() string {
	if f == FeatureV4L2 {
		return "v4l2"
	}
	return "!nobroker"
}

// Built reports whether this binary has the feature.
func (f Feature) Built() bool {
	if f == FeatureV4L2 {
		return media.V4L2Built
	}
	return mqtt.EmbeddedBrokerBuilt
}

// Need is a feature the configuration uses, with the key that uses it.
type Need struct {
	Feature Feature
	Key     string
}

// Needs returns the features the configuration uses that a build may lack.
func (c *Config) Needs() []Need {
	var out []Need
	if c.MQTT.EmbeddedBroker != "" {
		out = append(out, Need{FeatureEmbeddedBroker, "mqtt.embedded_broker"})
	}
	for _, s := range []struct {
		key string
		src media.SourceSection
	}{{"main", c.Media.Sources.Main}, {"sub", c.Media.Sources.Sub}, {"audio", c.Media.Sources.Audio}} {
		if s.src.Type == media.SourceV4L2 {
			out = append(out, Need{FeatureV4L2, "media.sources." + s.key + ".type"})
		}
	}
	return out
}

// CheckBuild refuses a configuration that needs a feature this binary was
// built without. The daemon checks it before it writes anything, so that a
// profile meant for another build leaves the flash as it was.
func (c *Config) CheckBuild() error {
	var errs []error
	for _, n := range c.Needs() {
		if !n.Feature.Built() {
			errs = append(errs, fmt.Errorf("config: %s: %w: %s (build tag %s)", n.Key, ErrNotBuilt, n.Feature, n.Feature.BuildTag()))
		}
	}
	return errors.Join(errs...)
}
