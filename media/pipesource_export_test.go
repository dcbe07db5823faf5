package media

// SetPipeBeforeRead installs a hook that runs on the parsing goroutine before
// each read of the byte ring, so a test can hold the parser back while the
// input keeps flowing. Call it before Run.
func SetPipeBeforeRead(p *PipeSource, hook func()) { p.beforeRead = hook }
