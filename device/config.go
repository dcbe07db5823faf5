package device

// DefaultStorePath is where the activation is kept unless device.store
// says otherwise.
const DefaultStorePath = "/data/ipcd/state.json"

// Section is the device section of the daemon's configuration: the factory
// identity and where the activation is kept.
type Section struct {
	UUID    string `yaml:"uuid"`
	AuthKey string `yaml:"authkey"`
	Store   string `yaml:"store"`
	// Activation is nil unless the device is pre-provisioned (factory, tests,
	// demo); a stored activation is otherwise received over MQTT.
	Activation *ActivationSection `yaml:"activation"`
}

// ActivationSection is a pre-provisioned activation.
type ActivationSection struct {
	DevID       string `yaml:"dev_id"`
	LocalKey    string `yaml:"local_key"`
	P2PPassword string `yaml:"p2p_password"`
}

// DefaultSection returns the defaults of the device section. uuid and
// authkey have none: they are the device's factory identity.
func DefaultSection() Section {
	return Section{Store: DefaultStorePath}
}

// SetDefaults makes s the defaults; the configuration composes its
// sections' defaults through it.
func (s *Section) SetDefaults() { *s = DefaultSection() }

// Activation returns the pre-provisioned activation, if any.
func (a *ActivationSection) Activation() Activation {
	return Activation{DevID: a.DevID, LocalKey: a.LocalKey, P2PPassword: a.P2PPassword}
}
