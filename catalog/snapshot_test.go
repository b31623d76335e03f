package catalog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// randomCommands returns a seeded mix of commands, many of them refused.
func randomCommands(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 0))
	names := []string{"a", "b", "c", DefaultTopic, "bad/name"}
	nodes := []string{"n1", "n2", "n3", "n4", ""}
	pick := func(ss []string) string { return ss[rng.IntN(len(ss))] }
	replicas := func(k int) []string {
		rs := make([]string, k)
		for i := range rs {
			rs[i] = pick(nodes)
		}
		return rs
	}
	var cmds [][]byte
	for range n {
		switch rng.IntN(5) {
		case 0, 1:
			rf := rng.IntN(3) + 1
			parts := make([][]string, rng.IntN(4))
			for i := range parts {
				parts[i] = replicas(rf)
			}
			cmds = append(cmds, EncodeCreate(CreateTopic{Name: pick(names), ReplicationFactor: rf,
				Config: Config{RetentionBytes: rng.Uint64N(1000), RetentionAge: time.Duration(rng.IntN(100) - 10)}, Replicas: parts}))
		case 2:
			cmds = append(cmds, EncodeUpdate(UpdateTopic{Name: pick(names), MaxRecordBytes: ptr(rng.Uint32())}))
		case 3:
			cmds = append(cmds, EncodeDelete(pick(names)))
		default:
			cmds = append(cmds, EncodeSetReplicas(SetReplicas{Name: pick(names), Partition: rng.IntN(4) - 1, Replicas: replicas(rng.IntN(4))}))
		}
	}
	return cmds
}

// Two nodes applying the same commands (refused ones too) hold the same
// bytes, whatever location or monotonic reading their times carry; so
// does a third that restored a snapshot part way.
func TestSameCommandsSameSnapshot(t *testing.T) {
	for seed := range uint64(20) {
		cmds := randomCommands(seed, 300)
		a, b, c := New(), New(), New()
		base := time.Now()
		refused, created := 0, 0
		for i, cmd := range cmds {
			index := uint64(2*i + 1)
			at := base.Add(time.Duration(i) * time.Millisecond)
			res := a.Apply(index, at, cmd).(Result)
			if res.Err != nil {
				refused++
			} else if res.Topic.ID == index {
				created++
			}
			b.Apply(index, at.In(time.FixedZone("elsewhere", -7*3600)).Round(0), cmd)
			if i == len(cmds)/2 {
				snap, _ := a.Snapshot()
				if err := c.Restore(snap); err != nil {
					t.Fatal(err)
				}
			} else if i > len(cmds)/2 {
				c.Apply(index, at.UTC(), cmd)
			}
			if err := checkView(a.View()); err != nil {
				t.Fatalf("seed %d, command %d: %v", seed, i, err)
			}
		}
		sa, _ := a.Snapshot()
		sb, _ := b.Snapshot()
		sc, _ := c.Snapshot()
		if !bytes.Equal(sa, sb) || !bytes.Equal(sa, sc) {
			t.Fatalf("seed %d: snapshots differ", seed)
		}
		if refused == 0 || created == 0 {
			t.Fatalf("seed %d: %d of %d refused, %d created: the mix tests too little", seed, refused, len(cmds), created)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	a := fixture(t)
	a.Apply(6, t0, EncodeUpdate(UpdateTopic{Name: DefaultTopic, RetentionAge: ptr(time.Minute)}))
	a.Apply(7, t0.Add(time.Second), create("clicks", 1, []string{"z"}))
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b := New()
	if err := b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.View().Topics(), a.View().Topics()) || b.View().Index() != 7 {
		t.Fatalf("restored %+v at %d, want %+v", b.View().Topics(), b.View().Index(), a.View().Topics())
	}
	if again, _ := b.Snapshot(); !bytes.Equal(again, snap) {
		t.Fatal("restored state snapshots differently")
	}
	// Apply carries on from a restored state as from the original.
	for _, c := range []*Catalog{a, b} {
		c.Apply(8, t0, EncodeDelete("orders"))
	}
	sa, _ := a.Snapshot()
	sb, _ := b.Snapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatal("diverged after restore")
	}
	if err := b.Restore(nil); err != nil || !reflect.DeepEqual(b.View().Topics(), New().View().Topics()) || b.View().Index() != 0 {
		t.Fatalf("Restore(nil): %v, %+v", err, b.View().Topics())
	}
}

// The initial state's bytes, as the package doc describes them.
func TestSnapshotBytes(t *testing.T) {
	snap, _ := New().Snapshot()
	zero := binary.AppendVarint(nil, time.Time{}.Unix())
	want := append([]byte{0x01, 0, 1, 7, 'd', 'e', 'f', 'a', 'u', 'l', 't', 0, 0, 0, 0, 0}, zero...)
	want = append(want, 0, 1, 1, 0, 0) // one partition: flags System, no replicas, no initial replicas
	want = binary.LittleEndian.AppendUint32(want, crc32.Checksum(want, castagnoli))
	if !bytes.Equal(snap, want) {
		t.Fatalf("initial snapshot % x, want % x", snap, want)
	}
}

// A damaged snapshot is refused whole and leaves the state as it was.
func TestRestoreRefusesDamage(t *testing.T) {
	c := fixture(t)
	snap, _ := c.Snapshot()
	for i := range snap {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(snap)
			bad[i] ^= bit
			if err := c.Restore(bad); !errors.Is(err, ErrInvalid) {
				t.Fatalf("byte %d flipped: Restore = %v", i, err)
			}
		}
		if i == 0 {
			continue // empty: the initial state
		}
		if err := c.Restore(snap[:i]); !errors.Is(err, ErrInvalid) {
			t.Fatalf("cut at %d: Restore = %v", i, err)
		}
	}
	if got, _ := c.Snapshot(); !bytes.Equal(got, snap) {
		t.Fatal("refused snapshots changed the state")
	}
}

// States Apply cannot build are refused even under a good checksum.
func TestRestoreRefusesImpossibleStates(t *testing.T) {
	orders := func(mod func(*Topic)) *Topic {
		tp := &Topic{Name: "orders", ID: 5, ReplicationFactor: 1, Partitions: []Partition{{Replicas: []string{"a"}}}}
		mod(tp)
		return tp
	}
	def := New().View().sorted[0]
	for name, topics := range map[string][]*Topic{
		"no default":       {orders(func(*Topic) {})},
		"unsorted":         {orders(func(*Topic) {}), def},
		"twice":            {def, def},
		"ID past index":    {def, orders(func(t *Topic) { t.ID = 11 })},
		"ID 0":             {def, orders(func(t *Topic) { t.ID = 0 })},
		"shared ID":        {def, orders(func(t *Topic) { t.Name = "a" }), orders(func(*Topic) {})},
		"rf 0":             {def, orders(func(t *Topic) { t.ReplicationFactor = 0 })},
		"below rf":         {def, orders(func(t *Topic) { t.ReplicationFactor = 2 })},
		"no partitions":    {def, orders(func(t *Topic) { t.Partitions = nil })},
		"system partition": {def, orders(func(t *Topic) { t.Partitions[0].System = true })},
		"repeated node":    {def, orders(func(t *Topic) { t.Partitions[0].Replicas = []string{"a", "a"} })},
		"bad name":         {def, orders(func(t *Topic) { t.Name = ".." })},
		"negative age":     {def, orders(func(t *Topic) { t.Config.RetentionAge = -1 })},
		"default with ID":  {{Name: DefaultTopic, ID: 1, Partitions: []Partition{{System: true}}}},
		"default replicas": {{Name: DefaultTopic, Partitions: []Partition{{System: true, Replicas: []string{"a"}}}}},
	} {
		snap := encodeView(newView(10, nil, topics))
		if _, err := decodeView(snap); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: decodeView = %v, want ErrInvalid", name, err)
		}
	}
}

func snapshotSeeds(f *testing.F) {
	for seed := range uint64(4) {
		c := New()
		for i, cmd := range randomCommands(seed, 40) {
			c.Apply(uint64(i+1), t0, cmd)
		}
		snap, _ := c.Snapshot()
		f.Add(snap)
	}
	snap, _ := New().Snapshot()
	f.Add(snap)
}

// FuzzDecodeSnapshot: Restore either refuses with ErrInvalid, changing
// nothing, or takes a state that snapshots to exactly the same bytes.
func FuzzDecodeSnapshot(f *testing.F) {
	snapshotSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) { checkRestore(t, b) })
}

// FuzzDecodeSnapshotBody fuzzes behind the checksum, which random bytes
// almost never pass.
func FuzzDecodeSnapshotBody(f *testing.F) {
	snapshotSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 4 {
			b = b[:len(b)-4]
		}
		checkRestore(t, binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)))
	})
}

func checkRestore(t *testing.T, b []byte) {
	c := New()
	before, _ := c.Snapshot()
	if err := c.Restore(b); err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
		if after, _ := c.Snapshot(); !bytes.Equal(after, before) {
			t.Fatal("refused snapshot changed the state")
		}
		return
	}
	if len(b) == 0 {
		return
	}
	if again, _ := c.Snapshot(); !bytes.Equal(again, b) {
		t.Fatalf("restored % x, snapshots as % x", b, again)
	}
	if err := checkView(c.View()); err != nil {
		t.Fatal(fmt.Errorf("restored state: %w", err))
	}
}
