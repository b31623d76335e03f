package logstore_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/proglog/proglog/logstore"
)

func Example() {
	dir, err := os.MkdirTemp("", "proglog-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := logstore.Open(dir, logstore.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	ctx := context.Background()
	off, err := l.Append(ctx, []byte("hello")) // returns once fdatasynced
	if err != nil {
		log.Fatal(err)
	}
	if _, err := l.AppendBatch(ctx, [][]byte{[]byte("a"), []byte("b")}); err != nil {
		log.Fatal(err)
	}
	rec, err := l.Read(context.Background(), off)
	if err != nil {
		log.Fatal(err)
	}
	lowest, next := l.Bounds()
	fmt.Printf("%d %s [%d, %d)\n", rec.Offset, rec.Value, lowest, next)
	// Output: 0 hello [0, 3)
}

// A live tail: Wait blocks until the next offset exists, then ReadBatch
// takes everything available.
func ExampleLog_Wait() {
	dir, err := os.MkdirTemp("", "proglog-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := logstore.Open(dir, logstore.Config{Sync: logstore.SyncNever})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	ctx := context.Background()
	go func() {
		for _, v := range []string{"one", "two", "three"} {
			l.Append(ctx, []byte(v))
		}
	}()
	var batch []logstore.Record
	for off := uint64(0); off < 3; {
		if err := l.Wait(ctx, off); err != nil {
			log.Fatal(err)
		}
		batch, err = l.ReadBatch(context.Background(), off, 100, 1<<20, batch[:0])
		if err != nil {
			log.Fatal(err)
		}
		for _, r := range batch {
			fmt.Println(r.Offset, string(r.Value))
		}
		off += uint64(len(batch))
	}
	// Output:
	// 0 one
	// 1 two
	// 2 three
}

// A Raft log store: record offset == Raft index. A new leader's entries
// replace a conflicting tail (TruncateFrom), and after a snapshot is
// installed the log starts over after the snapshot's index (Reset).
func ExampleLog_TruncateFrom() {
	dir, err := os.MkdirTemp("", "proglog-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := logstore.Open(dir, logstore.Config{Sync: logstore.SyncAlways})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	ctx := context.Background()
	if err := l.Reset(1); err != nil { // Raft indexes start at 1
		log.Fatal(err)
	}
	if _, err := l.AppendBatch(ctx, [][]byte{[]byte("term1"), []byte("term1"), []byte("term2-stale")}); err != nil {
		log.Fatal(err)
	}
	if err := l.TruncateFrom(3); err != nil { // index 3 conflicts with the leader's
		log.Fatal(err)
	}
	off, err := l.Append(ctx, []byte("term3"))
	if err != nil {
		log.Fatal(err)
	}
	rec, err := l.Read(context.Background(), 3)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(off, string(rec.Value))

	if err := l.Reset(1000); err != nil { // a snapshot up to index 999 was installed
		log.Fatal(err)
	}
	lowest, next := l.Bounds()
	fmt.Println(lowest, next)
	// Output:
	// 3 term3
	// 1000 1000
}
