package registry

import "sync"

// history is a bounded log of items numbered 1, 2, 3, ... Old items fall off
// the front; a reader that asks for them gets ErrCompacted and must restart
// from full state. Appends never wait for readers.
type history[T any] struct {
	mu    sync.RWMutex
	buf   []T
	first uint64 // number of buf[head]; 0 while empty
	next  uint64 // number the next append gets
	head  int
	n     int

	// With a byte bound (withBytes), the oldest items also go once the
	// items' sizes add up to more than maxBytes.
	size     func(T) int
	sizes    []int
	bytes    int
	maxBytes int
}

func newHistory[T any](capacity int) *history[T] {
	return &history[T]{buf: make([]T, capacity), next: 1}
}

// withBytes bounds the history's items to maxBytes as size counts them.
func (h *history[T]) withBytes(maxBytes int, size func(T) int) *history[T] {
	h.maxBytes, h.size, h.sizes = maxBytes, size, make([]int, len(h.buf))
	return h
}

func (h *history[T]) append(items ...T) {
	h.mu.Lock()
	for _, it := range items {
		sz := 0
		if h.size != nil {
			sz = h.size(it)
		}
		for h.n > 0 && (h.n == len(h.buf) || h.size != nil && h.bytes+sz > h.maxBytes) {
			var zero T
			h.buf[h.head] = zero // drop the reference: the item may be large
			if h.size != nil {
				h.bytes -= h.sizes[h.head]
			}
			h.head = (h.head + 1) % len(h.buf)
			h.n--
			h.first++
		}
		if h.n == 0 {
			h.first = h.next
		}
		h.buf[(h.head+h.n)%len(h.buf)] = it
		if h.size != nil {
			h.sizes[(h.head+h.n)%len(h.buf)] = sz
			h.bytes += sz
		}
		h.n++
		h.next++
	}
	h.mu.Unlock()
}

// startAfter makes an empty history number its next item n+1, so that its
// numbers keep following a sequence that advanced without items.
func (h *history[T]) startAfter(n uint64) {
	h.mu.Lock()
	if h.n == 0 && n+1 > h.next {
		h.next = n + 1
	}
	h.mu.Unlock()
}

// since returns up to max items numbered after `after`, and ErrCompacted if
// some of them are no longer held. max <= 0 means no limit.
func (h *history[T]) since(after uint64, max int) ([]T, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if after+1 >= h.next {
		return nil, nil
	}
	if h.n == 0 || after+1 < h.first {
		return nil, ErrCompacted
	}
	count := int(h.next - after - 1)
	if max > 0 && count > max {
		count = max
	}
	out := make([]T, count)
	off := int(after + 1 - h.first)
	for i := range out {
		out[i] = h.buf[(h.head+off+i)%len(h.buf)]
	}
	return out, nil
}
