package express

import (
	"slices"
	"testing"
)

func TestKnownNeverRepeats(t *testing.T) {
	k := newKnown(func(u User) string { return u.UserID })
	own := func(u User) bool { return u.UserID == "me" }
	ids := func(us []User) []string {
		out := make([]string, len(us))
		for i, u := range us {
			out[i] = u.UserID
		}
		return out
	}
	steps := []struct {
		name string
		do   func() []User
		want []string
	}{
		{"first add", func() []User { return k.add([]User{{UserID: "a"}, {UserID: "me"}, {UserID: "b"}}, own) }, []string{"a", "b"}},
		{"repeated add after a resume", func() []User { return k.add([]User{{UserID: "b"}, {UserID: "c"}}, own) }, []string{"c"}},
		{"delete", func() []User { return k.remove([]User{{UserID: "a"}, {UserID: "x"}}) }, []string{"a"}},
		{"repeated delete", func() []User { return k.remove([]User{{UserID: "a"}}) }, nil},
		{"absent from a snapshot", func() []User { return k.absentFrom([]User{{UserID: "b"}}) }, []string{"c"}},
		{"update only known", func() []User { return k.update([]User{{UserID: "b", UserName: "B"}, {UserID: "z"}}) }, []string{"b"}},
	}
	for _, s := range steps {
		if got := ids(s.do()); !slices.Equal(got, s.want) {
			t.Errorf("%s: %v, want %v", s.name, got, s.want)
		}
	}
	if k.items["b"].UserName != "B" {
		t.Error("update did not replace the item")
	}
}
