package web

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/testproc"
)

// startDev runs the real `onair dev`, as a developer opening the console
// would, and returns its HTTP base URL once it is ready.
func startDev(t *testing.T) string {
	t.Helper()
	bin := testproc.BuildOnair(t)
	var url string
	start := func() []*testproc.Proc {
		httpAddr := testproc.FreeAddr(t)
		url = "http://" + httpAddr
		cmd := exec.Command(bin, "dev", "--data-dir", filepath.Join(t.TempDir(), "dev"),
			"--grpc-addr", testproc.FreeAddr(t), "--http-addr", httpAddr)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "ONAIR_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		return []*testproc.Proc{testproc.Start(t, cmd)}
	}
	testproc.StartOnFreeAddrs(t, start, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return url
}

// The console at / on its own: bad input shows the vendor's code; with the
// dev routes it fills in the app and mints a token; a page joins and
// publishes its fake camera, a second page sees the user and the stream
// and plays it (state PLAYING, first frame, decoded frames); a broadcast
// message gets across. A screenshot of each page is kept as an artifact.
// The server is the real `onair dev`, which is what the console is for.
func TestConsole(t *testing.T) {
	needBrowser(t)
	url := startDev(t)
	b := newBrowser(t)

	open := func(name, user string) *page {
		p := b.open(name, url+"/")
		p.waitFor("the console is ready with the dev app", `document.body.dataset.ready === "1" && document.getElementById("appID").value !== "" && !document.getElementById("devToken").hidden`)
		p.eval(`document.getElementById("roomID").value = "console-room"; document.getElementById("userID").value = `+jsonString(user)+`; true`, nil)
		return p
	}
	click := func(p *page, id string) {
		t.Helper()
		p.eval(`document.getElementById(`+jsonString(id)+`).click(); true`, nil)
	}
	errorShows := func(p *page, what, code string) {
		t.Helper()
		p.waitFor(what+" shows "+code, `!document.getElementById("error").hidden && document.getElementById("error").textContent.includes(`+jsonString(code)+`)`)
	}
	join := func(p *page) {
		t.Helper()
		p.eval(`document.getElementById("token").value = ""; true`, nil)
		click(p, "devToken")
		p.waitFor("a dev token", `document.getElementById("token").value.startsWith("04")`)
		click(p, "join")
		p.waitFor("joined", `document.getElementById("status").textContent.startsWith("in ")`)
	}

	c := open("console C", "carla")
	// Bad input is shown with the vendor's code, never silently dropped.
	click(c, "join")
	errorShows(c, "no token", "1002067")
	c.eval(`document.getElementById("token").value = "04notatoken"; true`, nil)
	click(c, "join")
	errorShows(c, "a bad token", "1002033")
	c.waitFor("still not logged in", `document.getElementById("status").textContent === "not logged in" && !document.getElementById("join").disabled`)
	join(c)

	click(c, "camera")
	c.waitFor("the camera preview", `document.getElementById("preview").videoWidth > 0 && !document.getElementById("publish").disabled`)
	c.eval(`document.getElementById("publishStreamID").value = "carla-cam"; document.getElementById("publishExtraInfo").value = "console"; true`, nil)
	click(c, "publish")
	c.waitFor("PUBLISHING", `document.getElementById("publishState").textContent === "PUBLISHING"`)

	d := open("console D", "dan")
	join(d)
	d.waitFor("D lists carla", `document.querySelector('#users li[data-user-id="carla"]')`)
	c.waitFor("C lists dan", `document.querySelector('#users li[data-user-id="dan"]')`)
	d.waitFor("D lists carla-cam", `document.querySelector('#streams li[data-stream-id="carla-cam"]')?.textContent.includes("console")`)
	d.eval(`document.querySelector('#streams li[data-stream-id="carla-cam"] button').click(); true`, nil)
	const tile = `document.querySelector('.tile[data-stream-id="carla-cam"]')`
	d.waitFor("D plays carla-cam", tile+`?.querySelector(".state").textContent === "PLAYING"`)
	d.waitFor("D: first frame time", tile+`.querySelector(".first-frame").textContent.startsWith("first frame")`)
	d.waitFor("D: frames decoded", tile+`.querySelector("video").getVideoPlaybackQuality().totalVideoFrames > 0`)
	d.waitFor("D: a quality line", tile+`.querySelector(".quality").textContent.includes("kbps")`)

	d.eval(`document.getElementById("message").value = "hello from dan"; document.getElementById("sendMessage").click(); true`, nil)
	c.waitFor("C gets the message", `document.getElementById("messages").textContent.includes("hello from dan")`)
	c.eval(`document.getElementById("extraKey").value = "topic"; document.getElementById("extraValue").value = "demo"; document.getElementById("setExtra").click(); true`, nil)
	d.waitFor("D gets the room extra info", `document.querySelector('#extraInfo li[data-key="topic"]')?.textContent.includes("demo")`)

	// A stream that does not exist.
	d.eval(`document.getElementById("playStreamID").value = "no-such-stream"; document.getElementById("playByID").click(); true`, nil)
	errorShows(d, "playing a stream that is not live", "1004002")

	c.screenshot("console-publisher.png")
	d.screenshot("console-player.png")

	// C stops: D's tile goes to NO_PLAY and the stream leaves the list.
	click(c, "stopPublish")
	d.waitFor("D: NO_PLAY", tile+`.querySelector(".state").textContent.startsWith("NO_PLAY")`)
	d.waitFor("D: carla-cam gone from the list", `!document.querySelector('#streams li[data-stream-id="carla-cam"]')`)
	click(c, "leave")
	d.waitFor("D: carla left", `!document.querySelector('#users li[data-user-id="carla"]')`)
}
