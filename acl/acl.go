// Package acl decides which subject may perform which action on the log,
// from a small casbin-like CSV policy file that can be reloaded at run time.
//
// The format is one rule a line:
//
//	p, <subject>, <object>, <action>
//
// subject is a certificate Common Name, "anonymous" (callers without a
// verified certificate), or "*" (any authenticated subject, never
// anonymous). object is "*" or "log". action is "produce", "consume",
// "admin" or "*". Everything after a '#' is a comment; blank lines are
// ignored. Anything not allowed by a rule is denied.
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

// knownActions lists every action a rule can name, in report order.
var knownActions = [...]string{ActionProduce, ActionConsume, ActionAdmin}

// maxLineBytes bounds one policy line so a garbage file cannot make the
// parser buffer without limit.
const maxLineBytes = 4096

// ErrInvalid is returned (wrapped, naming the line) when a policy does not
// parse. The previous policy stays in force when a reload fails with it.
var ErrInvalid = errors.New("acl: invalid policy")

// rule is one parsed "p" line.
type rule struct {
	subject string // a CN, "anonymous" or "*"
	action  string // one of knownActions or "*"
}

// Policy is an immutable, parsed set of rules. The zero value and a nil
// *Policy deny everything.
type Policy struct {
	rules []rule
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
	p := &Policy{}
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
		rl, err := parseRule(text)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %s", ErrInvalid, line, err)
		}
		p.rules = append(p.rules, rl)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrInvalid, line+1, maxLineBytes)
		}
		return nil, fmt.Errorf("acl: read policy: %w", err)
	}
	return p, nil
}

// parseRule parses one non-blank, comment-free line.
func parseRule(text string) (rule, error) {
	fields := strings.Split(text, ",")
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	if fields[0] != "p" {
		return rule{}, fmt.Errorf("rule type %q: want \"p\"", fields[0])
	}
	if len(fields) != 4 {
		return rule{}, fmt.Errorf("want 4 fields \"p, subject, object, action\", got %d", len(fields))
	}
	subject, object, action := fields[1], fields[2], fields[3]
	if subject == "" {
		return rule{}, errors.New("empty subject")
	}
	if strings.ContainsFunc(subject, isControl) {
		return rule{}, fmt.Errorf("subject %q contains control characters", subject)
	}
	if object != "*" && object != "log" {
		return rule{}, fmt.Errorf("object %q: want \"log\" or \"*\"", object)
	}
	if action != "*" && !slices.Contains(knownActions[:], action) {
		return rule{}, fmt.Errorf("action %q: want one of %s or \"*\"", action, strings.Join(knownActions[:], ", "))
	}
	return rule{subject: subject, action: action}, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Allowed reports whether subject may perform action. Deny by default.
func (p *Policy) Allowed(subject, action string) bool {
	if p == nil || subject == "" {
		return false
	}
	for _, r := range p.rules {
		if r.matchesSubject(subject) && (r.action == "*" || r.action == action) {
			return true
		}
	}
	return false
}

// Actions lists the known actions subject may perform, in a fixed order
// (produce, consume, admin). It never returns nil.
func (p *Policy) Actions(subject string) []string {
	out := []string{}
	for _, a := range knownActions {
		if p.Allowed(subject, a) {
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

func (r rule) matchesSubject(subject string) bool {
	if r.subject == "*" {
		return subject != Anonymous
	}
	return r.subject == subject
}
