// Package record owns recording to the SD card and reading it back: the
// Recorder follows the rings like a live session and writes MPEG-TS segments
// with a sidecar index; the Store lists, plays back and exports them. The
// layout on the card is described in docs/recording.md.
package record
