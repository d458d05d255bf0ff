package registry

import (
	"iter"
	"slices"
	"strings"
)

// The instances of a Service are kept sorted by ID in chunks of at most
// maxChunk. A commit that changes a few instances copies the chunks it
// touches and the short list of chunks, never the whole service: with 40,000
// instances in one service a registration copies about 300 pointers instead
// of 40,000, and readers still range over an immutable, sorted view.
const (
	chunkTarget = 256             // instances per chunk after a rebuild or split
	maxChunk    = 2 * chunkTarget // a longer chunk is split in two
	minChunk    = chunkTarget / 4 // a shorter chunk is merged with a neighbour
)

// Service is the immutable merged state of one service at some revision. A
// new *Service replaces it whenever any of its instances changes, so its
// pointer identity is a version that readers can key caches on.
type Service struct {
	Name string
	// Rev is the registry revision at which the service last changed.
	Rev uint64

	chunks [][]*Instance // sorted by ID, each non-empty, in order
	n      int           // instances in all chunks
}

// Len returns the number of instances, in any status.
func (s *Service) Len() int { return s.n }

// All yields every instance, in any status, sorted by ID.
func (s *Service) All() iter.Seq[*Instance] {
	return func(yield func(*Instance) bool) {
		for _, c := range s.chunks {
			for _, in := range c {
				if !yield(in) {
					return
				}
			}
		}
	}
}

// Chunks returns the instances as the service keeps them: in chunks, sorted
// by ID. Versions of a service share the chunks that did not change, so a
// reader can find what changed between two versions by skipping the chunks
// they share (the same first element and length); see dnsserver's answer
// sets. The chunks are immutable: callers must not modify them.
func (s *Service) Chunks() [][]*Instance { return s.chunks }

// After yields the instances whose ID sorts after id, in order.
func (s *Service) After(id string) iter.Seq[*Instance] {
	return func(yield func(*Instance) bool) {
		ci := s.chunkFor(id)
		for ; ci < len(s.chunks); ci++ {
			c := s.chunks[ci]
			i, found := slices.BinarySearchFunc(c, id, cmpID)
			if found {
				i++
			}
			for _, in := range c[i:] {
				if !yield(in) {
					return
				}
			}
			id = "" // every later chunk sorts after id
		}
	}
}

// List returns a new slice of every instance, sorted by ID. It costs O(n):
// read paths range over All instead.
func (s *Service) List() []*Instance {
	out := make([]*Instance, 0, s.Len())
	for _, c := range s.chunks {
		out = append(out, c...)
	}
	return out
}

// Instance returns the instance with id, or nil.
func (s *Service) Instance(id string) *Instance {
	ci := s.chunkFor(id)
	if ci == len(s.chunks) {
		return nil
	}
	c := s.chunks[ci]
	i, ok := slices.BinarySearchFunc(c, id, cmpID)
	if !ok {
		return nil
	}
	return c[i]
}

func cmpID(in *Instance, id string) int { return strings.Compare(in.ID, id) }

// chunkFor returns the index of the first chunk whose last ID is not below
// id: the chunk that holds id if any does. It is len(s.chunks) when id sorts
// after every instance.
func (s *Service) chunkFor(id string) int {
	i, _ := slices.BinarySearchFunc(s.chunks, id, func(c []*Instance, id string) int { return strings.Compare(c[len(c)-1].ID, id) })
	return i
}

// newService builds a service from instances in any order.
func newService(name string, rev uint64, insts []*Instance) *Service {
	slices.SortFunc(insts, func(a, b *Instance) int { return strings.Compare(a.ID, b.ID) })
	s := &Service{Name: name, Rev: rev}
	for len(insts) > 0 {
		n := min(chunkTarget, len(insts))
		s.chunks = append(s.chunks, insts[:n:n])
		insts = insts[n:]
	}
	s.count()
	return s
}

// count sets n from the chunks.
func (s *Service) count() {
	s.n = 0
	for _, c := range s.chunks {
		s.n += len(c)
	}
}

// serviceAfter returns the service whose merged view is view, given its
// previous state and the ids that changed. A few changes to a large service
// copy only the chunks they touch: O(changed·chunk + n/chunk) instead of
// O(n). Many changes rebuild it.
func serviceAfter(prev *Service, name string, rev uint64, view map[string]*Instance, ids []string) *Service {
	if prev == nil || len(ids) > prev.Len()/4+1 {
		insts := make([]*Instance, 0, len(view))
		for _, in := range view {
			insts = append(insts, in)
		}
		return newService(name, rev, insts)
	}
	s := &Service{Name: name, Rev: rev, chunks: slices.Clone(prev.chunks)}
	for _, id := range ids {
		s.apply(id, view[id])
	}
	s.count()
	return s
}

// apply sets (in != nil) or removes (in == nil) the instance id in a service
// that is not published yet. Chunks are copied before they change: the old
// ones may be shared with published snapshots.
func (s *Service) apply(id string, in *Instance) {
	ci := s.chunkFor(id)
	if ci == len(s.chunks) {
		if in == nil {
			return
		}
		if ci == 0 {
			s.chunks = append(s.chunks, []*Instance{in})
			return
		}
		ci-- // append to the last chunk
	}
	c := s.chunks[ci]
	i, found := slices.BinarySearchFunc(c, id, cmpID)
	var nc []*Instance
	switch {
	case in != nil && found:
		nc = slices.Clone(c)
		nc[i] = in
	case in != nil:
		nc = make([]*Instance, 0, len(c)+1)
		nc = append(append(append(nc, c[:i]...), in), c[i:]...)
	case found:
		nc = make([]*Instance, 0, len(c)-1)
		nc = append(append(nc, c[:i]...), c[i+1:]...)
	default:
		return
	}
	if len(nc) < minChunk && len(s.chunks) > 1 {
		// Merge with a neighbour, then split below if that made it long.
		if ci+1 < len(s.chunks) {
			nc = append(nc, s.chunks[ci+1]...)
			s.chunks = slices.Delete(s.chunks, ci+1, ci+2)
		} else {
			nc = append(slices.Clone(s.chunks[ci-1]), nc...)
			s.chunks = slices.Delete(s.chunks, ci-1, ci)
			ci--
		}
	}
	switch {
	case len(nc) == 0:
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
	case len(nc) > maxChunk:
		half := len(nc) / 2
		s.chunks[ci] = nc[:half:half]
		s.chunks = slices.Insert(s.chunks, ci+1, nc[half:])
	default:
		s.chunks[ci] = nc
	}
}
