package media

import "time"

// SetPipeBeforeRead installs a hook that runs on the parsing goroutine before
// each read of the byte ring, so a test can hold the parser back while the
// input keeps flowing. Call it before Run.
func SetPipeBeforeRead(p *PipeSource, hook func()) { p.beforeRead = hook }

// SetPipeMeasure sets how much input is measured before the byte ring of a
// source with BufferBytes 0 is sized from the stream. Call it before Run.
func SetPipeMeasure(p *PipeSource, d time.Duration) { p.measureFor = d }
