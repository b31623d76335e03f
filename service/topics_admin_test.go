package service_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	logv1 "github.com/proglog/proglog/gen/log/v1"
)

// The topic RPCs, and the codes of their failures; every message names
// the topic.
func TestTopicAdmin(t *testing.T) {
	e, _ := newTopicsEnv(t, envOptions{}, nil)
	c := e.client(idRoot)
	ctx := t.Context()

	created, err := c.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders", Partitions: 3,
		Config: &logv1.TopicConfig{RetentionBytes: 1 << 30, RetentionAge: durationpb.New(time.Hour), MaxRecordBytes: 4096}})
	if tp := created.GetTopic(); err != nil || tp.GetName() != "orders" || tp.GetPartitions() != 3 || tp.GetReplicationFactor() != 3 ||
		tp.GetConfig().GetRetentionBytes() != 1<<30 || tp.GetConfig().GetRetentionAge().AsDuration() != time.Hour || tp.GetConfig().GetMaxRecordBytes() != 4096 {
		t.Fatalf("CreateTopic: %v, %v", created, err)
	}
	one, err := c.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "one", ReplicationFactor: 2})
	if err != nil || one.GetTopic().GetPartitions() != 1 || one.GetTopic().GetReplicationFactor() != 2 {
		t.Fatalf("CreateTopic with defaults: %v, %v", one, err)
	}
	for _, tc := range []struct {
		name string
		req  *logv1.CreateTopicRequest
		code connect.Code
		says string
	}{
		{"exists", &logv1.CreateTopicRequest{Name: "orders"}, connect.CodeAlreadyExists, `"orders"`},
		{"bad name", &logv1.CreateTopicRequest{Name: "bad name"}, connect.CodeInvalidArgument, `"bad name"`},
		{"no name", &logv1.CreateTopicRequest{}, connect.CodeInvalidArgument, `topic ""`},
		{"dot dot", &logv1.CreateTopicRequest{Name: ".."}, connect.CodeInvalidArgument, `".."`},
		{"too many replicas", &logv1.CreateTopicRequest{Name: "wide", ReplicationFactor: 4}, connect.CodeFailedPrecondition, `"wide"`},
		{"too many partitions", &logv1.CreateTopicRequest{Name: "many", Partitions: 5000}, connect.CodeInvalidArgument, `"many"`},
		{"record limit above the node's", &logv1.CreateTopicRequest{Name: "big", Config: &logv1.TopicConfig{MaxRecordBytes: 2 << 20}},
			connect.CodeInvalidArgument, `"big"`},
		{"negative retention", &logv1.CreateTopicRequest{Name: "neg", Config: &logv1.TopicConfig{RetentionAge: durationpb.New(-time.Second)}},
			connect.CodeInvalidArgument, `"neg"`},
	} {
		_, err := c.CreateTopic(ctx, tc.req)
		wantCode(t, tc.name, err, tc.code, tc.says)
	}

	d, err := c.DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "orders"})
	if err != nil || d.GetTopic().GetName() != "orders" || len(d.GetPartitions()) != 3 {
		t.Fatalf("DescribeTopic: %v, %v", d, err)
	}
	for i, p := range d.GetPartitions() {
		if p.GetPartition() != uint32(i) || p.GetLeader() != "node-1" || len(p.GetReplicas()) != 1 || !p.GetReplicas()[0].GetInSync() {
			t.Fatalf("partition %d: %v", i, p)
		}
	}
	_, err = c.DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "nope"})
	wantCode(t, "describe nope", err, connect.CodeNotFound, `"nope"`)

	up, err := c.UpdateTopic(ctx, &logv1.UpdateTopicRequest{Name: "orders", RetentionBytes: proto.Uint64(0), MaxRecordBytes: proto.Uint32(100)})
	if cfg := up.GetTopic().GetConfig(); err != nil || cfg.GetRetentionBytes() != 0 || cfg.GetMaxRecordBytes() != 100 ||
		cfg.GetRetentionAge().AsDuration() != time.Hour {
		t.Fatalf("UpdateTopic: %v, %v", up, err)
	}
	// The new limit applies at once.
	_, err = c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Record: &logv1.Record{Value: make([]byte, 101)}})
	wantCode(t, "101 bytes after the update", err, connect.CodeInvalidArgument, "limit of 100 bytes")
	up, err = c.UpdateTopic(ctx, &logv1.UpdateTopicRequest{Name: "orders", RetentionAge: durationpb.New(0)})
	if err != nil || up.GetTopic().GetConfig().GetRetentionAge() != nil || up.GetTopic().GetConfig().GetMaxRecordBytes() != 100 {
		t.Fatalf("UpdateTopic retention_age 0: %v, %v", up, err)
	}
	_, err = c.UpdateTopic(ctx, &logv1.UpdateTopicRequest{Name: "nope", RetentionBytes: proto.Uint64(1)})
	wantCode(t, "update nope", err, connect.CodeNotFound, `"nope"`)
	_, err = c.UpdateTopic(ctx, &logv1.UpdateTopicRequest{Name: "orders", MaxRecordBytes: proto.Uint32(2 << 20)})
	wantCode(t, "update above the node's limit", err, connect.CodeInvalidArgument, `"orders"`)

	list, err := c.ListTopics(ctx, &logv1.ListTopicsRequest{})
	if err != nil || len(list.GetTopics()) != 3 || list.GetTopics()[0].GetName() != "default" || list.GetTopics()[2].GetName() != "orders" {
		t.Fatalf("ListTopics: %v, %v", list, err)
	}

	_, err = c.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: "default"})
	wantCode(t, "delete default", err, connect.CodeFailedPrecondition, `"default"`)
	if _, err := c.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: "orders"}); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	_, err = c.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: "orders"})
	wantCode(t, "delete again", err, connect.CodeNotFound, `"orders"`)
	_, err = c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Record: rec("x")})
	wantCode(t, "produce to a deleted topic", err, connect.CodeNotFound, `"orders"`)

	// Consume rights describe and list; changes need admin.
	r := e.client(idReader)
	if _, err := r.DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "one"}); err != nil {
		t.Fatalf("reader describes: %v", err)
	}
	for name, call := range map[string]func() error{
		"create": func() error { _, err := r.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "x"}); return err },
		"update": func() error {
			_, err := r.UpdateTopic(ctx, &logv1.UpdateTopicRequest{Name: "one", RetentionBytes: proto.Uint64(1)})
			return err
		},
		"delete": func() error { _, err := r.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: "one"}); return err },
	} {
		wantCode(t, "reader "+name, call(), connect.CodePermissionDenied, `may not "admin"`)
	}
	_, err = e.client(idStranger).ListTopics(ctx, &logv1.ListTopicsRequest{})
	wantCode(t, "stranger lists", err, connect.CodePermissionDenied)
}

// Without Config.Topics the node serves one topic, "default", of one
// partition: its log. Topics cannot change.
func TestStandaloneTopics(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(idRoot)
	ctx := t.Context()

	p, err := c.Produce(ctx, &logv1.ProduceRequest{Topic: "default", Partition: proto.Uint32(0), Record: rec("x")})
	if err != nil || p.GetPartition() != 0 || p.GetOffset() != 0 {
		t.Fatalf("Produce to default/0: %v, %v", p, err)
	}
	list, err := c.ListTopics(ctx, &logv1.ListTopicsRequest{})
	if err != nil || len(list.GetTopics()) != 1 || list.GetTopics()[0].GetName() != "default" ||
		list.GetTopics()[0].GetPartitions() != 1 || list.GetTopics()[0].GetReplicationFactor() != 1 {
		t.Fatalf("ListTopics: %v, %v", list, err)
	}
	d, err := c.DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "default"})
	if err != nil || len(d.GetPartitions()) != 1 {
		t.Fatalf("DescribeTopic: %v, %v", d, err)
	}
	if part := d.GetPartitions()[0]; part.GetLeader() != "node-1" || part.GetNextOffset() != 1 || part.GetSizeBytes() == 0 ||
		len(part.GetReplicas()) != 1 || part.GetReplicas()[0].GetRpcAddr() != e.addr || !part.GetReplicas()[0].GetIsLeader() {
		t.Fatalf("partition: %v", part)
	}
	_, err = c.DescribeTopic(ctx, &logv1.DescribeTopicRequest{Name: "orders"})
	wantCode(t, "describe orders", err, connect.CodeNotFound, `"orders"`)
	_, err = c.CreateTopic(ctx, &logv1.CreateTopicRequest{Name: "orders"})
	wantCode(t, "create", err, connect.CodeFailedPrecondition, `"orders"`, "replicated mode")
	_, err = c.UpdateTopic(ctx, &logv1.UpdateTopicRequest{Name: "default", RetentionBytes: proto.Uint64(1)})
	wantCode(t, "update", err, connect.CodeFailedPrecondition, "replicated mode")
	_, err = c.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Name: "default"})
	wantCode(t, "delete", err, connect.CodeFailedPrecondition, "replicated mode")

	_, err = c.Produce(ctx, &logv1.ProduceRequest{Topic: "orders", Record: rec("x")})
	wantCode(t, "produce to orders", err, connect.CodeNotFound, `"orders"`)
	_, err = c.Produce(ctx, &logv1.ProduceRequest{Partition: proto.Uint32(1), Record: rec("x")})
	wantCode(t, "produce to partition 1", err, connect.CodeNotFound, "1 partition")
	_, err = c.Consume(ctx, &logv1.ConsumeRequest{Partition: 1})
	wantCode(t, "consume partition 1", err, connect.CodeNotFound, "1 partition")
	servers, err := c.GetServers(ctx, &logv1.GetServersRequest{})
	if err != nil || servers.GetServers()[0].GetPartitionLeaders() != 1 {
		t.Fatalf("GetServers: %v, %v", servers, err)
	}
}
