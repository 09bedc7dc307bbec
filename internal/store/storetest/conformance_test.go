package storetest

import "testing"

func TestConformance(t *testing.T) {
	Each(t, RunConformance)
}
