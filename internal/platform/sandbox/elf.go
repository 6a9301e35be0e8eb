package sandbox

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Program returns the mounts a dynamically linked ELF program needs: the
// program itself (by its real path, which is the path to run inside), its
// interpreter and every shared library it loads, each bound read-only and
// executable at the path the loader looks for it. Nothing else of the
// library directories is bound.
func Program(path string) (inside string, mounts []Mount, err error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", nil, err
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", nil, err
	}
	seen := map[string]bool{}
	add := func(target string) error {
		if seen[target] {
			return nil
		}
		seen[target] = true
		src, err := filepath.EvalSymlinks(target)
		if err != nil {
			return err
		}
		mounts = append(mounts, Mount{Source: src, Target: target, Exec: true})
		return nil
	}
	if err := add(real); err != nil {
		return "", nil, err
	}
	dirs := libraryDirs()
	queue := []string{real}
	for len(queue) > 0 {
		file := queue[0]
		queue = queue[1:]
		f, err := elf.Open(file)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", file, err)
		}
		interp, needed, search, err := dynamicInfo(f, filepath.Dir(file))
		f.Close()
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", file, err)
		}
		if interp != "" {
			if err := add(interp); err != nil {
				return "", nil, fmt.Errorf("interpreter %s: %w", interp, err)
			}
		}
		for _, lib := range needed {
			p, err := findLibrary(lib, append(search, dirs...))
			if err != nil {
				return "", nil, fmt.Errorf("%s needs %s: %w", file, lib, err)
			}
			if seen[p] {
				continue
			}
			if err := add(p); err != nil {
				return "", nil, err
			}
			queue = append(queue, p)
		}
	}
	return real, mounts, nil
}

// dynamicInfo returns an ELF file's interpreter, needed libraries and
// RPATH/RUNPATH directories ($ORIGIN expanded).
func dynamicInfo(f *elf.File, origin string) (interp string, needed, search []string, err error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", nil, nil, err
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		if errors.Is(err, elf.ErrNoSymbols) {
			return interp, nil, nil, nil
		}
		return "", nil, nil, err
	}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
				if filepath.IsAbs(d) {
					search = append(search, d)
				}
			}
		}
	}
	return interp, needed, search, nil
}

func findLibrary(name string, dirs []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(dirs, ":"))
}

// libraryDirs are the loader's directories: /etc/ld.so.conf (and what it
// includes), then the usual system directories.
func libraryDirs() []string {
	var dirs []string
	seen := map[string]bool{}
	var read func(file string, depth int)
	read = func(file string, depth int) {
		f, err := os.Open(file)
		if err != nil || depth > 4 {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(strings.SplitN(sc.Text(), "#", 2)[0])
			switch {
			case line == "":
			case strings.HasPrefix(line, "include "):
				pat := strings.TrimSpace(strings.TrimPrefix(line, "include "))
				if !filepath.IsAbs(pat) {
					pat = filepath.Join(filepath.Dir(file), pat)
				}
				matches, _ := filepath.Glob(pat)
				for _, m := range matches {
					read(m, depth+1)
				}
			case filepath.IsAbs(line) && !seen[line]:
				seen[line] = true
				dirs = append(dirs, line)
			}
		}
	}
	read("/etc/ld.so.conf", 0)
	for _, d := range []string{"/lib64", "/usr/lib64", "/lib", "/usr/lib"} {
		if !seen[d] {
			dirs = append(dirs, d)
		}
	}
	return dirs
}
