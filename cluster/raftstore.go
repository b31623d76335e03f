package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// raftStore is Raft's log store and stable store in one bbolt database
// (<DataDir>/raft/raft.db), the design of hashicorp/raft-boltdb. Every
// StoreLogs, DeleteRange and Set is one bbolt transaction, fsynced before
// it returns, so an entry Raft counts as stored survives a crash.
//
// It replaces raft-wal v0.4.0, which seals a segment without its index when
// Raft deletes a conflicting tail, after which the node cannot restart
// (hashicorp/raft-wal#31: our kill -9 cluster test hit it), and
// raft-boltdb, whose v1 (boltdb/bolt) fails Go's checkptr under -race and
// whose v2 needs a go-metrics package that raft v1.8.0's go-metrics no
// longer has.
type raftStore struct {
	db *bolt.DB
}

var (
	bucketLogs   = []byte("logs")   // big-endian index -> encoded raft.Log
	bucketStable = []byte("stable") // Raft's stable store: current term, last vote
)

// errKeyNotFound must read exactly "not found": hashicorp/raft compares the
// stable store's error text to tell a missing key from a failure.
var errKeyNotFound = errors.New("not found")

func openRaftStore(path string) (*raftStore, error) {
	// The timeout makes a second opener fail instead of waiting on the flock.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLogs, bucketStable} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return &raftStore{db: db}, nil
}

func (s *raftStore) Close() error { return s.db.Close() }

// FirstIndex returns the lowest stored index, 0 when there is none.
func (s *raftStore) FirstIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().First(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// LastIndex returns the highest stored index, 0 when there is none.
func (s *raftStore) LastIndex() (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLogs).Cursor().Last(); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

func (s *raftStore) GetLog(index uint64, log *raft.Log) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogs).Get(indexKey(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		if err := decodeRaftLog(v, log); err != nil {
			return fmt.Errorf("cluster: raft log entry %d: %w", index, err)
		}
		if log.Index != index {
			return fmt.Errorf("cluster: raft log entry %d holds index %d: %w", index, log.Index, ErrCorruptEntry)
		}
		return nil
	})
}

func (s *raftStore) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs writes the entries in one transaction: one fsync for all.
func (s *raftStore) StoreLogs(logs []*raft.Log) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		for _, l := range logs {
			if err := b.Put(indexKey(l.Index), encodeRaftLog(l)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRange removes the entries min..max inclusive: a compacted head
// after a snapshot, or a conflicting tail a new leader overwrites.
func (s *raftStore) DeleteRange(min, max uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		for k, _ := c.Seek(indexKey(min)); k != nil; k, _ = c.Next() {
			if binary.BigEndian.Uint64(k) > max {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *raftStore) Set(key, val []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStable).Put(key, val)
	})
}

func (s *raftStore) Get(key []byte) ([]byte, error) {
	var val []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketStable).Get(key)
		if v == nil {
			return errKeyNotFound
		}
		val = append([]byte(nil), v...) // v is valid only inside the transaction
		return nil
	})
	return val, err
}

func (s *raftStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

func (s *raftStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("cluster: stable key %q holds %d bytes, want 8: %w", key, len(v), ErrCorruptEntry)
	}
	return binary.BigEndian.Uint64(v), nil
}

func indexKey(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// A stored raft.Log, little endian:
//
//	0   1  format version, 1
//	1   1  raft.LogType
//	2   8  index
//	10  8  term
//	18  8  AppendedAt, Unix nanoseconds (0 = zero time)
//	26  4  data length d
//	30  d  data
//	    4  extensions length e
//	    e  extensions
const (
	raftLogVersion    = 1
	raftLogHeaderSize = 30
)

// ErrCorruptEntry is returned when a stored Raft entry cannot be decoded.
var ErrCorruptEntry = errors.New("cluster: corrupt raft log entry")

func encodeRaftLog(l *raft.Log) []byte {
	b := make([]byte, raftLogHeaderSize, raftLogHeaderSize+len(l.Data)+4+len(l.Extensions))
	b[0] = raftLogVersion
	b[1] = byte(l.Type)
	binary.LittleEndian.PutUint64(b[2:], l.Index)
	binary.LittleEndian.PutUint64(b[10:], l.Term)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	binary.LittleEndian.PutUint64(b[18:], uint64(at))
	binary.LittleEndian.PutUint32(b[26:], uint32(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l.Extensions)))
	return append(b, l.Extensions...)
}

// decodeRaftLog fills l from b, copying the bytes (b belongs to bbolt).
func decodeRaftLog(b []byte, l *raft.Log) error {
	if len(b) < raftLogHeaderSize+4 {
		return fmt.Errorf("%w: %d bytes", ErrCorruptEntry, len(b))
	}
	if b[0] != raftLogVersion {
		return fmt.Errorf("%w: version %d", ErrCorruptEntry, b[0])
	}
	d := uint64(binary.LittleEndian.Uint32(b[26:]))
	if d > uint64(len(b)-raftLogHeaderSize-4) {
		return fmt.Errorf("%w: data length %d past the end", ErrCorruptEntry, d)
	}
	rest := b[raftLogHeaderSize+d:]
	e := uint64(binary.LittleEndian.Uint32(rest))
	if e != uint64(len(rest)-4) {
		return fmt.Errorf("%w: extensions length %d, %d bytes left", ErrCorruptEntry, e, len(rest)-4)
	}
	*l = raft.Log{
		Type:  raft.LogType(b[1]),
		Index: binary.LittleEndian.Uint64(b[2:]),
		Term:  binary.LittleEndian.Uint64(b[10:]),
	}
	if at := int64(binary.LittleEndian.Uint64(b[18:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	if d > 0 {
		l.Data = append([]byte(nil), b[raftLogHeaderSize:raftLogHeaderSize+d]...)
	}
	if e > 0 {
		l.Extensions = append([]byte(nil), rest[4:]...)
	}
	return nil
}
