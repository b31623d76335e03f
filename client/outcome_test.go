package client

import (
	"testing"

	"github.com/proglog/proglog/service"
)

// The client repeats the server's append-outcome names rather than import
// the server; they must not drift apart.
func TestAppendOutcomeNamesMatchTheServer(t *testing.T) {
	for _, c := range []struct{ client, server string }{
		{appendOutcomeHeader, service.AppendOutcomeHeader},
		{appendOutcomeNotApplied, service.AppendOutcomeNotApplied},
		{appendOutcomeUnknown, service.AppendOutcomeUnknown},
	} {
		if c.client != c.server {
			t.Errorf("client uses %q, server %q", c.client, c.server)
		}
	}
}
