package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzDecodeConfig feeds arbitrary YAML to the config decoder and the
// validation after it: a bad file is an error naming a key, never a panic.
func FuzzDecodeConfig(f *testing.F) {
	for _, path := range []string{"../../../configs/ipcd.yaml", "../../../configs/demo.yaml"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("stream: {max_clients: 40, udp_port_range: [9, 1]}\nmqtt: {replay_window: 5}\n"))
	f.Add([]byte("media:\n  sources:\n    main: {type: pipe, path: [1, 2]}\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("device: &a {uuid: *a}\n"))
	f.Add([]byte("---\nmqtt:\n  brokers:\n  - 'tcp://a:1883'\n  - \"ssl://b:8883\"  # c\nlog: {level: ~}\n"))
	f.Add([]byte("stream:\n  ice_servers:\n    - urls: [\"turn:h:3478\"]\n      username: u\n    - {urls: [a,\n        b], credential: \"\\u00e9\"}\n"))
	f.Add([]byte("log: |\n  x\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Default()
		errs, err := decodeYAML(data, &cfg)
		for _, e := range errs {
			if !errors.Is(e, ErrInvalidConfig) {
				t.Fatalf("decode error %v does not wrap ErrInvalidConfig", e)
			}
		}
		if err == nil && len(errs) == 0 {
			_ = cfg.Validate()
		}
	})
}
