package service_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// A single node over plaintext HTTP/2 (the --insecure mode, where every
// caller is anonymous), with a Connect client producing and consuming.
func Example() {
	dir, err := os.MkdirTemp("", "proglog-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	log, err := logstore.Open(dir, logstore.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer log.Close()

	policy, err := parsePolicy("p, anonymous, *, produce\np, anonymous, *, consume\n")
	if err != nil {
		panic(err)
	}
	svc, err := service.New(service.Config{Log: log, Authorizer: policy, NodeID: "example"})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := service.NewServer(service.ServerConfig{Handler: svc.Handler()}) // TLS nil: h2c
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	transport := &http.Transport{Protocols: new(http.Protocols)}
	transport.Protocols.SetUnencryptedHTTP2(true)
	defer transport.CloseIdleConnections()
	client := logv1connect.NewLogServiceClient(&http.Client{Transport: transport}, "http://"+ln.Addr().String())

	ctx := context.Background()
	produced, err := client.Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("hello")}})
	if err != nil {
		panic(err)
	}
	consumed, err := client.Consume(ctx, &logv1.ConsumeRequest{Offset: produced.GetOffset()})
	if err != nil {
		panic(err)
	}
	fmt.Printf("offset %d: %s\n", produced.GetOffset(), consumed.GetRecord().GetValue())

	who, err := client.WhoAmI(ctx, &logv1.WhoAmIRequest{})
	if err != nil {
		panic(err)
	}
	fmt.Println(who.GetSubject(), who.GetActions())

	transport.CloseIdleConnections() // else Shutdown waits for them to idle out
	shutdownCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		panic(err)
	}
	fmt.Println(<-served)
	// Output:
	// offset 0: hello
	// anonymous [produce consume]
	// http: Server closed
}
