package storetest

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/world.json")

// The README's quickstart imports testdata/world.json; it must stay the World.
func TestWorldFileIsCurrent(t *testing.T) {
	want := append(WorldJSON(), '\n')
	if *update {
		if err := os.WriteFile("testdata/world.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("testdata/world.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("testdata/world.json is stale; run go test ./internal/store/storetest -run TestWorldFileIsCurrent -update")
	}
}
