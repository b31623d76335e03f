package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/client"
	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// exampleServer runs one plaintext node (like proglog serve --insecure)
// and returns its address and a function that stops it.
func exampleServer() (string, func()) {
	dir, err := os.MkdirTemp("", "proglog-client-example")
	if err != nil {
		log.Fatal(err)
	}
	l, err := logstore.Open(filepath.Join(dir, "log"), logstore.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	policy, err := acl.Parse(strings.NewReader("p, anonymous, *, *"))
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	svc, err := service.New(service.Config{Log: l, Authorizer: policy, NodeID: "n1", RPCAddr: ln.Addr().String()})
	if err != nil {
		log.Fatal(err)
	}
	srv := service.NewServer(service.ServerConfig{Handler: svc.Handler()})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	return ln.Addr().String(), func() {
		srv.Shutdown(context.Background())
		<-done
		l.Close()
		os.RemoveAll(dir)
	}
}

func Example() {
	addr, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	// Seeds are enough: the client finds the leader and the followers.
	// Set TLS to the caller's certificate and the cluster's CA in production.
	c, err := client.New(ctx, client.Config{Addrs: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	off, err := c.Produce(ctx, []byte("hello"))
	if errors.Is(err, client.ErrUnknownOutcome) {
		log.Fatal("the record may or may not be in the log: ", err)
	} else if err != nil {
		log.Fatal(err)
	}
	base, err := c.ProduceBatch(ctx, [][]byte{[]byte("a"), []byte("b")})
	if err != nil {
		log.Fatal(err)
	}
	rec, err := c.Consume(ctx, off)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q at %d; batch from %d\n", rec.GetValue(), off, base)

	// Tail follows the log live, across server failures, until fn says stop.
	errDone := errors.New("done")
	err = c.Tail(ctx, 0, func(r *logv1.Record) error {
		fmt.Printf("tail %d: %s\n", r.GetOffset(), r.GetValue())
		if r.GetOffset() == base+1 {
			return errDone
		}
		return nil
	})
	fmt.Println(errors.Is(err, errDone))
	// Output:
	// "hello" at 0; batch from 1
	// tail 0: hello
	// tail 1: a
	// tail 2: b
	// true
}

func ExampleClient_ProduceRecords() {
	addr, stop := exampleServer()
	defer stop()
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Addrs: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.ProduceRecords(ctx, []*logv1.Record{
		{Key: []byte("user-1"), Value: []byte("logged in"), Headers: []*logv1.Header{{Key: "src", Value: []byte("web")}}},
		{Key: []byte("user-2"), Value: []byte("logged out")},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Read the last minute's records up to the end of the log as it is now,
	// in batches of up to 100 records.
	st, err := c.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	err = c.TailBatches(ctx, 0, func(records []*logv1.Record) error {
		for _, r := range records {
			fmt.Printf("%d %s: %s (%d header(s), has a time: %t)\n",
				r.GetOffset(), r.GetKey(), r.GetValue(), len(r.GetHeaders()), r.GetTime() != nil)
		}
		return nil
	}, client.FromTime(time.Now().Add(-time.Minute)), client.Until(st.GetNextOffset()), client.MaxBatch(100))
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// 0 user-1: logged in (1 header(s), has a time: true)
	// 1 user-2: logged out (0 header(s), has a time: true)
}
