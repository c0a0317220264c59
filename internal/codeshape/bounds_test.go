package codeshape

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	maxFields    = 20
	maxFuncLines = 100
	maxFileLines = 700
)

// known lists what broke a bound when the bound was set, to be reshaped: an entry that no longer
// breaks its bound fails the test until it is removed, so the list only shrinks.
var known = []string{}

// root is the module's root directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod in %s: %v", dir, err)
	}
	return dir
}

// violations walks the module's non-test Go files and returns every bound they break.
func violations(t *testing.T) []string {
	t.Helper()
	base := root(t)
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "bench" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if n := fset.File(f.Pos()).LineCount(); n > maxFileLines {
			out = append(out, "file "+rel)
		}
		pkg := filepath.ToSlash(filepath.Dir(rel))
		if strings.HasPrefix(rel, "cmd/pgstream/") {
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				blank := imp.Name != nil && imp.Name.Name == "_"
				if strings.HasPrefix(p, "github.com/pgstream/pgstream/sinks/") && !blank {
					out = append(out, fmt.Sprintf("import %s names sink package %s", rel, p))
				}
				if strings.HasPrefix(p, "github.com/pgstream/pgstream/checkpoint/") && !blank {
					out = append(out, fmt.Sprintf("import %s names checkpoint store package %s", rel, p))
				}
			}
		}
		if !strings.HasPrefix(rel, "internal/") && !strings.HasPrefix(rel, "cmd/") {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.TypeSpec:
				if st, ok := n.Type.(*ast.StructType); ok {
					fields := 0
					for _, fl := range st.Fields.List {
						fields += max(1, len(fl.Names))
					}
					if fields > maxFields {
						out = append(out, fmt.Sprintf("struct %s.%s", pkg, n.Name.Name))
					}
				}
			case *ast.FuncDecl:
				if n.Body != nil {
					lines := fset.Position(n.Body.Rbrace).Line - fset.Position(n.Pos()).Line + 1
					if lines > maxFuncLines {
						out = append(out, fmt.Sprintf("func %s.%s", pkg, n.Name.Name))
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBounds(t *testing.T) {
	got := violations(t)
	for _, v := range got {
		if !slices.Contains(known, v) {
			t.Errorf("%s breaks its bound (structs ≤ %d fields and functions ≤ %d lines in internal/ and cmd/, files ≤ %d lines, cmd/pgstream imports sinks and checkpoint stores only blank): reshape the code first",
				v, maxFields, maxFuncLines, maxFileLines)
		}
	}
	for _, k := range known {
		if !slices.Contains(got, k) {
			t.Errorf("%s keeps its bound now: remove it from the known list", k)
		}
	}
}
