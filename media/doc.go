// Package media owns what the camera streams: frames and their rules, Annex-B
// parsing, the per-stream frame ring buffer that every session reads at its own
// pace, and the sources that fill the rings.
//
// It imports no other package of this module; p2p and board depend on it.
package media
