package service_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/logstore"
	"github.com/proglog/proglog/service"
)

// BenchmarkUnary measures what proglog costs per unary call on top of the
// bare stack, both in the same run (issue 10):
//
//   - echo: a bare connect-go handler (Produce answers offset 0 at once: no
//     authentication middleware, ACL, interceptors, metrics or log) served
//     by service.NewServer with the same mutual TLS, limits and HTTP/2
//     servers as proglog;
//   - produce: proglog's Produce through the whole stack, on a log that
//     never fsyncs (durable, the disk would be measured too: see
//     BenchmarkProduce);
//   - produce-durable: the same with the default sync policy.
//
// 64 clients, each on its own connection, call in a loop. Besides calls/s
// and latency it reports the server's write syscalls per call (Write calls
// on the accepted TCP connections: one each, for writes this small) and
// the CPU time per call of the whole process, clients included (they are
// the same in every case, so differences are the server's).
//
//	go test -run '^$' -bench Unary -benchtime 20000x -count 3 ./service
func BenchmarkUnary(b *testing.B) {
	const clients = 64
	for _, target := range []string{"echo", "produce", "produce-durable"} {
		for _, proto := range protocols[:2] {
			b.Run(fmt.Sprintf("%s/%s", target, proto.name), func(b *testing.B) {
				writes := &writeCounter{}
				opts := envOptions{listener: writes.wrap}
				switch target {
				case "echo":
					opts.server = func(c *service.ServerConfig) {
						mux := http.NewServeMux()
						mux.Handle(logv1connect.NewLogServiceHandler(echoLog{}))
						c.Handler = mux
					}
				case "produce":
					opts.logConfig = func(c *logstore.Config) { c.Sync = logstore.SyncNever }
				}
				e := newEnv(b, opts)
				value := benchValue()
				cs := make([]logv1connect.LogServiceClient, clients)
				for i := range cs {
					cs[i] = e.benchClient(proto.opts...)
					// Connect before the clock starts.
					if _, err := cs[i].Produce(context.Background(), &logv1.ProduceRequest{Record: &logv1.Record{Value: value}}); err != nil {
						b.Fatal(err)
					}
				}
				w0, cpu0 := writes.n.Load(), cpuTime(b)
				b.ResetTimer()
				lat := produceConcurrently(b, cs, value)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
				b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/call")
				b.ReportMetric(float64(writes.n.Load()-w0)/float64(b.N), "writes/call")
				b.ReportMetric(0, "ns/op")
				reportLatency(b, lat)
			})
		}
	}
}

// cpuTime is the CPU time (user and system) the process has used: the
// clients' and the server's, which share it.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// echoLog answers Produce at once; everything else is unimplemented.
type echoLog struct {
	logv1connect.UnimplementedLogServiceHandler
}

func (echoLog) Produce(context.Context, *logv1.ProduceRequest) (*logv1.ProduceResponse, error) {
	return &logv1.ProduceResponse{}, nil
}

// writeCounter counts Write calls on the connections a listener accepts.
type writeCounter struct{ n atomic.Int64 }

func (w *writeCounter) wrap(ln net.Listener) net.Listener { return &countingListener{ln, w} }

type countingListener struct {
	net.Listener
	w *writeCounter
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{c, l.w}, nil
}

type countingConn struct {
	net.Conn
	w *writeCounter
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.w.n.Add(1)
	return c.Conn.Write(p)
}
