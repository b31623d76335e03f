package acl_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/proglog/proglog/acl"
)

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
		{"bad object", "p, alice, topic, consume", "line 1", `object "topic"`},
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

func TestAllowed(t *testing.T) {
	const policy = `
# proglog policy
p, root, *, *
p, reader, log, consume   # trailing comment
p, writer, log, produce
p, writer, log, consume
p, *, log, consume
p, ops, *, admin
p, anonymous, log, produce
`
	p, err := acl.Parse(strings.NewReader(policy))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		subject, action string
		want            bool
	}{
		{"root", "produce", true},
		{"root", "consume", true},
		{"root", "admin", true},
		{"reader", "consume", true},
		{"reader", "produce", false},
		{"reader", "admin", false},
		{"writer", "produce", true},
		{"writer", "admin", false},
		{"stranger", "consume", true}, // via "*": any authenticated subject
		{"stranger", "produce", false},
		{"ops", "admin", true},
		{"ops", "produce", false},
		{"anonymous", "consume", false}, // "*" never matches anonymous
		{"anonymous", "produce", true},  // an explicit rule does
		{"", "consume", false},
		{"root", "unknown-action", true}, // "*" covers any action name
		{"reader", "unknown-action", false},
		{"Root", "produce", false}, // subjects are case-sensitive, like CNs
	}
	for _, tt := range tests {
		t.Run(tt.subject+"/"+tt.action, func(t *testing.T) {
			if got := p.Allowed(tt.subject, tt.action); got != tt.want {
				t.Fatalf("Allowed(%q, %q) = %v, want %v", tt.subject, tt.action, got, tt.want)
			}
		})
	}
}

func TestActions(t *testing.T) {
	p, err := acl.Parse(strings.NewReader("p, root, *, *\np, reader, log, consume\np, ops, log, admin\np, ops, *, produce"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		subject string
		want    []string
	}{
		{"root", []string{"produce", "consume", "admin"}},
		{"reader", []string{"consume"}},
		{"ops", []string{"produce", "admin"}},
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

func TestEmptyAndNilPolicyDeny(t *testing.T) {
	empty, err := acl.Parse(strings.NewReader("# nothing here\n\n   \n"))
	if err != nil {
		t.Fatal(err)
	}
	var nilPolicy *acl.Policy
	for name, p := range map[string]*acl.Policy{"empty": empty, "nil": nilPolicy} {
		for _, a := range []string{"produce", "consume", "admin"} {
			if p.Allowed("root", a) {
				t.Errorf("%s policy allows root %s", name, a)
			}
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := acl.Load(t.TempDir() + "/missing.csv")
	if err == nil || errors.Is(err, acl.ErrInvalid) {
		t.Fatalf("Load(missing) err = %v, want a not-exist error", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"p, root, *, *",
		"p, alice, log, consume # c\n\np, *, log, produce",
		"p,,,",
		"g, a, b",
		"p, a, log, admin\r\np, b, *, consume\r\n",
		"#\n#\np",
		strings.Repeat("p, a, *, *\n", 50),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := acl.Parse(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, acl.ErrInvalid) || !strings.Contains(err.Error(), "line ") {
				t.Fatalf("error %q does not wrap ErrInvalid with a line number", err)
			}
			return
		}
		// "*" never admits anonymous unless a rule names it literally.
		if p.Allowed("anonymous", "consume") && !strings.Contains(string(data), "anonymous") {
			t.Fatalf("anonymous allowed without a rule naming it: %q", data)
		}
		for _, a := range p.Actions("root") {
			if !p.Allowed("root", a) {
				t.Fatalf("Actions and Allowed disagree on %q", a)
			}
		}
	})
}
