package service_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/service"
)

// Another protocol shares the TLS port by ALPN (as Raft will), beside
// HTTP/2 and HTTP/1.1; its connections end when Shutdown calls OnShutdown.
func TestHandoffByALPN(t *testing.T) {
	const proto = "proglog-echo"
	var (
		mu      sync.Mutex // guards conns and peers
		conns   []*tls.Conn
		peers   []string
		handled sync.WaitGroup
	)
	echo := func(conn *tls.Conn) {
		handled.Add(1)
		defer handled.Done()
		mu.Lock()
		conns = append(conns, conn)
		if chains := conn.ConnectionState().VerifiedChains; len(chains) > 0 {
			peers = append(peers, chains[0][0].Subject.CommonName)
		}
		mu.Unlock()
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := conn.Write([]byte(line)); err != nil {
				return
			}
		}
	}
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	}
	e := newEnv(t, envOptions{server: func(c *service.ServerConfig) {
		c.Handoffs = map[string]func(*tls.Conn){proto: echo}
		c.OnShutdown = closeAll
	}})

	cfg, err := pki.ClientTLSConfig(e.cert("ca"), e.cert(idRoot), e.cert(idRoot+"-key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.NextProtos = []string{proto}
	cfg.ServerName = "127.0.0.1"
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(t.Context(), "tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := conn.(*tls.Conn)
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		t.Fatalf("negotiated %q", got)
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
	mu.Lock()
	if len(peers) != 1 || peers[0] != idRoot {
		t.Fatalf("handoff saw verified peers %v", peers)
	}
	mu.Unlock()

	// HTTP/2 RPCs work on the same port, over every protocol.
	for _, p := range protocols {
		if _, err := e.client(idRoot, p.opts...).Produce(t.Context(), &logv1.ProduceRequest{Record: rec("h2")}); err != nil {
			t.Fatalf("%s beside the handoff: %v", p.name, err)
		}
	}

	e.stop()
	handled.Wait()
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("handed-off connection still open after Shutdown")
	}
}

func TestGetServersFromNodes(t *testing.T) {
	nodes := []service.Node{{ID: "a", RPCAddr: "10.0.0.1:8400"}, {ID: "b", RPCAddr: "10.0.0.2:8400", IsLeader: true}}
	var fail atomic.Bool
	e := newEnv(t, envOptions{config: func(c *service.Config) {
		c.Nodes = func() ([]service.Node, error) {
			if fail.Load() {
				return nil, errors.New("no configuration")
			}
			return nodes, nil
		}
	}})
	client := e.client(idReader)
	resp, err := client.GetServers(t.Context(), &logv1.GetServersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetServers()
	if len(got) != 2 || got[0].GetId() != "a" || got[0].GetIsLeader() || got[1].GetRpcAddr() != "10.0.0.2:8400" || !got[1].GetIsLeader() {
		t.Fatalf("GetServers: %v", got)
	}
	fail.Store(true)
	if _, err := client.GetServers(t.Context(), &logv1.GetServersRequest{}); codeOf(err) != connect.CodeInternal {
		t.Fatalf("failing Nodes: %v", err)
	}
}
