package node_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/node"
	"github.com/proglog/proglog/pki"
)

// A quickstart node: no TLS files given, so the node makes a development
// CA and identity in its data dir, and an ACL that lets "root" do
// everything. It runs a one-member Raft cluster until Run's context ends.
func Example() {
	dir, err := os.MkdirTemp("", "proglog-node-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	n, err := node.New(node.Config{DataDir: dir, Addr: "127.0.0.1:0", NodeID: "example"})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- n.Run(ctx) }()

	certDir, created := n.Quickstart()
	fmt.Println("created the development identity:", created)
	p := func(name string) string { return filepath.Join(certDir, name) }
	tlsConfig, err := pki.ClientTLSConfig(p(pki.DevCAFile), p(pki.DevClientFile), p(pki.DevClientKeyFile))
	if err != nil {
		panic(err)
	}
	transport := &http.Transport{TLSClientConfig: tlsConfig, Protocols: new(http.Protocols)}
	transport.Protocols.SetHTTP2(true)
	client := logv1connect.NewLogServiceClient(&http.Client{Transport: transport}, "https://"+n.Addr())

	res, err := client.Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("hello")}})
	if err != nil {
		panic(err)
	}
	fmt.Println("offset", res.GetOffset())

	transport.CloseIdleConnections()
	stop()
	fmt.Println("Run returned", <-stopped)
	// Output:
	// created the development identity: true
	// offset 0
	// Run returned <nil>
}
