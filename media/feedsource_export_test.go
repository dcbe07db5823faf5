package media

import (
	"context"
	"net"
	"time"
)

// ServeFeedConn serves c as Run serves an accepted connection: with the
// first-header deadline and a producer slot to win.
func ServeFeedConn(ctx context.Context, f *FeedSource, c net.Conn) error {
	fc := &feedConn{c: c, accepted: time.Now()}
	f.table.addPending(fc)
	defer f.table.remove(fc)
	return f.serveConn(ctx, fc, f.table)
}
