package config

import (
	"reflect"
	"testing"

	"github.com/ipcd/ipcd/media"
)

// TestV4L2Section: the capture keys of a v4l2 source reach media's section,
// from the file and from the environment.
func TestV4L2Section(t *testing.T) {
	chdirWithMedia(t)
	file := writeFile(t, "c.yaml", "device: {uuid: u, authkey: k}\n"+
		"media:\n  sources:\n    main:\n      type: v4l2\n      path: /dev/video0\n"+
		"      v4l2: {width: 1280, height: 720, pixel_format: YUYV, bitrate_kbps: 1500, gop: 25}\n")
	c, err := Load(file, []string{"IPCD_MEDIA_SOURCES_MAIN_V4L2_GOP=30"})
	if err != nil {
		t.Fatal(err)
	}
	want := media.V4L2Config{Width: 1280, Height: 720, PixelFormat: "YUYV", BitrateKbps: 1500, GOP: 30}
	if got := c.Media.Sources.Main.V4L2; !reflect.DeepEqual(got, want) {
		t.Fatalf("main.v4l2 = %+v, want %+v", got, want)
	}
	if got := c.Media.Sources.Sub.V4L2; !reflect.DeepEqual(got, media.DefaultV4L2Config()) {
		t.Fatalf("sub.v4l2 = %+v, want the defaults", got)
	}
}
