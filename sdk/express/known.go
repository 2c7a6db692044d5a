package express

import (
	"cmp"
	"slices"
)

// known is what the handler has been told exists, by ID. Updates from the
// server may repeat after a resume or a resync; passing them through known
// turns them into callbacks that never repeat an Add or a Delete.
type known[T any] struct {
	items map[string]T
	id    func(T) string
}

func newKnown[T any](id func(T) string) known[T] {
	return known[T]{items: map[string]T{}, id: id}
}

// add records the items not known yet, skipping those own reports true
// for, and returns what it recorded.
func (k known[T]) add(in []T, own func(T) bool) []T {
	var out []T
	for _, x := range in {
		if _, ok := k.items[k.id(x)]; ok || own(x) {
			continue
		}
		k.items[k.id(x)] = x
		out = append(out, x)
	}
	return out
}

// remove forgets the known items of in and returns them.
func (k known[T]) remove(in []T) []T {
	var out []T
	for _, x := range in {
		if _, ok := k.items[k.id(x)]; ok {
			delete(k.items, k.id(x))
			out = append(out, x)
		}
	}
	return out
}

// update replaces the known items of in and returns them.
func (k known[T]) update(in []T) []T {
	var out []T
	for _, x := range in {
		if _, ok := k.items[k.id(x)]; ok {
			k.items[k.id(x)] = x
			out = append(out, x)
		}
	}
	return out
}

// absentFrom returns, ordered by ID, the known items that now lacks.
func (k known[T]) absentFrom(now []T) []T {
	present := make(map[string]bool, len(now))
	for _, x := range now {
		present[k.id(x)] = true
	}
	var out []T
	for id, x := range k.items {
		if !present[id] {
			out = append(out, x)
		}
	}
	k.sort(out)
	return out
}

func (k known[T]) sort(xs []T) {
	slices.SortFunc(xs, func(a, b T) int { return cmp.Compare(k.id(a), k.id(b)) })
}
