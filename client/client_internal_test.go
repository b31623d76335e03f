package client

import (
	"testing"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/service"
)

func TestReachable(t *testing.T) {
	tests := []struct {
		name    string
		servers []string
		asked   string
		want    []string
	}{
		{"cluster", []string{"10.0.0.1:8400", "10.0.0.2:8400"}, "10.0.0.1:8400", []string{"10.0.0.1:8400", "10.0.0.2:8400"}},
		{"named", []string{"log1.example.com:8400"}, "log1:8400", []string{"log1.example.com:8400"}},
		{"standalone on every IPv4 interface", []string{"0.0.0.0:8400"}, "devbox:8400", []string{"devbox:8400"}},
		{"standalone on every IPv6 interface", []string{"[::]:9000"}, "[fe80::1]:8400", []string{"[fe80::1]:9000"}},
		{"no address", []string{""}, "devbox:8400", []string{""}},
		{"asked something odd", []string{"0.0.0.0:8400"}, "devbox", []string{"0.0.0.0:8400"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := make([]*logv1.Server, len(tt.servers))
			for i, a := range tt.servers {
				servers[i] = &logv1.Server{Id: "n", RpcAddr: a, IsLeader: i == 0}
			}
			got := reachable(servers, tt.asked)
			for i, s := range got {
				if s.GetRpcAddr() != tt.want[i] || s.GetId() != "n" || s.GetIsLeader() != (i == 0) {
					t.Fatalf("server %d = %v, want address %q", i, s, tt.want[i])
				}
				if servers[i].GetRpcAddr() != tt.servers[i] {
					t.Fatalf("the answer itself was changed: %v", servers[i])
				}
			}
		})
	}
}

// The client checks header keys as the server does; the limit must not
// drift apart.
func TestHeaderKeyLimitMatchesTheServer(t *testing.T) {
	if MaxHeaderKeyBytes != service.MaxHeaderKeyBytes {
		t.Errorf("client allows %d bytes, server %d", MaxHeaderKeyBytes, service.MaxHeaderKeyBytes)
	}
}
