package mqtt

// SetBackoff lets the external tests reconnect in milliseconds.
func (c *Client) SetBackoff(b *Backoff) { c.backoff = b }
