package cli

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryPackageHasADocComment keeps the rule that each package says what
// it provides, and that there are no util or common packages.
func TestEveryPackageHasADocComment(t *testing.T) {
	t.Parallel()
	roots := []string{"../../internal", "../../cmd"}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() || d.Name() == "testdata" || d.Name() == "migrations" {
				return err
			}
			switch strings.ToLower(d.Name()) {
			case "util", "utils", "common", "helpers", "shared", "base":
				t.Errorf("%s: package name says nothing about what it provides", path)
			}
			pkgs, err := parser.ParseDir(token.NewFileSet(), path, func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				return err
			}
			for name, p := range pkgs {
				documented := false
				for _, f := range p.Files {
					if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
						documented = true
					}
				}
				if !documented {
					t.Errorf("package %s (%s) has no doc comment", name, path)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
