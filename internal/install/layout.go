package install

import (
	"io/fs"
	"path"
	"strings"
)

// ModuleLayout is where an fs.FS holds a Python module (FindModule), for
// the error of a module that did not import. Paths are the FS's.
type ModuleLayout struct {
	// File is the module's file below the root: "m.py" or
	// "m/__init__.py" under it; "" when there is none.
	File string
	// Initless is the module's directory below the root when it has no
	// __init__.py (//go:embed without all: skips it); "".
	Initless string
	// Elsewhere is the module's file, or its directory without
	// __init__.py, found outside the root; "" when there is none.
	Elsewhere string
	// ElsewhereRoot is the directory that holds Elsewhere's module: the
	// root that would find it ("." for the FS's top).
	ElsewhereRoot string
}

// maxLayoutDirs bounds how many directories FindModule looks in.
const maxLayoutDirs = 10000

// FindModule says where fsys holds module (dotted) as Python would look
// for it below root ("" for the FS's top), and, when not there, where
// else in fsys it is.
func FindModule(fsys fs.FS, root, module string) ModuleLayout {
	var l ModuleLayout
	rel := strings.ReplaceAll(module, ".", "/")
	top := path.Clean(root)
	if root == "" {
		top = "."
	}
	l.File, l.Initless = moduleAt(fsys, top, rel)
	if l.File != "" || l.Initless != "" {
		return l
	}
	dirs := 0
	fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if d.Name() == "__pycache__" || dirs >= maxLayoutDirs {
			return fs.SkipDir
		}
		dirs++
		if name == top {
			return nil
		}
		file, initless := moduleAt(fsys, name, rel)
		switch {
		case file != "":
			l.Elsewhere, l.ElsewhereRoot = file, name
			return fs.SkipAll
		case initless != "" && l.Elsewhere == "":
			l.Elsewhere, l.ElsewhereRoot = initless, name
		}
		return nil
	})
	return l
}

// moduleAt is module rel's file in dir (rel.py, rel/__init__.py), or its
// directory when it has no __init__.py.
func moduleAt(fsys fs.FS, dir, rel string) (file, initless string) {
	for _, name := range []string{rel + ".py", rel + "/__init__.py"} {
		if info, err := fs.Stat(fsys, path.Join(dir, name)); err == nil && !info.IsDir() {
			return path.Join(dir, name), ""
		}
	}
	if info, err := fs.Stat(fsys, path.Join(dir, rel)); err == nil && info.IsDir() {
		return "", path.Join(dir, rel)
	}
	return "", ""
}
