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
			files, err := filepath.Glob(filepath.Join(path, "*.go"))
			if err != nil {
				return err
			}
			name, documented := "", false
			for _, file := range files {
				if strings.HasSuffix(file, "_test.go") {
					continue
				}
				f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments|parser.PackageClauseOnly)
				if err != nil {
					return err
				}
				name = f.Name.Name
				if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
					documented = true
				}
			}
			if name != "" && !documented {
				t.Errorf("package %s (%s) has no doc comment", name, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
