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
	rec, err := l.Read(off)
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
		batch, err = l.ReadBatch(off, 100, 1<<20, batch[:0])
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
