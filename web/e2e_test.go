//go:build slow

package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	logv1 "github.com/proglog/proglog/gen/log/v1"
	"github.com/proglog/proglog/gen/log/v1/logv1connect"
	"github.com/proglog/proglog/pki"
	"github.com/proglog/proglog/tracing/tracingtest"
)

// TestDashboardEndToEnd drives the dashboard in headless Chromium against a
// real `proglog serve` over mutual TLS: see web/e2e/e2e.mjs for the steps.
// Screenshots go to $PROGLOG_ARTIFACTS (or a temporary directory).
func TestDashboardEndToEnd(t *testing.T) {
	env := newEnv(t)
	env.drive(t, "functional", 4*time.Minute)
}

// TestDashboardBenchmark measures how many records per second the live tail
// shows without dropping frames, and the page's JS heap after streaming a
// million records. It runs only with PROGLOG_WEB_BENCH=1; figures are logged
// and written to bench.json in the artifacts directory.
func TestDashboardBenchmark(t *testing.T) {
	if os.Getenv("PROGLOG_WEB_BENCH") == "" {
		t.Skip("set PROGLOG_WEB_BENCH=1 to measure the dashboard")
	}
	env := newEnv(t)
	env.drive(t, "bench", 15*time.Minute)
}

// env is one proglog node with the quickstart identity, a second client
// certificate "alice" that may only consume, and Go clients for both.
type env struct {
	bin, dataDir, certs, artifacts, chromium string
	srv                                      *server
	traces                                   *tracingtest.Receiver // where the server exports its spans
	client                                   logv1connect.LogServiceClient
	transport                                *http.Transport
}

func newEnv(t *testing.T) *env {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (%v): run make setup", err)
	}
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		t.Fatalf("web/node_modules/playwright-core is missing (%v): run make setup", err)
	}
	e := &env{chromium: chromium}
	e.artifacts = os.Getenv("PROGLOG_ARTIFACTS")
	if e.artifacts == "" {
		e.artifacts = t.TempDir()
	} else {
		e.artifacts = filepath.Join(e.artifacts, t.Name())
		if err := os.MkdirAll(e.artifacts, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tmp := t.TempDir()
	e.bin = filepath.Join(tmp, "proglog")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", e.bin, "./cmd/proglog")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/proglog: %v\n%s", err, out)
	}
	e.dataDir = filepath.Join(tmp, "data")
	e.certs = filepath.Join(e.dataDir, "certs")
	// The server (which inherits the environment) exports its spans here,
	// in batches every 100ms.
	e.traces = tracingtest.NewReceiver(t)
	for k, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": e.traces.HTTPURL, "OTEL_BSP_SCHEDULE_DELAY": "100",
		"OTEL_SDK_DISABLED": "", "OTEL_TRACES_EXPORTER": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "", "OTEL_TRACES_SAMPLER": "",
	} {
		t.Setenv(k, v)
	}
	e.srv = startServer(t, e.bin, e.dataDir, "127.0.0.1:0")
	t.Cleanup(func() { e.srv.stop(t) })

	e.client, e.transport = newClient(t, e.certs, "root", e.srv.addr)
	// alice may consume but not produce: issue her certificate and grant it.
	ca, err := pki.LoadCA(filepath.Join(e.certs, "ca.pem"), filepath.Join(e.certs, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueClient("alice")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"alice.pem": certPEM, "alice-key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(e.certs, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	acl, err := os.OpenFile(filepath.Join(e.dataDir, "acl.csv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acl.WriteString("p, alice, *, consume\n"); err != nil {
		t.Fatal(err)
	}
	if err := acl.Close(); err != nil {
		t.Fatal(err)
	}
	alice, aliceTransport := newClient(t, e.certs, "alice", e.srv.addr)
	defer aliceTransport.CloseIdleConnections()
	// Wait for the server to reload the policy (it polls every 200ms).
	for i := 0; ; i++ {
		res, err := alice.WhoAmI(t.Context(), &logv1.WhoAmIRequest{})
		if err == nil && strings.Join(res.Actions, ",") == "consume" {
			break
		}
		if i == 100 {
			t.Fatalf("the server never granted alice consume: %v %v", res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return e
}

func newClient(t *testing.T, certs, name, addr string) (logv1connect.LogServiceClient, *http.Transport) {
	t.Helper()
	cfg, err := pki.ClientTLSConfig(filepath.Join(certs, "ca.pem"), filepath.Join(certs, name+".pem"), filepath.Join(certs, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return logv1connect.NewLogServiceClient(&http.Client{Transport: tr}, "https://"+addr), tr
}

// drive runs web/e2e/e2e.mjs and answers its requests until it finishes.
func (e *env) drive(t *testing.T, mode string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "e2e/e2e.mjs")
	cmd.Env = append(os.Environ(),
		"PROGLOG_URL=https://"+e.srv.addr+"/",
		"PROGLOG_CERTS="+e.certs,
		"PROGLOG_ARTIFACTS="+e.artifacts,
		"PROGLOG_E2E_MODE="+mode,
		"CHROMIUM="+e.chromium,
	)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	var failure string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "E2E ")
		if !ok {
			t.Logf("driver: %s", sc.Text())
			continue
		}
		var msg map[string]any
		if err := json.Unmarshal([]byte(line), &msg); err != nil {
			t.Errorf("driver sent bad JSON %q: %v", line, err)
			continue
		}
		step, _ := msg["step"].(string)
		var reply any
		switch step {
		case "done":
			done = true
			_ = stdin.Close() // lets the driver exit
		case "failed":
			failure, _ = msg["error"].(string)
			_ = stdin.Close()
		case "screenshot", "bench-live", "bench-catchup":
			t.Logf("%s: %s", step, line)
		default:
			reply = e.answer(ctx, t, step, msg)
		}
		if reply == nil {
			continue
		}
		b, err := json.Marshal(reply)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			t.Errorf("write to driver: %v", err)
		}
	}
	_ = stdin.Close()
	waitErr := cmd.Wait()
	if failure != "" {
		t.Fatalf("browser step failed: %s\nstderr:\n%s\nserver log:\n%s\nscreenshots: %s", failure, stderr.String(), e.srv.log(), e.artifacts)
	}
	if waitErr != nil || !done {
		t.Fatalf("driver exited (%v) before finishing\nstderr:\n%s", waitErr, stderr.String())
	}
	t.Logf("screenshots in %s", e.artifacts)
}

// answer carries out one request of the driver and returns its reply;
// failures are reported to the driver as {"error": ...} so it stops.
func (e *env) answer(ctx context.Context, t *testing.T, step string, msg map[string]any) any {
	t.Helper()
	num := func(k string) int {
		f, _ := msg[k].(float64)
		return int(f)
	}
	fail := func(err error) any {
		t.Errorf("%s: %v", step, err)
		return map[string]string{"error": err.Error()}
	}
	// topic and partition name a partition other than the default topic's
	// partition 0, when the driver gives them.
	topic, _ := msg["topic"].(string)
	partition := uint32(num("partition"))
	switch step {
	case "produce-go":
		values := make([]string, num("count"))
		records := make([]*logv1.Record, len(values))
		for i := range values {
			values[i] = fmt.Sprintf("go-record-%d-%d", time.Now().UnixNano(), i)
			records[i] = &logv1.Record{Value: []byte(values[i])}
		}
		req := &logv1.ProduceBatchRequest{Records: records, Topic: topic}
		if _, ok := msg["partition"]; ok {
			req.Partition = &partition
		}
		res, err := e.client.ProduceBatch(ctx, req)
		if err != nil {
			return fail(err)
		}
		if _, ok := msg["partition"]; ok && res.Partition != partition {
			return fail(fmt.Errorf("asked for partition %d, got %d", partition, res.Partition))
		}
		return map[string]any{"values": values, "next": res.BaseOffset + uint64(len(values))}
	case "create-topic":
		name, _ := msg["name"].(string)
		res, err := e.client.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: name, Partitions: uint32(num("partitions"))})
		if err != nil {
			return fail(err)
		}
		// Wait until every partition has a leader and takes reads.
		for p := range res.GetTopic().GetPartitions() {
			for i := 0; ; i++ {
				_, err := e.client.GetStats(ctx, &logv1.GetStatsRequest{Topic: name, Partition: p})
				if err == nil {
					break
				}
				if i == 100 {
					return fail(fmt.Errorf("partition %d of %s never answered: %w", p, name, err))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		return map[string]any{"partitions": res.GetTopic().GetPartitions(), "replicationFactor": res.GetTopic().GetReplicationFactor()}
	case "delete-topic":
		name, _ := msg["name"].(string)
		if _, err := e.client.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: name}); err != nil {
			return fail(err)
		}
		return map[string]any{}
	case "servers":
		res, err := e.client.GetServers(ctx, &logv1.GetServersRequest{})
		if err != nil {
			return fail(err)
		}
		servers := make([]map[string]any, len(res.Servers))
		for i, s := range res.Servers {
			servers[i] = map[string]any{"id": s.Id, "isLeader": s.IsLeader, "partitionLeaders": s.PartitionLeaders}
		}
		return map[string]any{"servers": servers}
	case "produce-special":
		large := strings.Repeat("x", 200_000-3) + "END"
		res, err := e.client.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: []*logv1.Record{
			{Value: []byte{0, 1, 2, 0xff, 0xfe}},
			{Value: []byte(large)},
		}})
		if err != nil {
			return fail(err)
		}
		return map[string]any{"binary": res.BaseOffset, "large": res.BaseOffset + 1, "next": res.BaseOffset + 2}
	case "produce-keyed":
		// A record with a key and headers (one key repeated, one value not
		// text), then, 1.5 s later, a plain one: a whole second of the
		// clock lies between them for the page to jump to.
		keyed, err := e.client.Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{
			Value: []byte(`{"event":"signup"}`),
			Key:   []byte("user-42"),
			Headers: []*logv1.Header{
				{Key: "trace-id", Value: []byte("abc")},
				{Key: "bin", Value: []byte{0, 1, 0xff}},
				{Key: "trace-id", Value: []byte("def")},
			},
		}})
		if err != nil {
			return fail(err)
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(1500 * time.Millisecond):
		}
		plain, err := e.client.Produce(ctx, &logv1.ProduceRequest{Record: &logv1.Record{Value: []byte("after-a-pause")}})
		if err != nil {
			return fail(err)
		}
		reply := map[string]any{"keyed": keyed.Offset, "plain": plain.Offset}
		for name, off := range map[string]uint64{"keyed": keyed.Offset, "plain": plain.Offset} {
			res, err := e.client.Consume(ctx, &logv1.ConsumeRequest{Offset: off})
			if err != nil {
				return fail(err)
			}
			ts := res.GetRecord().GetTime()
			if ts == nil {
				return fail(fmt.Errorf("offset %d has no time: does the server keep record times (issue #11)?", off))
			}
			reply[name+"Time"] = ts.AsTime().UTC().Format("2006-01-02T15:04:05.000000000Z")
			reply[name+"Ms"] = ts.AsTime().UnixMilli()
		}
		return reply
	case "read-back":
		off := uint64(num("offset"))
		want, _ := msg["value"].(string)
		res, err := e.client.Consume(ctx, &logv1.ConsumeRequest{Offset: off, Topic: topic, Partition: partition})
		if err != nil {
			return fail(err)
		}
		if got := string(res.GetRecord().GetValue()); got != want {
			return fail(fmt.Errorf("offset %d holds %q, the page produced %q", off, got, want))
		}
		if want, ok := msg["key"].(string); ok {
			if got := string(res.GetRecord().GetKey()); got != want {
				return fail(fmt.Errorf("offset %d has key %q, the page produced %q", off, got, want))
			}
		}
		if want, ok := msg["headers"].([]any); ok {
			var got []any
			for _, h := range res.GetRecord().GetHeaders() {
				got = append(got, []any{h.GetKey(), string(h.GetValue())})
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fail(fmt.Errorf("offset %d has headers %v, the page produced %v", off, got, want))
			}
		}
		return map[string]any{}
	case "trace":
		// The page's produce: the server's span is the child of the
		// page's, and the append's raft.apply is in the same trace.
		traceID, _ := msg["traceId"].(string)
		spanID, _ := msg["spanId"].(string)
		deadline := time.Now().Add(10 * time.Second)
		for {
			var server, apply bool
			for _, s := range e.traces.Trace(traceID) {
				server = server || s.GetName() == "log.v1.LogService/Produce" && s.ParentID() == spanID
				apply = apply || s.GetName() == "raft.apply"
			}
			if server && apply {
				return map[string]any{}
			}
			if time.Now().After(deadline) {
				return fail(fmt.Errorf("trace %s: no Produce span under the page's span %s with a raft.apply; received:\n%s",
					traceID, spanID, tracingtest.Dump(e.traces.Spans())))
			}
			time.Sleep(100 * time.Millisecond)
		}
	case "restart-server":
		e.srv.stop(t)
		e.srv = startServer(t, e.bin, e.dataDir, e.srv.addr)
		e.transport.CloseIdleConnections()
		return map[string]any{}
	case "retention":
		// Small segments and a small size limit: old records go quickly.
		e.srv.stop(t)
		e.srv = startServer(t, e.bin, e.dataDir, e.srv.addr, "--segment-bytes", "16KiB", "--retention-bytes", "64KiB")
		e.transport.CloseIdleConnections()
		count := num("count")
		var last string
		for n := 0; n < count; n += 100 {
			recs := make([]*logv1.Record, 0, 100)
			for i := n; i < min(count, n+100); i++ {
				last = string(benchValue(i))
				recs = append(recs, &logv1.Record{Value: []byte(last)})
			}
			if _, err := e.client.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: recs}); err != nil {
				return fail(err)
			}
		}
		// The retention a roll starts runs after the roll's records are
		// visible: ask until the lowest offset has settled.
		var st *logv1.GetStatsResponse
		for range 50 {
			prev := st
			var err error
			if st, err = e.client.GetStats(ctx, &logv1.GetStatsRequest{}); err != nil {
				return fail(err)
			}
			if prev != nil && prev.LowestOffset == st.LowestOffset {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		return map[string]any{"lowest": st.LowestOffset, "next": st.NextOffset, "last": last}
	case "produce-rate":
		count, secs, err := produceAtRate(ctx, e.client, num("rate"), time.Duration(num("seconds"))*time.Second)
		if err != nil {
			return fail(err)
		}
		return map[string]any{"count": count, "seconds": secs}
	case "produce-bulk":
		first, err := produceBulk(ctx, e.client, num("count"))
		if err != nil {
			return fail(err)
		}
		return map[string]any{"first": first, "count": num("count")}
	}
	return fail(fmt.Errorf("unknown step %q", step))
}

// benchValue is a 100-byte JSON record like an application event.
func benchValue(i int) []byte {
	v := fmt.Sprintf(`{"seq":%d,"user":"user-%d","event":"page_view","path":"/products/%d"`, i, i%977, i%101)
	return []byte(v + strings.Repeat(" ", max(0, 99-len(v))) + "}")
}

// produceAtRate produces about rate records a second for d, in batches
// every 10ms, and returns how many it produced and how long it took.
func produceAtRate(ctx context.Context, c logv1connect.LogServiceClient, rate int, d time.Duration) (int, float64, error) {
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for time.Since(start) < d {
		want := int(float64(rate) * time.Since(start).Seconds())
		if want > n {
			recs := make([]*logv1.Record, 0, want-n)
			for i := n; i < want; i++ {
				recs = append(recs, &logv1.Record{Value: benchValue(i)})
			}
			if _, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: recs}); err != nil {
				return n, 0, err
			}
			n = want
		}
		select {
		case <-ctx.Done():
			return n, 0, ctx.Err()
		case <-tick.C:
		}
	}
	return n, time.Since(start).Seconds(), nil
}

// produceBulk appends count records as fast as the server takes them and
// returns the first one's offset.
func produceBulk(ctx context.Context, c logv1connect.LogServiceClient, count int) (uint64, error) {
	const batch = 5000
	var first uint64
	for n := 0; n < count; n += batch {
		recs := make([]*logv1.Record, 0, batch)
		for i := n; i < min(count, n+batch); i++ {
			recs = append(recs, &logv1.Record{Value: benchValue(i)})
		}
		res, err := c.ProduceBatch(ctx, &logv1.ProduceBatchRequest{Records: recs})
		if err != nil {
			return 0, err
		}
		if n == 0 {
			first = res.BaseOffset
		}
	}
	return first, nil
}

// server is one `proglog serve` process.
type server struct {
	cmd     *exec.Cmd
	addr    string
	out     *logWriter
	exited  chan error // receives cmd.Wait's result; stop (or startServer) takes it
	stopped bool
}

func startServer(t *testing.T, bin, dataDir, addr string, extra ...string) *server {
	t.Helper()
	out := &logWriter{ready: make(chan string, 1)}
	args := append([]string{"serve", "--data-dir", dataDir, "--addr", addr, "--acl-poll", "200ms", "--log-format", "json"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, out: out, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	select {
	case s.addr = <-out.ready:
		return s
	case err := <-s.exited:
		t.Fatalf("proglog serve exited: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-s.exited
		t.Fatalf("proglog serve did not report serving within 30s\n%s", out.String())
	}
	return nil
}

// stop ends the server with SIGTERM (graceful shutdown) and waits for it.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			t.Errorf("proglog serve exited with %v after SIGTERM\n%s", err, s.out.String())
		}
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("proglog serve did not stop within 15s of SIGTERM\n%s", s.out.String())
	}
}

func (s *server) log() string { return s.out.String() }

// logWriter collects a server's output and reports the address from its
// "serving" log line.
type logWriter struct {
	mu      sync.Mutex // guards buf and partial
	buf     bytes.Buffer
	partial []byte
	ready   chan string // receives the listening address once
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		var rec struct{ Msg, Addr string }
		if json.Unmarshal(w.partial[:i], &rec) == nil && rec.Msg == "serving" && rec.Addr != "" {
			select {
			case w.ready <- rec.Addr:
			default:
			}
		}
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
