package hub

import (
	"bytes"
	"encoding/json"
	"sync/atomic"

	"github.com/medianest/hub/hub/protocol"
)

// LogFeed is an io.Writer for the process log that forwards each JSON log
// line to the /system sockets subscribed with subscribe-logs. Put it in the
// logger's writer before the node exists; the node attaches on Start.
type LogFeed struct {
	sink atomic.Pointer[func([]byte)]
}

// Write forwards p to the attached node, if any. It never fails.
func (f *LogFeed) Write(p []byte) (int, error) {
	if fn := f.sink.Load(); fn != nil {
		(*fn)(p)
	}
	return len(p), nil
}

func (f *LogFeed) attach(fn func([]byte)) {
	if fn == nil {
		f.sink.Store(nil)
		return
	}
	f.sink.Store(&fn)
}

// forwardLog sends a log line to subscribed /system sockets. It must not
// log: it runs inside the logger.
func (n *Node) forwardLog(line []byte) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || !json.Valid(line) {
		return
	}
	for name, p := range n.policies {
		if !p.Has(FeatureSystem) {
			continue
		}
		nsp := n.ns[name]
		if nsp.RoomLen(roomLogs) == 0 {
			continue
		}
		nsp.BroadcastFrame(roomLogs, protocol.AppendEvent(nil, name, protocol.NoID, "log", json.RawMessage(line)))
	}
}
