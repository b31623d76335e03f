package acl_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/proglog/proglog/acl"
	"github.com/proglog/proglog/catalog"
)

func mustParse(t testing.TB, policy string) *acl.Policy {
	t.Helper()
	p, err := acl.Parse(strings.NewReader(policy))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		line   string // the "line N" the error must name
		want   string // a fragment of the message
	}{
		{"wrong type", "g, alice, *, *", "line 1", `rule type "g"`},
		{"too few fields", "# c\n\np, alice, *", "line 3", "want 4 fields"},
		{"too many fields", "p, root, *, *\np, a, log, consume, extra", "line 2", "got 5"},
		{"empty subject", "p, , *, *", "line 1", "empty subject"},
		{"empty object", "p, root, *, *\np, alice, , consume", "line 2", "empty object"},
		{"slash in object", "p, alice, orders/eu, consume", "line 1", `object "orders/eu": byte 6 "/" is not one of [a-zA-Z0-9._-] or '*'`},
		{"question mark", "p, root, *, *\n\np, alice, order?, consume", "line 3", `byte 5 "?"`},
		{"character class", "p, alice, [ab]*, consume", "line 1", `byte 0 "["`},
		{"backslash", `p, alice, a\*, consume`, "line 1", `byte 1 "\\"`},
		{"space in object", "p, alice, my topic, consume", "line 1", `byte 2 " "`},
		{"non-ASCII object", "p, alice, café, consume", "line 1", `byte 3 "\xc3"`},
		{"dot object", "p, alice, ., consume", "line 1", "not a topic name"},
		{"dot-dot object", "p, alice, .., consume", "line 1", "not a topic name"},
		{"object too long", "p, alice, *" + strings.Repeat("a", 250) + ", consume", "line 1", "can match nothing"},
		{"bad action", "p, alice, log, read", "line 1", `action "read"`},
		{"control char", "p, al\x01ice, log, consume", "line 1", "control characters"},
		{"long line", "p, root, *, *\n" + strings.Repeat("x", 5000), "line 2", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := acl.Parse(strings.NewReader(tt.policy))
			if !errors.Is(err, acl.ErrInvalid) {
				t.Fatalf("Parse: err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.line+":") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: err = %q, want it to name %q and contain %q", err, tt.line, tt.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct{ object, canonical string }{
		{"*", "*"},
		{"**", "*"},
		{"log", "default"}, // the legacy object
		{"default", "default"},
		{"Log", "Log"}, // only "log" itself is legacy
		{"logs", "logs"},
		{"orders.eu", "orders.eu"},
		{"orders.*", "orders.*"},
		{"*.audit", "*.audit"},
		{"a***b**c", "a*b*c"},
		{"-_.x", "-_.x"},
		{"..*", "..*"},
		{strings.Repeat("a", 249), strings.Repeat("a", 249)},
		{"*" + strings.Repeat("a", 249) + "*", "*" + strings.Repeat("a", 249) + "*"},
	}
	for _, tt := range tests {
		t.Run(tt.object, func(t *testing.T) {
			p := mustParse(t, "p, alice, "+tt.object+", consume # c")
			if got, want := p.String(), "p, alice, "+tt.canonical+", consume\n"; got != want {
				t.Fatalf("String() = %q, want %q", got, want)
			}
		})
	}
}

// TestObjects checks which topics a single rule's object covers.
func TestObjects(t *testing.T) {
	tests := []struct {
		object string
		yes    []string
		no     []string
	}{
		{"*", []string{"default", "orders", "a", "x.y.z", ""}, nil},
		{"**", []string{"default", "orders"}, nil},
		{"orders", []string{"orders"}, []string{"orders.eu", "order", "Orders", "xorders", ""}},
		{"log", []string{"default", ""}, []string{"log", "logs"}}, // legacy: the default topic
		{"default", []string{"default", ""}, []string{"default.x"}},
		// star at the end
		{"orders.*", []string{"orders.eu", "orders.eu.refunds", "orders."}, []string{"orders", "ordersx", "x.orders.eu", "default"}},
		// star at the start
		{"*.audit", []string{"billing.audit", ".audit", "a.b.audit"}, []string{"audit", "billing.audit.x", "billingaudit"}},
		// star in the middle
		{"orders.*.refunds", []string{"orders.eu.refunds", "orders..refunds", "orders.eu.fr.refunds"}, []string{"orders.refunds", "orders.eu.refunds2"}},
		// several stars
		{"a*b*c", []string{"abc", "a.b.c", "aXbYc", "abcbc", "abbc", "aaabbbccc"}, []string{"acb", "abcb", "ab", "bc", "ac"}},
		{"*a*a*", []string{"aa", "xaxax", "aaa"}, []string{"a", "xa", "b"}},
		{"ab*ba", []string{"abba", "ab.ba", "abbba"}, []string{"aba", "ab"}},
		{"*orders*", []string{"orders", "eu.orders.x", "myorders"}, []string{"order", "ord.ers"}},
		{"t*", []string{"t", "topic", "t.x"}, []string{"default", "at"}},
	}
	for _, tt := range tests {
		t.Run(tt.object, func(t *testing.T) {
			p := mustParse(t, "p, alice, "+tt.object+", consume")
			for _, topic := range tt.yes {
				if !p.Allowed("alice", topic, acl.ActionConsume) {
					t.Errorf("object %q does not cover topic %q", tt.object, topic)
				}
				if p.Allowed("alice", topic, acl.ActionProduce) {
					t.Errorf("object %q: produce on %q allowed by a consume rule", tt.object, topic)
				}
			}
			for _, topic := range tt.no {
				if p.Allowed("alice", topic, acl.ActionConsume) {
					t.Errorf("object %q covers topic %q", tt.object, topic)
				}
			}
			if !p.AllowedAny("alice", acl.ActionConsume) {
				t.Errorf("AllowedAny(consume) = false")
			}
		})
	}
}

const testPolicy = `
# proglog policy
p, root, *, *
p, reader, log, consume   # trailing comment: legacy object, the default topic
p, writer, default, produce
p, writer, default, consume
p, *, log, consume
p, ops, *, admin
p, anonymous, log, produce
p, orders-svc, orders.*, produce
p, orders-svc, orders.*, consume
p, orders-svc, orders, admin
p, auditor, *.audit, consume
p, *, public.*, consume
p, team-a, team-a.*, *
`

func TestAllowed(t *testing.T) {
	p := mustParse(t, testPolicy)
	tests := []struct {
		subject, topic, action string
		want                   bool
	}{
		{"root", "", "produce", true},
		{"root", "orders.eu", "consume", true},
		{"root", "anything", "admin", true},
		{"root", "*", "admin", true}, // the cluster
		{"reader", "", "consume", true},
		{"reader", "default", "consume", true},
		{"reader", "log", "consume", false}, // "log" in a rule is the default topic, not a topic "log"
		{"reader", "orders", "consume", false},
		{"reader", "", "produce", false},
		{"reader", "", "admin", false},
		{"writer", "", "produce", true},
		{"writer", "default", "admin", false},
		{"writer", "other", "produce", false},
		{"stranger", "", "consume", true}, // via "*": any authenticated subject
		{"stranger", "public.news", "consume", true},
		{"stranger", "private", "consume", false},
		{"stranger", "", "produce", false},
		{"ops", "anything", "admin", true},
		{"ops", "*", "admin", true},
		{"ops", "anything", "produce", false},
		{"ops", "", "consume", true},                   // "*" rules add to a named subject's own
		{"anonymous", "", "consume", false},            // "*" never matches anonymous
		{"anonymous", "public.news", "consume", false}, // nor through a glob
		{"anonymous", "", "produce", true},             // an explicit rule does
		{"anonymous", "default", "produce", true},
		{"", "", "consume", false},
		{"orders-svc", "orders.eu", "produce", true},
		{"orders-svc", "orders.eu.refunds", "consume", true},
		{"orders-svc", "orders", "produce", false},
		{"orders-svc", "orders", "admin", true}, // create/update/delete the topic "orders"
		{"orders-svc", "orders.eu", "admin", false},
		{"orders-svc", "*", "admin", false}, // not cluster-wide
		{"auditor", "billing.audit", "consume", true},
		{"auditor", "billing.audit", "produce", false},
		{"team-a", "team-a.x", "admin", true},
		{"team-a", "team-a.x", "unknown-action", true}, // "*" covers any action name
		{"team-a", "team-b.x", "produce", false},
		{"root", "", "unknown-action", true},
		{"reader", "", "unknown-action", false},
		{"Root", "", "produce", false}, // subjects are case-sensitive, like CNs
		// Topics that are not valid names are denied, even to root.
		{"root", "orders/eu", "produce", false},
		{"root", "..", "produce", false},
		{"root", ".", "consume", false},
		{"root", strings.Repeat("a", 250), "produce", false},
		{"root", strings.Repeat("a", 249), "produce", true},
		{"orders-svc", "orders.eu/x", "produce", false},
		{"orders-svc", "orders.*", "produce", false}, // a topic is not a pattern
	}
	for _, tt := range tests {
		t.Run(tt.subject+"/"+tt.topic+"/"+tt.action, func(t *testing.T) {
			if got := p.Allowed(tt.subject, tt.topic, tt.action); got != tt.want {
				t.Fatalf("Allowed(%q, %q, %q) = %v, want %v", tt.subject, tt.topic, tt.action, got, tt.want)
			}
		})
	}
}

func TestAllowedAnyAndCluster(t *testing.T) {
	p := mustParse(t, testPolicy)
	tests := []struct {
		subject, action string
		any, cluster    bool
	}{
		{"root", "produce", true, true},
		{"root", "admin", true, true},
		{"ops", "admin", true, true},
		{"ops", "consume", true, false}, // from "p, *, log, consume"
		{"ops", "produce", false, false},
		{"orders-svc", "admin", true, false}, // admin of one topic only
		{"orders-svc", "produce", true, false},
		{"auditor", "consume", true, false},
		{"auditor", "produce", false, false},
		{"stranger", "consume", true, false},
		{"stranger", "admin", false, false},
		{"anonymous", "produce", true, false},
		{"anonymous", "consume", false, false},
		{"team-a", "anything", true, false},
		{"", "consume", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.subject+"/"+tt.action, func(t *testing.T) {
			if got := p.AllowedAny(tt.subject, tt.action); got != tt.any {
				t.Errorf("AllowedAny = %v, want %v", got, tt.any)
			}
			if got := p.AllowedCluster(tt.subject, tt.action); got != tt.cluster {
				t.Errorf("AllowedCluster = %v, want %v", got, tt.cluster)
			}
		})
	}
}

func TestActions(t *testing.T) {
	p := mustParse(t, "p, root, *, *\np, reader, log, consume\np, ops, log, admin\np, ops, *, produce\np, ord, orders.*, consume\np, ord, x, admin")
	tests := []struct {
		subject string
		want    []string
	}{
		{"root", []string{"produce", "consume", "admin"}},
		{"reader", []string{"consume"}},
		{"ops", []string{"produce", "admin"}},
		{"ord", []string{"consume", "admin"}},
		{"nobody", []string{}},
		{"anonymous", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			got := p.Actions(tt.subject)
			if got == nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Actions(%q) = %#v, want %#v", tt.subject, got, tt.want)
			}
		})
	}
}

func TestActionsOn(t *testing.T) {
	p := mustParse(t, testPolicy)
	tests := []struct {
		subject, topic string
		want           []string
	}{
		{"root", "", []string{"produce", "consume", "admin"}},
		{"root", "*", []string{"produce", "consume", "admin"}},
		{"writer", "", []string{"produce", "consume"}},
		{"writer", "default", []string{"produce", "consume"}},
		{"writer", "orders", []string{}},
		{"orders-svc", "orders", []string{"admin"}},
		{"orders-svc", "orders.eu", []string{"produce", "consume"}},
		{"orders-svc", "", []string{"consume"}}, // from "p, *, log, consume"
		{"orders-svc", "*", []string{}},
		{"ops", "*", []string{"admin"}},
		{"ops", "public.x", []string{"consume", "admin"}},
		{"team-a", "team-a.x", []string{"produce", "consume", "admin"}},
		{"stranger", "public.x", []string{"consume"}},
		{"anonymous", "", []string{"produce"}},
		{"anonymous", "public.x", []string{}},
		{"root", "bad/name", []string{}},
		{"nobody", "", []string{"consume"}}, // any authenticated subject: the "*" rules
		{"nobody", "orders", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.subject+"/"+tt.topic, func(t *testing.T) {
			got := p.ActionsOn(tt.subject, tt.topic)
			if got == nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ActionsOn(%q, %q) = %#v, want %#v", tt.subject, tt.topic, got, tt.want)
			}
		})
	}
}

func TestClusterNeedsStarObject(t *testing.T) {
	// Globs and topic names never grant cluster-wide actions, however
	// much they cover; a run of stars is "*".
	for _, obj := range []string{"*.*", "a*", "*a", "default", "log", "*-*"} {
		p := mustParse(t, "p, alice, "+obj+", admin")
		if p.AllowedCluster("alice", acl.ActionAdmin) || p.Allowed("alice", "*", acl.ActionAdmin) {
			t.Errorf("object %q grants cluster-wide admin", obj)
		}
	}
	p := mustParse(t, "p, alice, **, admin")
	if !p.AllowedCluster("alice", acl.ActionAdmin) {
		t.Error(`object "**" does not grant what "*" does`)
	}
}

func TestDefaultTopicIsCatalogs(t *testing.T) {
	if acl.DefaultTopic != catalog.DefaultTopic {
		t.Fatalf("acl.DefaultTopic = %q, catalog.DefaultTopic = %q", acl.DefaultTopic, catalog.DefaultTopic)
	}
}

func TestEmptyAndNilPolicyDeny(t *testing.T) {
	empty := mustParse(t, "# nothing here\n\n   \n")
	var nilPolicy *acl.Policy
	for name, p := range map[string]*acl.Policy{"empty": empty, "nil": nilPolicy, "zero": {}} {
		for _, a := range []string{"produce", "consume", "admin"} {
			if p.Allowed("root", "", a) || p.AllowedAny("root", a) || p.AllowedCluster("root", a) {
				t.Errorf("%s policy allows root %s", name, a)
			}
		}
		if got := p.Actions("root"); got == nil || len(got) != 0 {
			t.Errorf("%s policy: Actions = %#v", name, got)
		}
		if got := p.ActionsOn("root", ""); got == nil || len(got) != 0 {
			t.Errorf("%s policy: ActionsOn = %#v", name, got)
		}
		if p.Len() != 0 || p.String() != "" {
			t.Errorf("%s policy: Len %d, String %q", name, p.Len(), p.String())
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := acl.Load(t.TempDir() + "/missing.csv")
	if err == nil || errors.Is(err, acl.ErrInvalid) {
		t.Fatalf("Load(missing) err = %v, want a not-exist error", err)
	}
}

// globRegexp is a slow, obviously right reference for an object.
func globRegexp(object string) *regexp.Regexp {
	if object == "log" {
		object = acl.DefaultTopic
	}
	parts := strings.Split(object, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// FuzzGlob checks the compiled matcher against a regular expression and
// topic validity against catalog.ValidName.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"orders.*", "orders.eu.refunds"}, {"*.audit", ".audit"}, {"a*b*c", "abcbc"},
		{"*a*a*", "a"}, {"ab*ba", "aba"}, {"*", "x"}, {"log", "default"}, {"x", "x/y"},
		{"a*", "a."}, {"*", ".."},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, object, topic string) {
		p, err := acl.Parse(strings.NewReader("p, alice, " + object + ", consume"))
		if err != nil || strings.ContainsAny(object, "#,\n") || object != strings.TrimSpace(object) {
			return
		}
		var want bool
		switch topic {
		case "": // the default topic
			want = globRegexp(object).MatchString(acl.DefaultTopic)
		case "*": // the cluster: only an object of stars
			want = strings.Trim(object, "*") == ""
		default:
			want = catalog.ValidName(topic) == nil && globRegexp(object).MatchString(topic)
		}
		if got := p.Allowed("alice", topic, acl.ActionConsume); got != want {
			t.Fatalf("object %q, topic %q: Allowed = %v, want %v", object, topic, got, want)
		}
		root := mustParse(t, "p, root, *, *")
		if got, want := root.Allowed("root", topic, "produce"), topic == "" || topic == "*" || catalog.ValidName(topic) == nil; got != want {
			t.Fatalf("topic %q: root allowed = %v, want %v (ValidName: %v)", topic, got, want, catalog.ValidName(topic))
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"p, root, *, *",
		"p, alice, log, consume # c\n\np, *, log, produce",
		"p, a, orders.*, produce\np, a, *.audit, consume\np, *, a**b*c, admin",
		"p,,,",
		"g, a, b",
		"p, a, log, admin\r\np, b, *, consume\r\n",
		"p, anonymous, pub*, consume\np, *, *, consume",
		"#\n#\np",
		strings.Repeat("p, a, *, *\n", 50),
	} {
		f.Add([]byte(s))
	}
	topics := []string{"", "*", "default", "log", "orders", "orders.eu", "a.audit", "abc", "x", "bad/name"}
	actions := []string{"produce", "consume", "admin", "other"}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := acl.Parse(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, acl.ErrInvalid) || !strings.Contains(err.Error(), "line ") {
				t.Fatalf("error %q does not wrap ErrInvalid with a line number", err)
			}
			return
		}
		// The canonical form reparses to the same policy.
		canon := p.String()
		q, err := acl.Parse(strings.NewReader(canon))
		if err != nil {
			t.Fatalf("canonical form %q does not parse: %v", canon, err)
		}
		if q.String() != canon || q.Len() != p.Len() {
			t.Fatalf("canonical form %q reparses as %q", canon, q.String())
		}
		subjects := []string{"root", "anonymous", "stranger"}
		for _, line := range strings.Split(canon, "\n") {
			if f := strings.Split(line, ", "); len(f) == 4 {
				subjects = append(subjects, f[1])
			}
		}
		for _, s := range subjects {
			if !slices.Equal(p.Actions(s), q.Actions(s)) {
				t.Fatalf("%q: Actions %v, reparsed %v", s, p.Actions(s), q.Actions(s))
			}
			for _, a := range actions {
				any := p.AllowedAny(s, a)
				cluster := p.AllowedCluster(s, a)
				if cluster && !any {
					t.Fatalf("%q %s: allowed on the cluster but not on some topic", s, a)
				}
				if slices.Contains(p.Actions(s), a) != any && a != "other" {
					t.Fatalf("%q %s: Actions and AllowedAny disagree", s, a)
				}
				for _, topic := range topics {
					ok := p.Allowed(s, topic, a)
					if ok != q.Allowed(s, topic, a) {
						t.Fatalf("%q %s %q: the reparsed policy disagrees", s, a, topic)
					}
					if ok && !any {
						t.Fatalf("%q %s %q: allowed, but AllowedAny is false", s, a, topic)
					}
					if cluster && !ok && topic != "bad/name" {
						t.Fatalf("%q %s %q: allowed cluster-wide but not on the topic", s, a, topic)
					}
					if a != "other" && slices.Contains(p.ActionsOn(s, topic), a) != ok {
						t.Fatalf("%q %s %q: ActionsOn and Allowed disagree", s, a, topic)
					}
				}
			}
		}
		// "*" never admits anonymous unless a rule names it literally.
		if p.AllowedAny("anonymous", "consume") && !strings.Contains(string(data), "anonymous") {
			t.Fatalf("anonymous allowed without a rule naming it: %q", data)
		}
	})
}

// BenchmarkAllowed checks against a policy of 100 rules: 20 subjects with
// five rules each (an exact topic, two globs, a legacy "log" and a
// produce-only glob), plus the "*" rules at the end.
func BenchmarkAllowed(b *testing.B) {
	var sb strings.Builder
	for i := range 19 {
		fmt.Fprintf(&sb, "p, svc-%d, team-%d.orders, produce\n", i, i)
		fmt.Fprintf(&sb, "p, svc-%d, team-%d.*, consume\n", i, i)
		fmt.Fprintf(&sb, "p, svc-%d, *.team-%d.audit, consume\n", i, i)
		fmt.Fprintf(&sb, "p, svc-%d, log, consume\n", i)
		fmt.Fprintf(&sb, "p, svc-%d, team-%d.*.in*, produce\n", i, i)
	}
	sb.WriteString("p, root, *, *\np, ops, *, admin\np, *, public.*, consume\np, *, shared, consume\np, anonymous, log, consume\n")
	p := mustParse(b, sb.String())
	if p.Len() != 100 {
		b.Fatalf("%d rules, want 100", p.Len())
	}
	cases := []struct {
		name, subject, topic, action string
		want                         bool
	}{
		{"root", "root", "team-3.orders", "produce", true},
		{"exact", "svc-7", "team-7.orders", "produce", true},
		{"glob-end", "svc-7", "team-7.payments.eu", "consume", true},
		{"glob-start", "svc-7", "billing.team-7.audit", "consume", true},
		{"glob-middle", "svc-7", "team-7.eu.inbound", "produce", true},
		{"via-star-subject", "svc-7", "public.news", "consume", true},
		{"deny", "svc-7", "team-8.payments", "consume", false},
		{"deny-action", "svc-7", "team-7.payments", "admin", false},
		{"unknown-subject", "stranger", "team-7.orders", "consume", false},
		{"default-topic", "svc-7", "", "consume", true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if got := p.Allowed(c.subject, c.topic, c.action); got != c.want {
				b.Fatalf("Allowed = %v, want %v", got, c.want)
			}
			for b.Loop() {
				p.Allowed(c.subject, c.topic, c.action)
			}
		})
	}
}
