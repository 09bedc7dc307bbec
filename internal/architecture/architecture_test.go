// Package architecture_test holds the rules of stackbill's layout that the
// compiler does not check: every package says what it owns, domain packages
// stay off HTTP, and only httpapi and portal choose an HTTP status.
package architecture_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// pkg is one package's non-test source.
type pkg struct {
	dir, name string
	files     map[string]*ast.File // base name → file
	fset      *token.FileSet
}

// packages parses every package of the module, test files left out.
func packages(t *testing.T) []pkg {
	t.Helper()
	root := filepath.Join("..", "..")
	var out []pkg
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		fset := token.NewFileSet()
		parsed, err := parser.ParseDir(fset, path, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
		if err != nil {
			return err
		}
		for name, p := range parsed {
			files := map[string]*ast.File{}
			for fn, f := range p.Files {
				files[filepath.Base(fn)] = f
			}
			rel, _ := filepath.Rel(root, path)
			out = append(out, pkg{dir: filepath.ToSlash(rel), name: name, files: files, fset: fset})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 20 {
		t.Fatalf("found %d packages; the walk is not looking at the module", len(out))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dir < out[j].dir })
	return out
}

// TestEveryPackageSaysWhatItOwns: a package's doc comment exists, starts
// with its name as godoc expects, and is more than a label; and no package
// is a util or common drawer.
func TestEveryPackageSaysWhatItOwns(t *testing.T) {
	for _, p := range packages(t) {
		var doc string
		for _, f := range p.files {
			if f.Doc != nil {
				doc += f.Doc.Text()
			}
		}
		want := "Package " + p.name + " "
		if p.name == "main" {
			want = "Command " + filepath.Base(p.dir) + " "
		}
		switch strings.ToLower(filepath.Base(p.dir)) {
		case "util", "utils", "common", "helpers", "shared", "base", "misc":
			t.Errorf("%s: the package's name says nothing about what it provides", p.dir)
		}
		switch {
		case doc == "":
			t.Errorf("%s: no package doc comment", p.dir)
		case !strings.HasPrefix(doc, want):
			t.Errorf("%s: the doc comment starts %.40q, want %q", p.dir, doc, want)
		case len(strings.Fields(doc)) < 15:
			t.Errorf("%s: the doc comment is %d words; say what the package owns", p.dir, len(strings.Fields(doc)))
		}
	}
}

// httpAllowed are the packages that serve HTTP (or speak its protocol), and
// the files of domain packages that are HTTP clients of another stackbill
// service.
var httpAllowed = map[string]string{
	"internal/httpapi":              "serves every route",
	"internal/portal":               "serves the portal's pages",
	"internal/arm":                  "the ARM protocol: envelope, paths, nextLinks",
	"internal/cli":                  "serve, and the CLI's client of the API",
	"internal/e2e":                  "test support: real processes, proxies, the tests' HTTP helper",
	"internal/bench":                "drives the API over loopback HTTP, as clients do",
	"internal/simulate/reporter.go": "the resource providers' client of a stack's intake",
	"internal/bridge/forward.go":    "the stack's client of commerce's usage endpoint",
	"internal/directory/remote.go":  "commerce's client of a remote directory",
	"internal/notify/send.go":       "commerce's client of partners' webhook receivers",
	"internal/demo/receiver.go":     "the demo's webhook receiver, a partner's server",
}

func allowed(dir, file string) bool {
	_, ok := httpAllowed[dir]
	_, fok := httpAllowed[dir+"/"+file]
	return ok || fok
}

// TestDomainPackagesStayOffHTTP: no domain package imports net/http, except
// a file that is an HTTP client of another service.
func TestDomainPackagesStayOffHTTP(t *testing.T) {
	for _, p := range packages(t) {
		for fn, f := range p.files {
			for _, im := range f.Imports {
				if path, _ := strconv.Unquote(im.Path.Value); path == "net/http" && !allowed(p.dir, fn) {
					t.Errorf("%s/%s imports net/http: return an *arm.Error with a kind and let httpapi choose the status", p.dir, fn)
				}
			}
		}
	}
}

// TestOnlyHTTPAPIAndPortalChooseAStatus: outside httpapi and portal, an
// http.Status constant may only be compared with a status received (a
// client reading a response), never written, returned or passed on.
func TestOnlyHTTPAPIAndPortalChooseAStatus(t *testing.T) {
	// e2e is test support: its fault proxy answers errors on purpose. The
	// demo's webhook receiver stands for a partner's server, not stackbill's.
	choosers := map[string]bool{"internal/httpapi": true, "internal/portal": true, "internal/e2e": true, "internal/demo/receiver.go": true}
	for _, p := range packages(t) {
		if choosers[p.dir] {
			continue
		}
		for fn, f := range p.files {
			if choosers[p.dir+"/"+fn] {
				continue
			}
			var stack []ast.Node
			ast.Inspect(f, func(n ast.Node) bool {
				if n == nil {
					stack = stack[:len(stack)-1]
					return true
				}
				defer func() { stack = append(stack, n) }()
				switch x := n.(type) {
				case *ast.SelectorExpr:
					id, ok := x.X.(*ast.Ident)
					if !ok || id.Name != "http" || !strings.HasPrefix(x.Sel.Name, "Status") || x.Sel.Name == "StatusText" {
						return true
					}
					if reads(stack) {
						return true
					}
					t.Errorf("%s/%s:%d: chooses http.%s; return an error kind instead", p.dir, fn, p.fset.Position(x.Pos()).Line, x.Sel.Name)
				case *ast.CallExpr:
					if sel, ok := x.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "WriteHeader" || sel.Sel.Name == "WriteJSON") {
						t.Errorf("%s/%s:%d: writes an HTTP status (%s)", p.dir, fn, p.fset.Position(x.Pos()).Line, sel.Sel.Name)
					}
				}
				return true
			})
		}
	}
}

// reads holds when the innermost enclosing node compares a status: a == or
// != expression, or a case of a switch.
func reads(stack []ast.Node) bool {
	if len(stack) == 0 {
		return false
	}
	switch x := stack[len(stack)-1].(type) {
	case *ast.BinaryExpr:
		return x.Op == token.EQL || x.Op == token.NEQ
	case *ast.CaseClause:
		return true
	}
	return false
}

// TestBridgeSidesShareOnlyTheWire: the stack's side of the bridge and
// commerce's ingestion are built, deployed and changed apart; what one may
// assume of the other is the batch format in package wire, nothing else.
func TestBridgeSidesShareOnlyTheWire(t *testing.T) {
	const mod = "github.com/stackbill/stackbill/"
	forbidden := map[string][]string{
		"internal/bridge": {mod + "internal/ingest", mod + "internal/ledger", mod + "internal/billing"},
		"internal/ingest": {mod + "internal/bridge"},
		"internal/wire":   {mod + "internal/bridge", mod + "internal/ingest", mod + "internal/ledger"},
	}
	checked := 0
	for _, p := range packages(t) {
		deny, ok := forbidden[p.dir]
		if !ok {
			continue
		}
		checked++
		for fn, f := range p.files {
			for _, im := range f.Imports {
				if path, _ := strconv.Unquote(im.Path.Value); slices.Contains(deny, path) {
					t.Errorf("%s/%s imports %s: the bridge's two sides share only package wire", p.dir, fn, path)
				}
			}
		}
	}
	if checked != len(forbidden) {
		t.Fatalf("found %d of the %d packages", checked, len(forbidden))
	}
}
