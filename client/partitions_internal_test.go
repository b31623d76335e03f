package client

import (
	"slices"
	"testing"

	"github.com/proglog/proglog/catalog"
	logv1 "github.com/proglog/proglog/gen/log/v1"
)

func TestSplit(t *testing.T) {
	rec := func(key string) *logv1.Record { return &logv1.Record{Key: []byte(key), Value: []byte("v")} }
	const n = 4
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	var keyed []*logv1.Record
	for _, k := range keys {
		keyed = append(keyed, rec(k))
	}
	mixed := append(slices.Clone(keyed[:3]), rec(""), keyed[3], rec(""))

	t.Run("named partition", func(t *testing.T) {
		parts := split(target{partition: 2, partitionSet: true}, keyed, n)
		if len(parts) != 1 || parts[0].idx != nil || !parts[0].named || parts[0].partition != 2 {
			t.Fatalf("got %+v", parts)
		}
	})
	t.Run("unknown count", func(t *testing.T) {
		if parts := split(target{}, keyed, 0); len(parts) != 1 || parts[0].idx != nil || parts[0].named {
			t.Fatalf("got %+v", parts)
		}
	})
	t.Run("one partition", func(t *testing.T) {
		if parts := split(target{}, keyed, 1); len(parts) != 1 || parts[0].named {
			t.Fatalf("got %+v", parts)
		}
	})
	t.Run("no keys", func(t *testing.T) {
		if parts := split(target{}, []*logv1.Record{rec(""), rec("")}, n); len(parts) != 1 || parts[0].named {
			t.Fatalf("got %+v", parts)
		}
	})
	t.Run("keyed and keyless", func(t *testing.T) {
		parts := split(target{topic: "t"}, mixed, n)
		seen := map[int]bool{}
		covered := 0
		for _, p := range parts {
			if !slices.IsSorted(p.idx) {
				t.Fatalf("part %+v out of order", p)
			}
			covered += len(p.idx)
			rs := p.records(mixed)
			if !p.named {
				for _, r := range rs {
					if len(r.GetKey()) != 0 {
						t.Fatalf("keyed record in the unnamed part %+v", p)
					}
				}
				continue
			}
			if seen[p.partition] {
				t.Fatalf("partition %d in two parts", p.partition)
			}
			seen[p.partition] = true
			for _, r := range rs {
				if got := catalog.PartitionForKey(r.GetKey(), n); got != p.partition {
					t.Fatalf("key %q in the part of partition %d, maps to %d", r.GetKey(), p.partition, got)
				}
			}
			if tg := p.target(target{topic: "t"}); !tg.partitionSet || tg.partition != p.partition || tg.topic != "t" {
				t.Fatalf("target %+v", tg)
			}
		}
		if covered != len(mixed) {
			t.Fatalf("parts cover %d of %d records", covered, len(mixed))
		}
		if parts[0].idx[0] != 0 {
			t.Fatalf("the first part does not hold the first record: %+v", parts)
		}
	})
	t.Run("one key partition", func(t *testing.T) {
		parts := split(target{}, []*logv1.Record{rec("a"), rec("a")}, n)
		if len(parts) != 1 || parts[0].idx != nil || !parts[0].named || parts[0].partition != catalog.PartitionForKey([]byte("a"), n) {
			t.Fatalf("got %+v", parts)
		}
	})
}

func TestPartitionOption(t *testing.T) {
	if _, err := targetOf([]CallOption{Partition(-1)}); err == nil {
		t.Fatal("a negative partition passed")
	}
	tg, err := targetOf([]CallOption{Topic("x"), Partition(3)})
	if err != nil || tg.topic != "x" || *tg.wirePartition() != 3 {
		t.Fatalf("got %+v, %v", tg, err)
	}
	if tg, _ := targetOf(nil); tg.wirePartition() != nil || tg.name() != "default" {
		t.Fatalf("got %+v", tg)
	}
}
