package catalog

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 123, time.UTC)

// fixture is a catalogue with topic "orders" (ID 5, RF 2, 2 partitions).
func fixture(t *testing.T) *Catalog {
	t.Helper()
	c := New()
	res := c.Apply(5, t0, EncodeCreate(CreateTopic{Name: "orders", ReplicationFactor: 2,
		Config: Config{RetentionBytes: 100, RetentionAge: time.Hour, MaxRecordBytes: 10}, Replicas: [][]string{{"a", "b"}, {"b", "c"}}})).(Result)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	return c
}

func create(name string, rf int, replicas ...[]string) []byte {
	return EncodeCreate(CreateTopic{Name: name, ReplicationFactor: rf, Replicas: replicas})
}

func TestApply(t *testing.T) {
	at := time.Date(2026, 12, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	tooMany := make([][]string, MaxPartitions+1)
	for i := range tooMany {
		tooMany[i] = []string{"a"}
	}
	tests := []struct {
		name string
		cmd  []byte
		err  error // nil: applied
		// check, for an applied command, looks at the result and the view.
		check func(t *testing.T, res *Topic, v *View)
	}{
		{"create", create("clicks", 2, []string{"a", "b"}, []string{"c", "a"}, []string{"b", "c"}), nil, func(t *testing.T, res *Topic, v *View) {
			want := &Topic{Name: "clicks", ID: 9, ReplicationFactor: 2, Created: at.UTC(), Partitions: []Partition{
				{Index: 0, Replicas: []string{"a", "b"}, Initial: []string{"a", "b"}},
				{Index: 1, Replicas: []string{"c", "a"}, Initial: []string{"c", "a"}},
				{Index: 2, Replicas: []string{"b", "c"}, Initial: []string{"b", "c"}}}}
			if !reflect.DeepEqual(res, want) {
				t.Errorf("created %+v, want %+v", res, want)
			}
			if got, _ := v.Topic("clicks"); got != res {
				t.Errorf("view holds %+v", got)
			}
			if got := res.Group(2); got != "t9.p2" {
				t.Errorf("Group(2) = %q", got)
			}
		}},
		{"create existing", create("orders", 1, []string{"a"}), ErrTopicExists, nil},
		{"create default", create(DefaultTopic, 1, []string{"a"}), ErrTopicExists, nil},
		{"create bad name", create("a/b", 1, []string{"a"}), ErrInvalid, nil},
		{"create empty name", create("", 1, []string{"a"}), ErrInvalid, nil},
		{"create long name", create(strings.Repeat("x", MaxNameLen+1), 1, []string{"a"}), ErrInvalid, nil},
		{"create rf 0", create("x", 0, []string{}), ErrInvalid, nil},
		{"create no partitions", create("x", 1), ErrInvalid, nil},
		{"create too many partitions", EncodeCreate(CreateTopic{Name: "x", ReplicationFactor: 1, Replicas: tooMany}), ErrInvalid, nil},
		{"create short partition", create("x", 2, []string{"a", "b"}, []string{"a"}), ErrInvalid, nil},
		{"create long partition", create("x", 1, []string{"a", "b"}), ErrInvalid, nil},
		{"create repeated node", create("x", 2, []string{"a", "a"}), ErrInvalid, nil},
		{"create empty node", create("x", 1, []string{""}), ErrInvalid, nil},
		{"create negative retention", EncodeCreate(CreateTopic{Name: "x", ReplicationFactor: 1, Config: Config{RetentionAge: -1}, Replicas: [][]string{{"a"}}}), ErrInvalid, nil},
		{"update", EncodeUpdate(UpdateTopic{Name: "orders", RetentionAge: ptr(2 * time.Hour)}), nil, func(t *testing.T, res *Topic, v *View) {
			if want := (Config{RetentionBytes: 100, RetentionAge: 2 * time.Hour, MaxRecordBytes: 10}); res.Config != want {
				t.Errorf("config %+v, want %+v", res.Config, want)
			}
			if res.ID != 5 || !res.Created.Equal(t0) || len(res.Partitions) != 2 {
				t.Errorf("update changed more than the config: %+v", res)
			}
		}},
		{"update all", EncodeUpdate(UpdateTopic{Name: "orders", RetentionBytes: ptr(uint64(0)), RetentionAge: ptr(time.Duration(0)), MaxRecordBytes: ptr(uint32(0))}), nil, func(t *testing.T, res *Topic, v *View) {
			if res.Config != (Config{}) {
				t.Errorf("config %+v, want zero", res.Config)
			}
		}},
		{"update default", EncodeUpdate(UpdateTopic{Name: DefaultTopic, RetentionBytes: ptr(uint64(1 << 20))}), nil, func(t *testing.T, res *Topic, v *View) {
			if res.Config.RetentionBytes != 1<<20 || res.ID != 0 || !res.Partitions[0].System {
				t.Errorf("default = %+v", res)
			}
		}},
		{"update missing", EncodeUpdate(UpdateTopic{Name: "nope", RetentionBytes: ptr(uint64(1))}), ErrTopicNotFound, nil},
		{"update negative retention", EncodeUpdate(UpdateTopic{Name: "orders", RetentionAge: ptr(-time.Second)}), ErrInvalid, nil},
		{"delete", EncodeDelete("orders"), nil, func(t *testing.T, res *Topic, v *View) {
			if res.Name != "orders" || res.ID != 5 {
				t.Errorf("deleted %+v", res)
			}
			if _, err := v.Topic("orders"); !errors.Is(err, ErrTopicNotFound) {
				t.Errorf("after delete: %v", err)
			}
		}},
		{"delete default", EncodeDelete(DefaultTopic), ErrProtected, nil},
		{"delete missing", EncodeDelete("nope"), ErrTopicNotFound, nil},
		{"set replicas", EncodeSetReplicas(SetReplicas{Name: "orders", Partition: 1, Replicas: []string{"d", "b"}}), nil, func(t *testing.T, res *Topic, v *View) {
			if got := res.Partitions[1].Replicas; !slices.Equal(got, []string{"d", "b"}) {
				t.Errorf("replicas %q", got)
			}
			if got := res.Partitions[0].Replicas; !slices.Equal(got, []string{"a", "b"}) {
				t.Errorf("partition 0 changed: %q", got)
			}
		}},
		{"set replicas mid-move", EncodeSetReplicas(SetReplicas{Name: "orders", Partition: 0, Replicas: []string{"a", "b", "d"}, TopicID: 5}), nil, func(t *testing.T, res *Topic, v *View) {
			if got := res.Partitions[0].Replicas; len(got) != 3 || res.ReplicationFactor != 2 {
				t.Errorf("topic %+v", res)
			}
		}},
		{"set replicas of another incarnation", EncodeSetReplicas(SetReplicas{Name: "orders", Partition: 0, Replicas: []string{"a", "b"}, TopicID: 4}), ErrTopicNotFound, nil},
		{"set replicas missing topic", EncodeSetReplicas(SetReplicas{Name: "nope", Replicas: []string{"a", "b"}}), ErrTopicNotFound, nil},
		{"set replicas missing partition", EncodeSetReplicas(SetReplicas{Name: "orders", Partition: 2, Replicas: []string{"a", "b"}}), ErrPartitionNotFound, nil},
		{"set replicas negative partition", EncodeSetReplicas(SetReplicas{Name: "orders", Partition: -1, Replicas: []string{"a", "b"}}), ErrPartitionNotFound, nil},
		{"set replicas below rf", EncodeSetReplicas(SetReplicas{Name: "orders", Partition: 0, Replicas: []string{"a"}}), ErrInvalid, nil},
		{"set replicas repeated", EncodeSetReplicas(SetReplicas{Name: "orders", Partition: 0, Replicas: []string{"a", "a"}}), ErrInvalid, nil},
		{"set replicas of the system group", EncodeSetReplicas(SetReplicas{Name: DefaultTopic, Partition: 0, Replicas: []string{"a"}}), ErrInvalid, nil},
		{"garbage", []byte{0xee, 1, 2}, ErrInvalid, nil},
		{"empty", nil, ErrInvalid, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fixture(t)
			before := c.View()
			kept := deepTopics(before)
			res, ok := c.Apply(9, at, tt.cmd).(Result)
			if !ok {
				t.Fatalf("Apply returned %T, want Result", res)
			}
			v := c.View()
			if v.Index() != 9 {
				t.Errorf("Index() = %d, want 9", v.Index())
			}
			if !reflect.DeepEqual(deepTopics(before), kept) {
				t.Errorf("Apply changed the previous view's topics")
			}
			if err := checkView(v); err != nil {
				t.Errorf("invariants: %v", err)
			}
			if tt.err != nil {
				if !errors.Is(res.Err, tt.err) || res.Topic != nil {
					t.Fatalf("Result = %+v, want error %v", res, tt.err)
				}
				if !reflect.DeepEqual(deepTopics(v), kept) {
					t.Errorf("refused command changed the topics")
				}
				return
			}
			if res.Err != nil || res.Topic == nil {
				t.Fatalf("Result = %+v", res)
			}
			tt.check(t, res.Topic, v)
		})
	}
}

// deepTopics copies the view's topics, to see later whether they changed.
func deepTopics(v *View) []Topic {
	var out []Topic
	for _, t := range v.Topics() {
		c := *t
		c.Partitions = nil
		for _, p := range t.Partitions {
			p.Replicas = slices.Clone(p.Replicas)
			c.Partitions = append(c.Partitions, p)
		}
		out = append(out, c)
	}
	return out
}

// checkView holds a view to the invariants a snapshot must meet, through
// the snapshot decoder.
func checkView(v *View) error {
	_, err := decodeView(encodeView(v))
	return err
}

func TestInitialState(t *testing.T) {
	v := New().View()
	want := []*Topic{{Name: DefaultTopic, Partitions: []Partition{{Index: 0, System: true}}}}
	if got := v.Topics(); !reflect.DeepEqual(got, want) || v.Index() != 0 {
		t.Fatalf("initial topics %+v at %d, want %+v", got, v.Index(), want)
	}
	d, err := v.Topic(DefaultTopic)
	if err != nil || d.Group(0) != "" {
		t.Fatalf("default: %+v %v", d, err)
	}
	if _, err := v.Topic(""); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf(`Topic("") = %v`, err)
	}
}

// metaFSM is cluster.MetaFSM, which this package does not import.
type metaFSM interface {
	Apply(index uint64, at time.Time, cmd []byte) any
	Snapshot() ([]byte, error)
	Restore(state []byte) error
}

var _ metaFSM = (*Catalog)(nil)
