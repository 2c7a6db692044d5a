package viewer

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Row is one line of a viewer table: a player (or an aggregate) and what it
// saw.
type Row struct {
	// Name is the player ("p1") or the aggregate's label ("all").
	Name string
	// Link is the player's link ("1mbit,rtt=40ms"), in netshape's syntax.
	Link string
	Report
}

// Aggregate sums players' reports: frames, freezes and packets add up; FPS,
// FreezeTime, FreezePct and Kbps are per player (the mean); the layer is the
// smallest received; LayerAt and FirstStable are the latest (negative
// FirstStable if any player never became stable).
func Aggregate(rs []Report) Report {
	var a Report
	if len(rs) == 0 {
		a.FirstStable = -1
		return a
	}
	for i, r := range rs {
		a.Window = max(a.Window, r.Window)
		a.Frames += r.Frames
		a.FPS += r.FPS / float64(len(rs))
		a.Freezes += r.Freezes
		a.FreezeTime += r.FreezeTime / time.Duration(len(rs))
		a.FreezePct += r.FreezePct / float64(len(rs))
		a.Kbps += r.Kbps / float64(len(rs))
		a.Packets += r.Packets
		a.Lost += r.Lost
		if i == 0 || r.Width*r.Height < a.Width*a.Height {
			a.Width, a.Height = r.Width, r.Height
		}
		a.LayerAt = max(a.LayerAt, r.LayerAt)
		if i == 0 || a.FirstStable >= 0 && (r.FirstStable < 0 || r.FirstStable > a.FirstStable) {
			a.FirstStable = r.FirstStable
		}
	}
	return a
}

// WriteTable prints rows as an aligned table, one line per row.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "player\tlink\tfps\tfreezes\tfrozen\tfrozen %\tkbit/s\tlayer\tlayer at\tfirst stable\tlost\t")
	for _, r := range rows {
		layer := "-"
		if r.Width > 0 {
			layer = fmt.Sprintf("%dx%d", r.Width, r.Height)
		}
		stable := "never"
		if r.FirstStable >= 0 {
			stable = dur(r.FirstStable)
		}
		lost := "-"
		if n := r.Packets + r.Lost; n > 0 {
			lost = fmt.Sprintf("%.1f%%", 100*float64(r.Lost)/float64(n))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%d\t%s\t%.1f\t%.0f\t%s\t%s\t%s\t%s\t\n", r.Name, r.Link, r.FPS, r.Freezes,
			dur(r.FreezeTime), r.FreezePct, r.Kbps, layer, dur(r.LayerAt), stable, lost)
	}
	return tw.Flush()
}

func dur(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
