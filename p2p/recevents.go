package p2p

// Events of playback and download, after the Tuya device SDK's PLAYBACK_*
// and DOWNLOAD_* events. Value is given per event; Detail is the time
// asked for (RFC 3339) where there is one.
const (
	EventPlaybackStart      EventType = iota + 100 // Value: start_time (unix s)
	EventPlaybackPause                             // Value 0
	EventPlaybackResume                            // Value 0
	EventPlaybackSeek                              // Value: the time sought (unix s)
	EventPlaybackSpeed                             // Value: 1, 2, 4 or 8
	EventPlaybackMute                              // Value 0
	EventPlaybackUnmute                            // Value 0
	EventPlaybackStop                              // Value 0
	EventPlaybackEnd                               // Value 0: the recording asked for is played out
	EventPlaybackQueryMonth                        // Value: year*100+month
	EventPlaybackQueryDay                          // Value: year*10000+month*100+day
	EventDownloadStart                             // Value: start (unix s)
	EventDownloadPause                             // Value: KiB sent
	EventDownloadResume                            // Value: KiB sent
	EventDownloadCancel                            // Value: KiB sent
	EventDownloadDone                              // Value: KiB sent
)

func recordingEventName(t EventType) string {
	switch t {
	case EventPlaybackStart:
		return "PlaybackStart"
	case EventPlaybackPause:
		return "PlaybackPause"
	case EventPlaybackResume:
		return "PlaybackResume"
	case EventPlaybackSeek:
		return "PlaybackSeek"
	case EventPlaybackSpeed:
		return "PlaybackSpeed"
	case EventPlaybackMute:
		return "PlaybackMute"
	case EventPlaybackUnmute:
		return "PlaybackUnmute"
	case EventPlaybackStop:
		return "PlaybackStop"
	case EventPlaybackEnd:
		return "PlaybackEnd"
	case EventPlaybackQueryMonth:
		return "PlaybackQueryMonth"
	case EventPlaybackQueryDay:
		return "PlaybackQueryDay"
	case EventDownloadStart:
		return "DownloadStart"
	case EventDownloadPause:
		return "DownloadPause"
	case EventDownloadResume:
		return "DownloadResume"
	case EventDownloadCancel:
		return "DownloadCancel"
	case EventDownloadDone:
		return "DownloadDone"
	}
	return "Unknown"
}
