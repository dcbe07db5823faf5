package config

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrInvalidConfig is wrapped by every error about the content of the
// configuration file or of the IPCD_ environment variables.
var ErrInvalidConfig = errors.New("invalid configuration")

// ErrUnknownKey is wrapped by errors about keys or IPCD_ variables that match
// no setting; it also matches ErrInvalidConfig.
var ErrUnknownKey = fmt.Errorf("%w: unknown key", ErrInvalidConfig)

// ErrYAMLSyntax is wrapped by errors about a configuration file that is not
// well-formed YAML; the error names the line.
var ErrYAMLSyntax = fmt.Errorf("%w: YAML syntax", ErrInvalidConfig)

// ErrYAMLUnsupported is wrapped by errors about YAML that the configuration
// file's subset does not accept (anchors, tags, block text, a second
// document, ...; docs/configuration.md, "File syntax"); the error names the line.
var ErrYAMLUnsupported = fmt.Errorf("%w: outside the YAML subset of the configuration file", ErrInvalidConfig)

// ErrConfigTooLarge is wrapped by errors about a configuration file beyond a
// bound: its size, a line's length, a key's length, the nesting depth.
var ErrConfigTooLarge = fmt.Errorf("%w: too large", ErrInvalidConfig)

// FieldError is one problem with one setting. Several are joined with
// errors.Join; each unwraps to ErrInvalidConfig (or ErrUnknownKey).
type FieldError struct {
	// Key is the dotted path, with list indexes: "stream.max_clients",
	// "mqtt.brokers[1]". Empty for an unknown environment variable.
	Key string
	// Line is the line in the file, 0 when the value did not come from it.
	Line int
	// Env is the environment variable the value came from, if any.
	Env    string
	Reason string
	// Unknown marks a key or IPCD_ variable that matches no setting.
	Unknown bool
}

func (e *FieldError) Error() string {
	switch {
	case e.Unknown && e.Env != "":
		return fmt.Sprintf("config: unknown environment variable %s: matches no configuration key", e.Env)
	case e.Unknown:
		return fmt.Sprintf("config: unknown key %q (line %d)", e.Key, e.Line)
	}
	where := e.Key
	switch {
	case e.Env != "":
		where = e.Env + " (" + e.Key + ")"
	case e.Line > 0:
		where += " (line " + strconv.Itoa(e.Line) + ")"
	}
	return "config: " + where + ": " + e.Reason
}

func (e *FieldError) Unwrap() error {
	if e.Unknown {
		return ErrUnknownKey
	}
	return ErrInvalidConfig
}

// ErrNotBuilt is wrapped by CheckBuild's errors: the configuration needs a
// feature this binary was built without.
var ErrNotBuilt = errors.New("this binary was built without")
