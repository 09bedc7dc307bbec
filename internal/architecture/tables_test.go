package architecture_test

import (
	"go/ast"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// createTable finds each table a migration creates.
var createTable = regexp.MustCompile(`(?i)create\s+table\s+(?:if\s+not\s+exists\s+)?([a-z_][a-z0-9_]*)`)

// tables lists every table the migrations of both engines create.
func tables(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, engine := range []string{"sqlite", "postgres"} {
		dir := filepath.Join("..", "store", "migrations", engine)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range createTable.FindAllStringSubmatch(string(b), -1) {
				out[strings.ToLower(m[1])] = true
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("found %d tables in the migrations", len(out))
	}
	return out
}

// sqlNames finds the names a statement reads or writes: what follows FROM,
// JOIN, INTO, UPDATE, TABLE (and TRUNCATE, COPY).
var sqlNames = regexp.MustCompile(`(?i)\b(?:from|join|into|update|table|truncate|copy)\s+(?:only\s+|if\s+(?:not\s+)?exists\s+)?([a-z_][a-z0-9_]*)`)

func TestTablesHaveOneOwner(t *testing.T) {
	known := tables(t)
	users := map[string]map[string][]string{} // table → package → positions
	for _, p := range packages(t) {
		for _, f := range p.files {
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					return true
				}
				for _, m := range sqlNames.FindAllStringSubmatch(s, -1) {
					name := strings.ToLower(m[1])
					if !known[name] {
						continue
					}
					if users[name] == nil {
						users[name] = map[string][]string{}
					}
					users[name][p.dir] = append(users[name][p.dir], p.fset.Position(lit.Pos()).String())
				}
				return true
			})
		}
	}
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var dirs []string
		for d := range users[n] {
			dirs = append(dirs, d)
		}
		sort.Strings(dirs)
		t.Logf("%s: %v", n, dirs)
		if len(dirs) > 1 {
			for _, d := range dirs {
				t.Logf("   %s: %v", d, users[n][d])
			}
		}
	}
}
