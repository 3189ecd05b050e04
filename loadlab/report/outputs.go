package report

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Stdout is the output path that means standard output.
const Stdout = "-"

// Outputs says where a command's machine-readable reports go: a file
// path, Stdout, or "" for none. The text summary goes to standard output,
// or to standard error when a report takes standard output, so that
// `loadlab run --json - URL | jq` reads JSON only.
type Outputs struct {
	JSON, HTML string
}

// Check reports, before anything is measured, an output that could not
// be written at the end: a missing or read-only directory, a path that is
// a directory, both reports on standard output.
func (o Outputs) Check() error {
	if o.JSON == Stdout && o.HTML == Stdout {
		return errors.New("--json and --html cannot both be - (standard output)")
	}
	if o.JSON != "" && o.JSON != Stdout && filepath.Clean(o.JSON) == filepath.Clean(o.HTML) {
		return fmt.Errorf("--json and --html both write %s", o.JSON)
	}
	for _, out := range o.each() {
		if out.path == Stdout {
			continue
		}
		if err := checkWritable(out.path); err != nil {
			return fmt.Errorf("--%s %s: %w", out.format, out.path, err)
		}
	}
	return nil
}

// checkWritable tells whether path can be created or overwritten, without
// touching a file already there.
func checkWritable(path string) error {
	if info, err := os.Stat(path); err == nil {
		if info.IsDir() {
			return errors.New("is a directory; give a file name")
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("cannot be overwritten: %w", unwrapPath(err))
		}
		return f.Close()
	}
	dir := filepath.Dir(path)
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("directory %s does not exist", dir)
	case err != nil:
		return unwrapPath(err)
	case !info.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	probe, err := os.CreateTemp(dir, ".loadlab-check-*")
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, unwrapPath(err))
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// unwrapPath drops the path an *os.PathError repeats.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Human is where the text summary goes: stdout, unless a report takes it.
func (o Outputs) Human(stdout, stderr io.Writer) io.Writer {
	if o.JSON == Stdout || o.HTML == Stdout {
		return stderr
	}
	return stdout
}

type output struct {
	format Format
	path   string
}

func (o Outputs) each() []output {
	var out []output
	if o.JSON != "" {
		out = append(out, output{JSON, o.JSON})
	}
	if o.HTML != "" {
		out = append(out, output{HTML, o.HTML})
	}
	return out
}

// Write writes each report asked for: write is called with its Reporter
// and its destination, a file or stdout.
func (o Outputs) Write(stdout io.Writer, write func(Reporter, io.Writer) error) error {
	for _, out := range o.each() {
		rep, err := For(out.format)
		if err != nil {
			return err
		}
		if out.path == Stdout {
			if err := write(rep, stdout); err != nil {
				return fmt.Errorf("--%s -: %w", out.format, err)
			}
			continue
		}
		if err := writeFile(out.path, func(w io.Writer) error { return write(rep, w) }); err != nil {
			return fmt.Errorf("--%s %s: %w", out.format, out.path, err)
		}
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return unwrapPath(err)
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
