package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
)

// A bounds-checked reader of bbolt's file format (go.etcd.io/bbolt v1.5.0,
// internal/common). bbolt reads its file through unchecked pointers into an
// mmap, so a damaged file makes it read outside the mapping and crash the
// process. This reader only copies bytes into Go slices, so no file can make
// it panic or fault: the check uses it before bbolt touches the file, and
// recovery uses it to read what is left.

// The layout. Integers are in the machine's byte order, as bbolt writes them.
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	metaSize         = 64 // magic, version, page size, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	metaSumEnd       = 56 // the checksum covers the meta up to itself
	elemSize         = 16 // leaf: flags, pos, ksize, vsize u32; branch: pos, ksize u32, pgid u64
	bucketHeaderSize = 16 // root pgid u64 (0: the bucket's page is inline after the header), sequence u64

	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	minPageSize = 1024
	maxPageSize = 64 << 10
	// maxDepth bounds nesting (tree levels plus buckets); bbolt trees of
	// any size this store holds are a few levels deep.
	maxDepth = 64
)

var order = binary.NativeEndian

// metaInfo is one of the two meta pages.
type metaInfo struct {
	slot     int
	pageSize int
	root     uint64 // the root bucket's page
	freelist uint64
	pgid     uint64 // the high water mark: pages [0, pgid) are in use or free
	txid     uint64
	err      error // why the page is not valid; nil if it is
}

// parseMeta reads a meta page from the start of buf, checking it as bbolt
// does: magic, version and the FNV-64a checksum.
func parseMeta(buf []byte, slot int) metaInfo {
	m := metaInfo{slot: slot}
	if len(buf) < pageHeaderSize+metaSize {
		m.err = fmt.Errorf("meta page %d is cut off", slot)
		return m
	}
	b := buf[pageHeaderSize:]
	m.pageSize = int(order.Uint32(b[8:]))
	m.root = order.Uint64(b[16:])
	m.freelist = order.Uint64(b[32:])
	m.pgid = order.Uint64(b[40:])
	m.txid = order.Uint64(b[48:])
	h := fnv.New64a()
	h.Write(b[:metaSumEnd])
	switch {
	case order.Uint32(b[0:]) != boltMagic:
		m.err = fmt.Errorf("meta page %d is not a bbolt meta page", slot)
	case order.Uint32(b[4:]) != boltVersion:
		m.err = fmt.Errorf("meta page %d has format version %d, want %d", slot, order.Uint32(b[4:]), boltVersion)
	case order.Uint64(b[metaSumEnd:]) != h.Sum64():
		m.err = fmt.Errorf("meta page %d checksum does not match", slot)
	case m.pageSize < minPageSize || m.pageSize > maxPageSize || m.pageSize&(m.pageSize-1) != 0:
		m.err = fmt.Errorf("meta page %d has page size %d", slot, m.pageSize)
	}
	return m
}

// readMetas reads both meta pages of a file of size bytes. The page size
// comes from meta page 0, or, if that is not valid, from the first offset
// where a valid meta page 1 lies, as bbolt finds it. It returns 0 for the
// page size when neither meta page is valid.
func readMetas(f io.ReaderAt, size int64) (pageSize int, metas [2]metaInfo) {
	read := func(off int64, slot int) metaInfo {
		buf := make([]byte, pageHeaderSize+metaSize)
		if off+int64(len(buf)) > size {
			return metaInfo{slot: slot, err: fmt.Errorf("meta page %d is cut off", slot)}
		}
		if _, err := f.ReadAt(buf, off); err != nil {
			return metaInfo{slot: slot, err: fmt.Errorf("meta page %d: %w", slot, err)}
		}
		return parseMeta(buf, slot)
	}
	metas[0] = read(0, 0)
	if metas[0].err == nil {
		pageSize = metas[0].pageSize
		metas[1] = read(int64(pageSize), 1)
	} else {
		metas[1] = metaInfo{slot: 1, err: fmt.Errorf("no valid meta page 1 at any page size")}
		for ps := minPageSize; ps <= maxPageSize; ps *= 2 {
			if m := read(int64(ps), 1); m.err == nil && m.pageSize == ps {
				pageSize, metas[1] = ps, m
				break
			}
		}
	}
	if metas[1].err == nil && metas[1].pageSize != pageSize {
		metas[1].err = fmt.Errorf("meta page 1 has page size %d, meta page 0 %d", metas[1].pageSize, pageSize)
	}
	return pageSize, metas
}

// current returns the meta pages in the order bbolt would use them: the one
// with the higher transaction id first, if it is valid. Invalid ones are
// left out.
func current(metas [2]metaInfo) []metaInfo {
	a, b := metas[0], metas[1]
	if b.txid > a.txid {
		a, b = b, a
	}
	var out []metaInfo
	for _, m := range []metaInfo{a, b} {
		if m.err == nil {
			out = append(out, m)
		}
	}
	return out
}

// page is one page of the file with its overflow pages, or an inline
// bucket's page.
type page struct {
	id    uint64
	flags uint16
	count int
	buf   []byte // the header and the body
}

func parsePage(buf []byte) (page, error) {
	if len(buf) < pageHeaderSize {
		return page{}, fmt.Errorf("page is %d bytes, shorter than its header", len(buf))
	}
	p := page{id: order.Uint64(buf), flags: order.Uint16(buf[8:]), count: int(order.Uint16(buf[10:])), buf: buf}
	if p.flags == leafPageFlag || p.flags == branchPageFlag {
		if pageHeaderSize+p.count*elemSize > len(buf) {
			return page{}, fmt.Errorf("page %d: %d elements do not fit in it", p.id, p.count)
		}
	}
	return p, nil
}

func (p page) kind() string {
	switch p.flags {
	case branchPageFlag:
		return "branch"
	case leafPageFlag:
		return "leaf"
	case freelistPageFlag:
		return "freelist"
	case 0x04:
		return "meta"
	}
	return fmt.Sprintf("unknown type %#x", p.flags)
}

// leaf returns element i of a leaf page.
func (p page) leaf(i int) (flags uint32, k, v []byte, err error) {
	off := pageHeaderSize + i*elemSize
	e := p.buf[off : off+elemSize]
	flags = order.Uint32(e)
	start := uint64(off) + uint64(order.Uint32(e[4:]))
	kEnd := start + uint64(order.Uint32(e[8:]))
	vEnd := kEnd + uint64(order.Uint32(e[12:]))
	if vEnd > uint64(len(p.buf)) {
		return 0, nil, nil, fmt.Errorf("page %d: element %d runs past the page", p.id, i)
	}
	return flags, p.buf[start:kEnd], p.buf[kEnd:vEnd], nil
}

// branch returns element i of a branch page: the first key of a child page
// and the child's id.
func (p page) branch(i int) (k []byte, child uint64, err error) {
	off := pageHeaderSize + i*elemSize
	e := p.buf[off : off+elemSize]
	start := uint64(off) + uint64(order.Uint32(e))
	end := start + uint64(order.Uint32(e[4:]))
	if end > uint64(len(p.buf)) {
		return nil, 0, fmt.Errorf("page %d: element %d runs past the page", p.id, i)
	}
	return p.buf[start:end], order.Uint64(e[8:]), nil
}

// pager reads the pages of one meta page's view of the file. It remembers
// every page it handed out, so that a page referenced twice (a cycle, or two
// trees sharing a page) is an error rather than a loop.
type pager struct {
	f        io.ReaderAt
	pageSize int
	hwm      uint64 // pages [2, hwm) may be read
	seen     map[uint64]bool
}

func newPager(f io.ReaderAt, pageSize int, hwm uint64) *pager {
	return &pager{f: f, pageSize: pageSize, hwm: hwm, seen: map[uint64]bool{}}
}

// read returns page id with its overflow pages.
func (r *pager) read(id uint64) (page, error) {
	switch {
	case id < 2:
		return page{}, fmt.Errorf("page %d is a meta page", id)
	case id >= r.hwm:
		return page{}, fmt.Errorf("page %d lies beyond the file's %d pages", id, r.hwm)
	}
	head := make([]byte, pageHeaderSize)
	if _, err := r.f.ReadAt(head, int64(id)*int64(r.pageSize)); err != nil {
		return page{}, fmt.Errorf("page %d: %w", id, err)
	}
	if got := order.Uint64(head); got != id {
		return page{}, fmt.Errorf("page %d: its header says it is page %d", id, got)
	}
	overflow := uint64(order.Uint32(head[12:]))
	if overflow >= r.hwm-id {
		return page{}, fmt.Errorf("page %d: %d overflow pages run past the last page", id, overflow)
	}
	for i := id; i <= id+overflow; i++ {
		if r.seen[i] {
			return page{}, fmt.Errorf("page %d is referenced twice", i)
		}
	}
	for i := id; i <= id+overflow; i++ {
		r.seen[i] = true
	}
	buf := make([]byte, (1+overflow)*uint64(r.pageSize))
	if _, err := r.f.ReadAt(buf, int64(id)*int64(r.pageSize)); err != nil {
		return page{}, fmt.Errorf("page %d: %w", id, err)
	}
	return parsePage(buf)
}

// freelist checks the freelist page: its type, and that every page it
// lists lies within the file.
func (r *pager) freelist(id uint64) error {
	p, err := r.read(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if p.flags != freelistPageFlag {
		return fmt.Errorf("freelist: page %d is a %s page", id, p.kind())
	}
	first, n := uint64(0), uint64(p.count)
	if n == 0xFFFF { // the real count is the first element
		if len(p.buf) < pageHeaderSize+8 {
			return fmt.Errorf("freelist: page %d is cut off", id)
		}
		first, n = 1, order.Uint64(p.buf[pageHeaderSize:])
	}
	if n > uint64(len(p.buf)) || pageHeaderSize+(first+n)*8 > uint64(len(p.buf)) {
		return fmt.Errorf("freelist: %d page ids do not fit in page %d", n, id)
	}
	for i := first; i < first+n; i++ {
		if free := order.Uint64(p.buf[pageHeaderSize+i*8:]); free < 2 || free >= r.hwm {
			return fmt.Errorf("freelist: lists page %d, outside [2, %d)", free, r.hwm)
		}
	}
	return nil
}

// visitor receives what a walk finds. leaf gets every element of every
// readable leaf page, in key order; bad gets every subtree that cannot be
// read, with the key range [lo, hi) it would have held (nil: unbounded).
// An error from either stops the walk.
type visitor struct {
	leaf func(flags uint32, k, v []byte) error
	bad  func(lo, hi []byte, err error) error
}

// tree walks the B+tree whose root is page id.
func (r *pager) tree(id uint64, lo, hi []byte, depth int, vis visitor) error {
	if depth > maxDepth {
		return vis.bad(lo, hi, fmt.Errorf("page %d is nested more than %d deep", id, maxDepth))
	}
	p, err := r.read(id)
	if err != nil {
		return vis.bad(lo, hi, err)
	}
	return r.node(p, lo, hi, depth, vis)
}

// node walks a page that is already read: a tree page or an inline bucket.
func (r *pager) node(p page, lo, hi []byte, depth int, vis visitor) error {
	switch p.flags {
	case leafPageFlag:
		for i := 0; i < p.count; i++ {
			flags, k, v, err := p.leaf(i)
			if err != nil {
				return vis.bad(lo, hi, err)
			}
			if err := vis.leaf(flags, k, v); err != nil {
				return err
			}
		}
		return nil
	case branchPageFlag:
		if p.count == 0 {
			return vis.bad(lo, hi, fmt.Errorf("page %d: branch page without elements", p.id))
		}
		keys, children := make([][]byte, p.count), make([]uint64, p.count)
		for i := range p.count {
			var err error
			if keys[i], children[i], err = p.branch(i); err != nil {
				return vis.bad(lo, hi, err)
			}
		}
		for i, c := range children {
			clo, chi := keys[i], hi
			if i == 0 {
				clo = lo
			}
			if i+1 < len(keys) {
				chi = keys[i+1]
			}
			if err := r.tree(c, clo, chi, depth+1, vis); err != nil {
				return err
			}
		}
		return nil
	}
	return vis.bad(lo, hi, fmt.Errorf("page %d: a %s page where a tree page belongs", p.id, p.kind()))
}

// bucket walks the bucket whose header (and inline page) is v.
func (r *pager) bucket(v []byte, depth int, vis visitor) error {
	if len(v) < bucketHeaderSize {
		return vis.bad(nil, nil, fmt.Errorf("bucket header is %d bytes", len(v)))
	}
	if root := order.Uint64(v); root != 0 {
		return r.tree(root, nil, nil, depth+1, vis)
	}
	p, err := parsePage(v[bucketHeaderSize:])
	if err != nil {
		return vis.bad(nil, nil, fmt.Errorf("inline bucket: %w", err))
	}
	if p.flags != leafPageFlag {
		return vis.bad(nil, nil, fmt.Errorf("inline bucket: a %s page", p.kind()))
	}
	return r.node(p, nil, nil, depth+1, vis)
}

// describeRange names a key range for a log line.
func describeRange(lo, hi []byte) string {
	switch {
	case lo == nil && hi == nil:
		return "all keys"
	case lo == nil:
		return fmt.Sprintf("keys before %q", hi)
	case hi == nil:
		return fmt.Sprintf("keys from %q on", lo)
	}
	return fmt.Sprintf("keys from %q to before %q", lo, hi)
}

// inRange reports whether k lies in [lo, hi).
func inRange(k, lo, hi []byte) bool {
	return (lo == nil || bytes.Compare(k, lo) >= 0) && (hi == nil || bytes.Compare(k, hi) < 0)
}
