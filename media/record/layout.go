package record

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"time"
)

// On the card, under Config.Path:
//
//	YYYY-MM-DD/HHMMSS-mmm.ts   one segment, MPEG-TS, named by the UTC wall
//	                           clock of its first keyframe
//	YYYY-MM-DD/HHMMSS-mmm.idx  its index: fixed-size records, appended
//
// The index says which prefix of the segment is complete and durable (sync
// records), where its keyframes start (keyframe records) and whether the
// segment was closed (end record).
const (
	dayLayout   = "2006-01-02"
	segExt      = ".ts"
	idxExt      = ".idx"
	segNameLen  = len("150405-000")
	recordSize  = 32
	maxIdxBytes = 4 << 20 // 131072 records: hours of keyframes and syncs
	// maxSegBytes bounds one segment file: an hour at 50 Mbit/s.
	maxSegBytes = 24 << 30
)

// Index record types.
const (
	recKey  = 'K' // a keyframe starts at offset (tables included)
	recSync = 'S' // bytes [0, offset) are complete and were synced
	recEnd  = 'E' // the segment is closed; it ends at offset
)

// indexRecord is one 32-byte index record:
//
//	0     type (K, S, E)
//	1..3  zero
//	4..7  CRC-32 (IEEE) of bytes 0..3 and 8..31
//	8..15 offset in the segment, bytes
//	16..23 wall clock, unix ms: of the keyframe (K), of the last frame
//	       written before offset (S, E)
//	24..31 PTS of the keyframe in the segment, 90 kHz (K); 0 otherwise
type indexRecord struct {
	Type   byte
	Offset int64
	Wall   int64
	PTS90  int64
}

func (r indexRecord) marshal(b []byte) {
	clear(b[:recordSize])
	b[0] = r.Type
	binary.LittleEndian.PutUint64(b[8:], uint64(r.Offset))
	binary.LittleEndian.PutUint64(b[16:], uint64(r.Wall))
	binary.LittleEndian.PutUint64(b[24:], uint64(r.PTS90))
	binary.LittleEndian.PutUint32(b[4:], recordCRC(b))
}

func recordCRC(b []byte) uint32 {
	c := crc32.ChecksumIEEE(b[:4])
	return crc32.Update(c, crc32.IEEETable, b[8:recordSize])
}

// parseRecord decodes one record; a torn or foreign record is ErrBadIndex.
func parseRecord(b []byte) (indexRecord, error) {
	if len(b) < recordSize {
		return indexRecord{}, fmt.Errorf("%w: short record", ErrBadIndex)
	}
	if binary.LittleEndian.Uint32(b[4:]) != recordCRC(b) {
		return indexRecord{}, fmt.Errorf("%w: checksum", ErrBadIndex)
	}
	r := indexRecord{
		Type:   b[0],
		Offset: int64(binary.LittleEndian.Uint64(b[8:])),
		Wall:   int64(binary.LittleEndian.Uint64(b[16:])),
		PTS90:  int64(binary.LittleEndian.Uint64(b[24:])),
	}
	switch {
	case r.Type != recKey && r.Type != recSync && r.Type != recEnd:
		return indexRecord{}, fmt.Errorf("%w: record type %#x", ErrBadIndex, r.Type)
	case b[1] != 0 || b[2] != 0 || b[3] != 0:
		return indexRecord{}, fmt.Errorf("%w: reserved bytes set", ErrBadIndex)
	case r.Offset < 0 || r.Offset > maxSegBytes || r.Offset%tsPacketSize != 0:
		return indexRecord{}, fmt.Errorf("%w: offset %d", ErrBadIndex, r.Offset)
	case r.PTS90 < 0 || r.PTS90 >= 1<<33:
		return indexRecord{}, fmt.Errorf("%w: pts %d", ErrBadIndex, r.PTS90)
	}
	return r, nil
}

// segIndex is what an index file says about its segment.
type segIndex struct {
	keys   []indexRecord // keyframes within the durable part, in order
	synced indexRecord   // the last sync or end record; Type 0 when none
	closed bool          // an end record was found
	// valid is the length of the leading run of good records, in bytes.
	valid int64
}

// parseIndex reads records up to the first bad one: a record torn by a
// power cut ends the index. Keyframes past the durable part are dropped.
// Offsets must not go backwards, so a corrupt file yields an error or a
// short index, never a wrong order.
func parseIndex(data []byte) (segIndex, error) {
	if len(data) > maxIdxBytes {
		return segIndex{}, fmt.Errorf("%w: index of %d bytes", ErrTooLarge, len(data))
	}
	var ix segIndex
	var last int64
	for off := 0; off+recordSize <= len(data); off += recordSize {
		r, err := parseRecord(data[off : off+recordSize])
		if err != nil {
			break
		}
		if r.Offset < last {
			break
		}
		if ix.closed {
			break // nothing may follow the end record
		}
		switch r.Type {
		case recKey:
			ix.keys = append(ix.keys, r)
		case recSync:
			ix.synced = r
		case recEnd:
			ix.synced = r
			ix.closed = true
		}
		last = r.Offset
		ix.valid = int64(off + recordSize)
	}
	// Keyframes that start at or beyond the durable end are not playable.
	n := len(ix.keys)
	for n > 0 && ix.keys[n-1].Offset >= ix.synced.Offset {
		n--
	}
	ix.keys = ix.keys[:n]
	if len(ix.keys) == 0 && ix.synced.Type != 0 {
		return ix, fmt.Errorf("%w: synced data without a keyframe", ErrBadIndex)
	}
	return ix, nil
}

// segName is the file name stem of a segment starting at t.
func segName(t time.Time) (day, stem string) {
	t = t.UTC()
	return t.Format(dayLayout), fmt.Sprintf("%02d%02d%02d-%03d", t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e6)
}

// parseSegName reads the start time back from a day directory and a stem.
func parseSegName(day, stem string) (time.Time, error) {
	d, err := time.Parse(dayLayout, day)
	if err != nil || len(day) != len(dayLayout) {
		return time.Time{}, fmt.Errorf("%w: day %q", ErrBadName, day)
	}
	if len(stem) != segNameLen || stem[6] != '-' {
		return time.Time{}, fmt.Errorf("%w: %q", ErrBadName, stem)
	}
	num := func(s string, max int) (int, bool) {
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		v, err := strconv.Atoi(s)
		return v, err == nil && v <= max
	}
	h, ok1 := num(stem[0:2], 23)
	m, ok2 := num(stem[2:4], 59)
	s, ok3 := num(stem[4:6], 59)
	ms, ok4 := num(stem[7:10], 999)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return time.Time{}, fmt.Errorf("%w: %q", ErrBadName, stem)
	}
	return d.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second + time.Duration(ms)*time.Millisecond), nil
}
