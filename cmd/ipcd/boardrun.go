package main

import (
	"context"
	"fmt"

	"github.com/ipcd/ipcd/board"
	"github.com/ipcd/ipcd/device"
	"github.com/ipcd/ipcd/media"
	"github.com/ipcd/ipcd/mqtt"
	"github.com/ipcd/ipcd/p2p"
)

// newBoard builds the board integration (socket and hook), or nil when the
// configuration asks for neither. It listens at once so that a board
// process started right after ipcd can connect.
func (d *daemon) newBoard() (*board.Server, error) {
	c := d.cfg.Board
	if c.Socket == "" && c.OnEvent == "" {
		return nil, nil
	}
	s, err := board.NewServer(board.Config{
		Socket:      c.Socket,
		QueueSize:   c.QueueSize,
		OnEvent:     c.OnEvent,
		HookTimeout: c.HookTimeout,
	}, board.Handlers{
		Privacy:  func(on bool) error { d.setPrivacy(on, p2p.PrivacyByBoard); return nil },
		Keyframe: d.requestKeyframe,
		Status:   func(ctx context.Context) any { return d.status(ctx) },
	}, d.log)
	if err != nil {
		return nil, fmt.Errorf("board.socket: %w", err)
	}
	return s, nil
}

// publishBoard hands an event to the board integration; it never blocks.
func (d *daemon) publishBoard(e board.Event) {
	if d.board != nil {
		d.board.Publish(e)
	}
}

// onEvent receives the media stream service's events, in order, on the
// service's event goroutine.
func (d *daemon) onEvent(e p2p.Event) {
	d.log.Debug("media stream event", "event", e.Type.String(), "session", e.SessionID, "source", e.Source, "value", e.Value, "detail", e.Detail)
	be := board.Event{T: e.Time.UnixMilli(), Event: e.Type.String(), Session: e.SessionID, Value: e.Value, Detail: e.Detail}
	if e.SessionID != "" {
		be.Source = e.Source
	}
	switch e.Type {
	case p2p.EventPrivacyOn, p2p.EventPrivacyOff:
		d.privacy.Store(e.Type == p2p.EventPrivacyOn)
		d.persistPrivacy()
	case p2p.EventStreamSwitch:
		be.Stream, be.Detail = e.Detail, ""
	case p2p.EventLiveVideoClaritySet, p2p.EventLiveVideoClarityQuery:
		be.Stream = clarityStream(e.Value)
	}
	d.publishBoard(be)
}

func clarityStream(v int) string {
	if v == 1 {
		return media.StreamSub.String()
	}
	return media.StreamMain.String()
}

// setPrivacy turns privacy mode on or off from the board. With the media
// stream service running, the service decides and its event comes back
// through onEvent, which stores it; otherwise the daemon keeps the value
// and hands it to the service when it starts.
func (d *daemon) setPrivacy(on bool, by string) {
	if svc := d.running.Load(); svc != nil {
		svc.SetPrivacy(on, by)
		return
	}
	if d.privacy.Swap(on) == on {
		return
	}
	d.log.Info("privacy mode", "on", on, "by", by)
	d.persistPrivacy()
	ev := board.EventPrivacyOff
	if on {
		ev = board.EventPrivacyOn
	}
	v := 0
	if on {
		v = 1
	}
	d.publishBoard(board.Event{Event: ev, Value: v, Detail: by})
}

// persistPrivacy asks the persister to store the current privacy mode;
// requests made while one is pending merge into it.
func (d *daemon) persistPrivacy() {
	select {
	case d.persist <- struct{}{}:
	default:
	}
}

// runPersist writes privacy mode to flash off every loop: a write with
// fsync can take long on a busy SD card.
func (d *daemon) runPersist(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			// What is pending is still written: a privacy switch just
			// before shutdown must survive the reboot.
			select {
			case <-d.persist:
				d.savePrivacy()
			default:
			}
			return nil
		case <-d.persist:
			d.savePrivacy()
		}
	}
}

func (d *daemon) savePrivacy() {
	if err := d.store.SavePrivacy(device.PrivacyState{On: d.privacy.Load(), T: d.privacyT.Load()}); err != nil {
		d.log.Error("privacy mode not stored", "err", err)
	}
}

// requestKeyframe serves the board's keyframe command.
func (d *daemon) requestKeyframe(stream string) error {
	m := d.media.Load()
	if m == nil {
		return fmt.Errorf("%w: media not running", board.ErrUnavailable)
	}
	r := m.Main
	if stream == "sub" {
		r = m.Sub
	}
	if r == nil {
		return fmt.Errorf("%w: %s stream not configured", board.ErrUnavailable, stream)
	}
	r.RequestKeyframe()
	return nil
}

// loadPrivacy reads the stored privacy mode and opens the board socket.
func (d *daemon) loadPrivacy() error {
	st, err := d.store.LoadPrivacy()
	if err != nil {
		d.log.Warn("privacy mode unreadable, off", "err", err)
	}
	on := st.On
	d.privacy.Store(on)
	d.privacyT.Store(st.T)
	if on {
		d.log.Info("privacy mode", "on", true, "by", p2p.PrivacyByStore)
	}
	if d.board, err = d.newBoard(); err != nil {
		return err
	}
	return nil
}

func (d *daemon) runBoard(ctx context.Context) error {
	if d.board == nil {
		return nil
	}
	return d.board.Run(ctx)
}

// sourceFailed tells the board that a capture source stopped; the media
// supervisor logs it (`media source failed`) and restarts it.
func (d *daemon) sourceFailed(name string, err error) {
	d.publishBoard(board.Event{Event: board.EventSourceFailure, Stream: name, Detail: err.Error()})
}

// Who changes privacy mode besides p2p's board, app and store: the signed
// protocol-46 command, and a reset, which clears it with the owner.
const (
	PrivacyByCloud = "cloud"
	PrivacyByReset = "reset"
)

// handlePrivacyCommand serves a signed protocol-46 privacy command on Run's
// goroutine; the store keeps the t of the last one accepted across reboots.
func (d *daemon) handlePrivacyCommand(e mqtt.Envelope) {
	at := e.Time().UnixMilli()
	d.activator.HandlePrivacy(e.Data, e.T, at, d.privacyT.Load(), d.activation.Load(), func(on bool) {
		d.privacyT.Store(at)
		d.setPrivacy(on, PrivacyByCloud)
		d.persistPrivacy() // the new t, even when the mode did not change
	})
}
