package device

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
)

// Rule names why a protocol-46 message was dropped or refused. The names
// are a small fixed set, whatever the message carried, so that they can key
// the log summary; the warn log prints them after `rule=`.
type Rule string

// Refusal rules of protocol 46.
const (
	RuleReplayed         Rule = "replayed"
	RuleBadSignature     Rule = "bad_signature"
	RuleWrongUUID        Rule = "wrong_uuid"
	RuleWrongDevID       Rule = "wrong_dev_id"
	RuleMissingField     Rule = "missing_field"
	RuleMalformed        Rule = "malformed"
	RuleInvalid          Rule = "invalid"
	RuleUnknownType      Rule = "unknown_type"
	RuleNotActivated     Rule = "not_activated"
	RuleAlreadyActivated Rule = "already_activated"
)

// RefusalRule names why a protocol-46 message was refused, "" when err is
// nil or is not about the message (the store failed to write).
func RefusalRule(err error) Rule {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrReplayed):
		return RuleReplayed
	case errors.Is(err, ErrBadSignature):
		return RuleBadSignature
	case errors.Is(err, ErrWrongUUID):
		return RuleWrongUUID
	case errors.Is(err, ErrWrongDevID):
		return RuleWrongDevID
	case errors.Is(err, ErrMissingField):
		return RuleMissingField
	case errors.Is(err, ErrMalformed):
		return RuleMalformed
	case errors.Is(err, ErrBadPassword), errors.Is(err, ErrActivationInvalid):
		return RuleInvalid
	case errors.Is(err, ErrUnknownType):
		return RuleUnknownType
	case errors.Is(err, ErrNotActivated):
		return RuleNotActivated
	}
	return ""
}

// Outcome is what a protocol-46 message changed.
type Outcome int

const (
	// Unchanged: refused or dropped; nothing was stored.
	Unchanged Outcome = iota
	// Activated: the activation is stored and was acknowledged.
	Activated
	// WasReset: the activation is wiped and the reset was acknowledged.
	WasReset
)

// ActivatorConfig is the factory identity activations are verified against.
type ActivatorConfig struct {
	UUID, AuthKey string
	// Allow reports whether a refusal with this key is logged in full now;
	// nil logs every one. The daemon's drop summary counts the others.
	Allow func(key string) bool
	// Ack publishes a reply on the outbound topic.
	Ack func(Ack)
	// OnReset, when set, runs after a reset is stored and before it is
	// acknowledged: what belonged to the old owner is cleared first.
	OnReset func()
}

// Activator serves protocol 46 (SPEC §5.2) end to end: it verifies an
// activation or a reset, stores it, and acknowledges it with its result
// code. Nothing is stored and nothing changes unless the signature checks
// out; the reply says which. It is used from its owner's goroutine only.
type Activator struct {
	cfg   ActivatorConfig
	store *Store
	log   *slog.Logger
}

// NewActivator serves protocol 46 with store as the activation's home.
func NewActivator(cfg ActivatorConfig, store *Store, log *slog.Logger) *Activator {
	if cfg.Allow == nil {
		cfg.Allow = func(string) bool { return true }
	}
	if cfg.Ack == nil {
		cfg.Ack = func(Ack) {}
	}
	return &Activator{cfg: cfg, store: store, log: log.With("component", "activation")}
}

// Log is the activator's logger, for the other protocol-46 commands.
func (a *Activator) Log() *slog.Logger { return a.log }

// Handle serves one activate or reset message sent at t (the envelope's
// t). cur is the current activation, nil when there is none; the returned
// one is the activation after the message (nil after a reset).
func (a *Activator) Handle(data json.RawMessage, t int64, cur *Activation) (Outcome, *Activation) {
	msg, err := DecodeActivate(data)
	if err != nil {
		rule := RefusalRule(err)
		a.warn("activation:"+string(rule), "drop activation message", "rule", rule, "err", clip(err.Error()))
		return Unchanged, cur
	}
	switch msg.Type {
	case TypeActivate:
		return a.activate(msg, t, cur)
	case TypeReset:
		return a.reset(msg, t, cur)
	}
	a.warn("activation:unknown_type", "drop activation message", "rule", RuleUnknownType, "type", clip(msg.Type))
	return Unchanged, cur
}

func (a *Activator) activate(msg ActivateMsg, t int64, cur *Activation) (Outcome, *Activation) {
	if cur != nil {
		a.warn("activation:already_activated", "activation refused", "rule", RuleAlreadyActivated, "reason", "already activated", "dev_id", cur.DevID)
		a.cfg.Ack(ActivateAck(msg.DevID, ErrWrongUUID))
		return Unchanged, cur
	}
	act, creds, err := VerifyActivate(msg, a.cfg.UUID, a.cfg.AuthKey, t)
	if err == nil {
		act.UID, act.MQTTUsername, act.MQTTPassword = msg.UID, creds.Username, creds.Password
		// Activation comes before time sync, so the replay window
		// cannot protect it: the store refuses a t not newer than the
		// last one.
		err = a.store.SaveAt(act, t)
	}
	if err != nil {
		a.refused("activation", "activation refused", msg.DevID, err)
		a.cfg.Ack(ActivateAck(msg.DevID, err))
		return Unchanged, cur
	}
	a.log.Info("activated", "dev_id", act.DevID, "uid", act.UID)
	a.log.Debug("get p2p passwd = "+MaskSecret(act.P2PPassword), "source", "activation")
	a.cfg.Ack(ActivateAck(act.DevID, nil))
	return Activated, &act
}

func (a *Activator) reset(msg ActivateMsg, t int64, cur *Activation) (Outcome, *Activation) {
	if cur == nil {
		a.warn("reset:not_activated", "reset refused", "rule", RuleNotActivated, "reason", "not activated")
		a.cfg.Ack(ResetAck(msg.DevID, ErrNotActivated))
		return Unchanged, cur
	}
	err := VerifyReset(msg, cur.DevID, cur.LocalKey, t)
	if err == nil {
		err = a.store.WipeAt(t)
	}
	if err != nil {
		a.refused("reset", "reset refused", msg.DevID, err)
		a.cfg.Ack(ResetAck(msg.DevID, err))
		return Unchanged, cur
	}
	a.log.Info("reset: activation wiped", "dev_id", cur.DevID)
	if a.cfg.OnReset != nil {
		a.cfg.OnReset()
	}
	a.cfg.Ack(ResetAck(cur.DevID, nil))
	return WasReset, nil
}

// refused logs a refusal: a warning with its rule when the message was at
// fault, an error when the store failed to write.
func (a *Activator) refused(what, msg, devID string, err error) {
	rule := RefusalRule(err)
	if rule == "" {
		a.log.Error(what+" not stored", "err", err)
		return
	}
	a.warn(what+":"+string(rule), msg, "rule", rule, "reason", clip(err.Error()), "dev_id", clip(devID))
}

func (a *Activator) warn(key, msg string, args ...any) {
	if a.cfg.Allow(key) {
		a.log.Warn(msg, args...)
	}
}

// logFieldMax bounds what a warn line repeats of a message's fields (SPEC
// §5.3 bounds header fields the same way).
const logFieldMax = 128

func clip(s string) string {
	if len(s) <= logFieldMax {
		return s
	}
	return strings.ToValidUTF8(s[:logFieldMax], "") + "..."
}

// HandlePrivacy serves a signed privacy command sent at t and received at
// atMs (unix ms): the signature with the local key of cur, then a time
// newer than lastMs, the last one accepted. An accepted command is applied
// with apply before it is acknowledged; a refused one is acknowledged with
// its result code.
func (a *Activator) HandlePrivacy(data json.RawMessage, t, atMs, lastMs int64, cur *Activation, apply func(on bool)) {
	msg, err := DecodePrivacy(data)
	if err != nil {
		a.log.Warn("drop privacy command", "rule", RuleMalformed, "err", err)
		a.cfg.Ack(PrivacyAck(msg.DevID, err))
		return
	}
	devID, key := "", ""
	if cur != nil {
		devID, key = cur.DevID, cur.LocalKey
	}
	if err := VerifyPrivacy(msg, devID, key, t, atMs, lastMs); err != nil {
		rule := RuleBadSignature
		if errors.Is(err, ErrPrivacyReplayed) {
			rule = RuleReplayed
		}
		a.log.Warn("privacy command refused", "rule", rule, "err", err)
		a.cfg.Ack(PrivacyAck(msg.DevID, err))
		return
	}
	apply(*msg.Value == 1)
	a.cfg.Ack(PrivacyAck(msg.DevID, nil))
}
