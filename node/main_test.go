package node_test

import (
	"testing"

	"github.com/proglog/proglog/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
