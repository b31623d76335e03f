package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/proglog/proglog/cluster"
	"github.com/proglog/proglog/pki"
)

// Example wires a one-node cluster the way `proglog serve` does: one TLS
// port whose ALPN "proglog-raft" connections go to the Raft stream layer and
// everything else to the HTTP (Connect) server.
func Example() {
	dir, _ := os.MkdirTemp("", "proglog-example")
	defer os.RemoveAll(dir)
	ca, _ := pki.NewCA("example CA")
	certPEM, keyPEM, _ := ca.IssueServer("n1", []string{"127.0.0.1"})
	certFile, keyFile, caFile := filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"), filepath.Join(dir, "ca.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	os.WriteFile(caFile, ca.CertPEM, 0o600)

	// The server side: the ordinary TLS config plus the Raft ALPN.
	serverTLS, _ := pki.ServerTLSConfig(certFile, keyFile, caFile)
	serverTLS.NextProtos = append(serverTLS.NextProtos, cluster.ALPN)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()

	// The dial side: the node's server certificate, trusting the CA.
	pair, _ := tls.LoadX509KeyPair(certFile, keyFile)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	layer, _ := cluster.NewStreamLayer(addr, &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool}, nil)

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: serverTLS, Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second}
	layer.Register(srv)
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()

	log, err := cluster.New(cluster.Config{NodeID: "n1", DataDir: filepath.Join(dir, "data"), Bootstrap: true, Stream: layer})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !log.IsLeader() && ctx.Err() == nil { // a one-member cluster elects itself
		time.Sleep(10 * time.Millisecond)
	}
	off, err := log.Append(ctx, []byte("hello, cluster"))
	if err != nil {
		fmt.Println(err)
		return
	}
	rec, _ := log.Read(context.Background(), off)
	servers, _ := log.Servers()
	fmt.Printf("offset %d: %s\n", rec.Offset, rec.Value)
	fmt.Printf("%d server, leader %v\n", len(servers), servers[0].IsLeader)
	// Output:
	// offset 0: hello, cluster
	// 1 server, leader true
}
