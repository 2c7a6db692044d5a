package testkit

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Recorder writes down, one line each, what a client was told (SDK
// callbacks, as "stream Add s1"), for a test to wait on and compare. An
// SDK event handler embeds one and adds a line per callback it cares
// about. The zero Recorder is empty and ready to use; it is safe for the
// callbacks' goroutines and the test at once.
type Recorder struct {
	mu    sync.Mutex
	lines []string
}

// Add writes down one line.
func (r *Recorder) Add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
}

// Addf writes down one line, formatted as by fmt.Sprintf.
func (r *Recorder) Addf(format string, args ...any) { r.Add(fmt.Sprintf(format, args...)) }

// Lines returns the lines written so far, in order.
func (r *Recorder) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}

// Has reports whether line was written.
func (r *Recorder) Has(line string) bool { return slices.Contains(r.Lines(), line) }

// HasPrefix reports whether a line that starts with prefix was written.
func (r *Recorder) HasPrefix(prefix string) bool {
	return slices.ContainsFunc(r.Lines(), func(l string) bool { return strings.HasPrefix(l, prefix) })
}
