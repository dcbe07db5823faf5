package mqtt

// SetBackoff lets the external tests reconnect in milliseconds.
func (c *Client) SetBackoff(b *Backoff) { c.backoff = b }

// Handle runs the input path of one message as paho's callback does.
func (c *Client) Handle(p []byte) { c.handle(p) }

// SecretKey exposes the redaction's name test to the fuzz target's
// reference walk.
var SecretKey = secretKey
