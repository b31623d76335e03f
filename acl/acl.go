// Package acl decides which subject may perform which action on which
// topic, from a small casbin-like CSV policy file that can be reloaded at
// run time.
//
// The format is one rule a line:
//
//	p, <subject>, <object>, <action>
//
// subject is a certificate Common Name, "anonymous" (callers without a
// verified certificate), or "*" (any authenticated subject, never
// anonymous). Subjects are case-sensitive.
//
// object names the topics the rule covers:
//
//   - "*": every topic, and the cluster itself (see below);
//   - a topic name, e.g. "orders.eu": that topic only;
//   - a glob, where each '*' matches any run of characters, none and dots
//     included: "orders.*" covers "orders.eu" and "orders.eu.refunds" (not
//     "orders"), "*.audit" covers "billing.audit", "a*b*c" covers "abc" and
//     "a.b.c". A run of stars is the same as one ('**' is '*').
//   - "log", the legacy object of the days before topics: it means the
//     topic "default" (the topic of every request that names none), not a
//     topic called "log". Write "default" in new policies.
//
// An object is made of the bytes of topic names ([a-zA-Z0-9._-]) and '*'
// only: anything else ('?', '[', '\', '/', spaces, ...) is a parse error,
// so a rule cannot look like a pattern syntax it is not.
//
// action is "produce", "consume", "admin" or "*" (every action, including
// any the service adds later). Admin on a topic covers creating, updating
// and deleting that topic (the object is the topic concerned). Cluster-wide
// administration (reflection, metrics, membership, anything not about one
// topic) is checked against the object "*" literally: only rules whose
// object is "*" grant it (AllowedCluster), never a glob or topic name.
//
// Everything after a '#' is a comment; blank lines are ignored. Anything
// not allowed by a rule is denied.
//
// Rules are compiled when parsed: a check is a map lookup for the subject,
// a bit test for rules on every topic, a map lookup for exact topic names
// and a scan of that subject's globs only.
package acl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// The actions the service checks, in the order Actions reports them.
const (
	ActionProduce = "produce"
	ActionConsume = "consume"
	ActionAdmin   = "admin"
)

// Anonymous is the subject of a caller without a verified certificate.
const Anonymous = "anonymous"

// DefaultTopic is the topic of a request that names none; Allowed and
// ActionsOn take "" to mean it. It is catalog.DefaultTopic.
const DefaultTopic = "default"

// legacyObject is the object of policies written before topics; it means
// DefaultTopic.
const legacyObject = "log"

// maxTopicLen is the longest topic name, in bytes (catalog.MaxNameLen).
const maxTopicLen = 249

// knownActions lists every action a rule can name, in report order.
var knownActions = [...]string{ActionProduce, ActionConsume, ActionAdmin}

// maxLineBytes bounds one policy line so a garbage file cannot make the
// parser buffer without limit.
const maxLineBytes = 4096

// ErrInvalid is returned (wrapped, naming the line) when a policy does not
// parse. The previous policy stays in force when a reload fails with it.
var ErrInvalid = errors.New("acl: invalid policy")

// mask is a set of actions: one bit per known action, and one for every
// other action name, which only an action "*" rule grants.
type mask uint8

const (
	bitProduce mask = 1 << iota
	bitConsume
	bitAdmin
	bitOther
	bitAll = bitProduce | bitConsume | bitAdmin | bitOther
)

func actionBit(action string) mask {
	switch action {
	case ActionProduce:
		return bitProduce
	case ActionConsume:
		return bitConsume
	case ActionAdmin:
		return bitAdmin
	}
	return bitOther
}

// rule is one parsed "p" line, in canonical form.
type rule struct {
	subject string // a CN, "anonymous" or "*"
	object  string // "*", a topic name or a glob; "log" already mapped to "default", star runs collapsed
	action  string // one of knownActions or "*"
}

// glob is a compiled object with at least one '*' other than "*" itself:
// the literal parts between the stars, so "a*b*c" is {"a", "b", "c"}.
type glob struct {
	pattern string
	parts   []string
	minLen  int // the bytes of the literal parts: shorter names cannot match
	grant   mask
}

// match reports whether name matches the glob. Stars match any run, so
// taking each middle part at its leftmost place is never wrong.
func (g *glob) match(name string) bool {
	if len(name) < g.minLen {
		return false
	}
	first, last := g.parts[0], g.parts[len(g.parts)-1]
	if !strings.HasPrefix(name, first) || !strings.HasSuffix(name, last) {
		return false
	}
	rest := name[len(first) : len(name)-len(last)]
	for _, p := range g.parts[1 : len(g.parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}

// grants is what one subject may do, compiled from its rules (and, for a
// named authenticated subject, the rules for "*").
type grants struct {
	all   mask            // on every topic and the cluster: object "*"
	some  mask            // on at least one topic: the union of all rules
	exact map[string]mask // by topic name
	globs []glob
}

func (g *grants) add(r rule) {
	m := bitAll
	if r.action != "*" {
		m = actionBit(r.action)
	}
	g.some |= m
	switch {
	case r.object == "*":
		g.all |= m
	case !strings.Contains(r.object, "*"):
		if g.exact == nil {
			g.exact = make(map[string]mask)
		}
		g.exact[r.object] |= m
	default:
		for i := range g.globs {
			if g.globs[i].pattern == r.object {
				g.globs[i].grant |= m
				return
			}
		}
		parts := strings.Split(r.object, "*")
		g.globs = append(g.globs, glob{
			pattern: r.object,
			parts:   parts,
			minLen:  len(r.object) - (len(parts) - 1),
			grant:   m,
		})
	}
}

// on returns the actions granted on topic, a valid topic name, among want:
// it stops as soon as all of want is granted.
func (g *grants) on(topic string, want mask) mask {
	got := g.all | g.exact[topic]
	for i := range g.globs {
		if got&want == want {
			break
		}
		if gl := &g.globs[i]; gl.grant&^got != 0 && gl.match(topic) {
			got |= gl.grant
		}
	}
	return got
}

// Policy is an immutable, parsed set of rules. The zero value and a nil
// *Policy deny everything. Its methods are safe for concurrent use.
type Policy struct {
	rules     []rule
	subjects  map[string]*grants // named subjects; "*" rules merged in except for anonymous
	wildcard  *grants            // authenticated subjects no rule names
	legacyLog bool               // a rule used the object "log"
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	defer f.Close()
	p, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Parse reads a policy. Errors wrap ErrInvalid and name the line number.
func Parse(r io.Reader) (*Policy, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLineBytes)
	var rules []rule
	legacy := false
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		rl, usedLog, err := parseRule(text)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %s", ErrInvalid, line, err)
		}
		legacy = legacy || usedLog
		rules = append(rules, rl)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrInvalid, line+1, maxLineBytes)
		}
		return nil, fmt.Errorf("acl: read policy: %w", err)
	}
	p := compile(rules)
	p.legacyLog = legacy
	return p, nil
}

// compile builds the per-subject grants of rules.
func compile(rules []rule) *Policy {
	p := &Policy{rules: rules, subjects: make(map[string]*grants), wildcard: &grants{}}
	var wild []rule
	for _, r := range rules {
		if r.subject == "*" {
			wild = append(wild, r)
			p.wildcard.add(r)
			continue
		}
		g := p.subjects[r.subject]
		if g == nil {
			g = &grants{}
			p.subjects[r.subject] = g
		}
		g.add(r)
	}
	for s, g := range p.subjects {
		if s == Anonymous {
			continue // "*" never covers anonymous
		}
		for _, r := range wild {
			g.add(r)
		}
	}
	return p
}

// parseRule parses one non-blank, comment-free line. usedLog reports the
// legacy object "log".
func parseRule(text string) (r rule, usedLog bool, err error) {
	fields := strings.Split(text, ",")
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	if fields[0] != "p" {
		return rule{}, false, fmt.Errorf("rule type %q: want \"p\"", fields[0])
	}
	if len(fields) != 4 {
		return rule{}, false, fmt.Errorf("want 4 fields \"p, subject, object, action\", got %d", len(fields))
	}
	subject, object, action := fields[1], fields[2], fields[3]
	if subject == "" {
		return rule{}, false, errors.New("empty subject")
	}
	if strings.ContainsFunc(subject, isControl) {
		return rule{}, false, fmt.Errorf("subject %q contains control characters", subject)
	}
	if object == legacyObject {
		object, usedLog = DefaultTopic, true
	}
	if object, err = parseObject(object); err != nil {
		return rule{}, false, err
	}
	if action != "*" && !slices.Contains(knownActions[:], action) {
		return rule{}, false, fmt.Errorf("action %q: want one of %s or \"*\"", action, strings.Join(knownActions[:], ", "))
	}
	return rule{subject: subject, object: object, action: action}, usedLog, nil
}

// parseObject checks an object and returns it with runs of stars collapsed.
func parseObject(object string) (string, error) {
	if object == "" {
		return "", errors.New(`empty object: want a topic name, a glob or "*"`)
	}
	literal := 0
	for i := 0; i < len(object); i++ {
		c := object[i]
		if c == '*' {
			continue
		}
		if !isNameByte(c) {
			return "", fmt.Errorf("object %q: byte %d %q is not one of [a-zA-Z0-9._-] or '*'", object, i, object[i:i+1])
		}
		literal++
	}
	if literal > maxTopicLen {
		return "", fmt.Errorf("object %q: %d bytes besides stars, and a topic name has at most %d: it can match nothing", object, literal, maxTopicLen)
	}
	if object == "." || object == ".." {
		return "", fmt.Errorf("object %q: not a topic name", object)
	}
	for strings.Contains(object, "**") {
		object = strings.ReplaceAll(object, "**", "*")
	}
	return object, nil
}

// nameBytes marks the bytes of topic names, [a-zA-Z0-9._-]: a table, as
// every check of a request runs through it.
var nameBytes = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	return t
}()

func isNameByte(c byte) bool { return nameBytes[c] }

// validTopic reports whether topic is a valid topic name (the rules of
// catalog.ValidName).
func validTopic(topic string) bool {
	if topic == "" || len(topic) > maxTopicLen || topic == "." || topic == ".." {
		return false
	}
	for i := 0; i < len(topic); i++ {
		if !isNameByte(topic[i]) {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// lookup returns subject's grants, or nil if it has none.
func (p *Policy) lookup(subject string) *grants {
	if p == nil || subject == "" {
		return nil
	}
	if g, ok := p.subjects[subject]; ok {
		return g
	}
	if subject == Anonymous {
		return nil
	}
	return p.wildcard
}

// Allowed reports whether subject may perform action on topic. Topic ""
// means DefaultTopic; topic "*" means the cluster, as in AllowedCluster. A
// topic that is not a valid name is denied. Deny by default.
func (p *Policy) Allowed(subject, topic, action string) bool {
	g := p.lookup(subject)
	if g == nil {
		return false
	}
	bit := actionBit(action)
	if g.some&bit == 0 {
		return false
	}
	switch {
	case g.all&bit != 0:
		return topic == "" || topic == "*" || validTopic(topic)
	case topic == "*":
		return false
	case topic == "":
		topic = DefaultTopic
	case !validTopic(topic):
		return false
	}
	return g.on(topic, bit)&bit != 0
}

// AllowedAny reports whether some rule lets subject perform action on
// some topic (or the cluster). The service asks it before reading a
// request body, and Allowed once the body named the topic.
func (p *Policy) AllowedAny(subject, action string) bool {
	g := p.lookup(subject)
	return g != nil && g.some&actionBit(action) != 0
}

// AllowedCluster reports whether subject may perform a cluster-wide action
// (one not about a single topic): only rules whose object is "*" grant it.
func (p *Policy) AllowedCluster(subject, action string) bool {
	g := p.lookup(subject)
	return g != nil && g.all&actionBit(action) != 0
}

// Actions lists the known actions subject may perform on some topic, in a
// fixed order (produce, consume, admin). It never returns nil.
func (p *Policy) Actions(subject string) []string {
	g := p.lookup(subject)
	if g == nil {
		return []string{}
	}
	return actionList(g.some)
}

// ActionsOn lists the known actions subject may perform on topic ("" is
// DefaultTopic, "*" the cluster), in the order of Actions. It never
// returns nil.
func (p *Policy) ActionsOn(subject, topic string) []string {
	g := p.lookup(subject)
	switch {
	case g == nil:
		return []string{}
	case topic == "*":
		return actionList(g.all)
	case topic == "":
		topic = DefaultTopic
	case !validTopic(topic):
		return []string{}
	}
	return actionList(g.on(topic, bitAll))
}

func actionList(m mask) []string {
	out := []string{}
	for _, a := range knownActions {
		if m&actionBit(a) != 0 {
			out = append(out, a)
		}
	}
	return out
}

// Len reports how many rules the policy holds.
func (p *Policy) Len() int {
	if p == nil {
		return 0
	}
	return len(p.rules)
}

// String returns the policy in canonical form: one rule a line, in the
// order parsed, "log" written "default" and runs of stars as one. Parsing
// it gives back an equivalent policy with the same String.
func (p *Policy) String() string {
	if p == nil {
		return ""
	}
	var b strings.Builder
	for _, r := range p.rules {
		fmt.Fprintf(&b, "p, %s, %s, %s\n", r.subject, r.object, r.action)
	}
	return b.String()
}
