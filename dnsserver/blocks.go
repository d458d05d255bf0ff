package dnsserver

import "slices"

// blockRecords is how many records an answer set keeps in one block.
const blockRecords = 256

// blockList is a list of fixed-size records kept in blocks of blockRecords,
// every block full but the last: a record is unit elements of T (the bytes
// of an A record, or one SRV record). A published list is immutable, and a
// builder changing it copies only the blocks it changes and the table of
// blocks: a new version of a set of n records costs O(changes + n/256), not
// O(n). The zero value is an empty list.
type blockList[T any] struct {
	blocks [][]T
	n      int // records
	unit   int // elements per record
}

func newBlockList[T any](unit int) blockList[T] { return blockList[T]{unit: unit} }

// rec returns record i.
func (l *blockList[T]) rec(i int) []T {
	o := i % blockRecords * l.unit
	return l.blocks[i/blockRecords][o : o+l.unit]
}

// at returns record i of a list of one-element records.
func (l *blockList[T]) at(i int) *T { return &l.blocks[i/blockRecords][i%blockRecords] }

// blockWriter changes a blockList, copying each block it changes once per
// version: the blocks of a published version are never written.
type blockWriter[T any] struct {
	l     blockList[T]
	owned []uint32 // the generation in which each block was copied
	table bool     // the table of blocks was copied in this generation
	gen   uint32
}

// publish returns the list as it is and starts a new generation: every
// block is shared with the returned list from now on.
func (w *blockWriter[T]) publish() blockList[T] {
	l := w.l
	l.blocks = l.blocks[:len(l.blocks):len(l.blocks)]
	w.gen++
	w.table = false
	return l
}

func (w *blockWriter[T]) own(b int) []T {
	if !w.table {
		w.l.blocks = slices.Clone(w.l.blocks)
		w.table = true
	}
	w.owned = growTo(w.owned, len(w.l.blocks))
	if w.owned[b] != w.gen+1 {
		// Room for a few more records, not a whole block: most sets are
		// a handful of records, and the cache holds one per service.
		old := w.l.blocks[b]
		nb := make([]T, len(old), min(blockRecords*w.l.unit, len(old)+len(old)/4+w.l.unit))
		copy(nb, old)
		w.l.blocks[b] = nb
		w.owned[b] = w.gen + 1
	}
	return w.l.blocks[b]
}

// set overwrites record i.
func (w *blockWriter[T]) set(i int, r []T) {
	b := w.own(i / blockRecords)
	copy(b[i%blockRecords*w.l.unit:], r)
}

// push appends a record.
func (w *blockWriter[T]) push(r []T) {
	if w.l.n%blockRecords == 0 {
		if !w.table {
			w.l.blocks = slices.Clone(w.l.blocks)
			w.table = true
		}
		w.l.blocks = append(w.l.blocks, make([]T, 0, w.l.unit))
		w.owned = growTo(w.owned, len(w.l.blocks))
		w.owned[len(w.l.blocks)-1] = w.gen + 1 // new, so never shared
	}
	last := len(w.l.blocks) - 1
	w.l.blocks[last] = append(w.own(last), r...) // an owned block may grow in place
	w.l.n++
}

// pop removes the last record.
func (w *blockWriter[T]) pop() {
	w.l.n--
	last := len(w.l.blocks) - 1
	if w.l.n%blockRecords == 0 {
		if !w.table {
			w.l.blocks = slices.Clone(w.l.blocks)
			w.table = true
		}
		w.l.blocks = w.l.blocks[:last]
		return
	}
	b := w.own(last)
	w.l.blocks[last] = b[:len(b)-w.l.unit]
}

// removeSwap removes record i by moving the last record into its place,
// and returns the index the moved record had (n-1 before the call).
func (w *blockWriter[T]) removeSwap(i int) int {
	last := w.l.n - 1
	if i != last {
		w.set(i, w.l.rec(last))
	}
	w.pop()
	return last
}

// growTo returns s with at least n elements.
func growTo(s []uint32, n int) []uint32 {
	for len(s) < n {
		s = append(s, 0)
	}
	return s
}
