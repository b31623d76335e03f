// Command chartcheck lints and renders the proglog Helm chart with Helm's
// own Go packages (helm.sh/helm/v3's pkg/lint and pkg/engine: the code
// behind `helm lint` and `helm template`), so that CI checks the chart
// without building the helm CLI, whose Kubernetes client, registry and
// storage packages cost twice the compile time. It lives in a module of
// its own (deploy/chartcheck) so that Helm's dependencies stay out of
// proglog's go.mod.
//
//	chartcheck lint CHART [-f values.yaml]...       # helm lint --strict
//	chartcheck template CHART [-f values.yaml]... [--json] [--namespace NS] [--name RELEASE]
//
// template prints the rendered manifests as YAML documents, like helm
// template, or with --json as one JSON array of objects (what proglog's
// chart test reads: the main module has no YAML decoder).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "chartcheck: %v\n", err)
		os.Exit(1)
	}
}

// valueFiles is a repeatable -f flag.
type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func run(args []string, out io.Writer) error {
	if len(args) < 1 {
		return errors.New("usage: chartcheck lint|template CHART [-f values.yaml]... [--json] [--namespace NS] [--name RELEASE]")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("chartcheck "+cmd, flag.ContinueOnError)
	var files valueFiles
	fs.Var(&files, "f", "values file (repeatable; later files win)")
	asJSON := fs.Bool("json", false, "template: print one JSON array of the rendered objects")
	namespace := fs.String("namespace", "default", "namespace to render for")
	name := fs.String("name", "proglog", "release name")
	// The chart comes first, then the flags, as with helm.
	if len(args) < 2 || strings.HasPrefix(args[1], "-") {
		return fmt.Errorf("%s: want the chart directory first", cmd)
	}
	chartDir := args[1]
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", cmd, fs.Args())
	}
	vals := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return err
		}
		vals = mergeMaps(vals, v.AsMap())
	}
	switch cmd {
	case "lint":
		return lintChart(out, chartDir, *namespace, vals)
	case "template":
		return template(out, chartDir, *name, *namespace, vals, *asJSON)
	}
	return fmt.Errorf("unknown command %q: want lint or template", cmd)
}

// mergeMaps merges b into a as helm's -f does: maps merge key by key,
// anything else in b replaces what a has.
func mergeMaps(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bv, ok := v.(map[string]any); ok {
			if av, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(av, bv)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// lintChart is helm lint --strict: warnings fail too.
func lintChart(out io.Writer, chartDir, namespace string, vals map[string]any) error {
	linter := lint.AllWithKubeVersion(chartDir, vals, namespace, nil)
	var problems []string
	for _, m := range linter.Messages {
		fmt.Fprintln(out, m.Error())
		if m.Severity >= support.WarningSev {
			problems = append(problems, m.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("lint %s: %s", chartDir, strings.Join(problems, "; "))
	}
	fmt.Fprintf(out, "%s: linted, no warnings\n", chartDir)
	return nil
}

// template renders the chart as helm template does: client only (no
// cluster is asked anything, so lookup finds nothing), the default
// capabilities, NOTES.txt left out.
func template(out io.Writer, chartDir, name, namespace string, vals map[string]any, asJSON bool) error {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return err
	}
	if err := chartutil.ProcessDependenciesWithMerge(chrt, vals); err != nil {
		return err
	}
	opts := chartutil.ReleaseOptions{Name: name, Namespace: namespace, Revision: 1, IsInstall: true}
	top, err := chartutil.ToRenderValues(chrt, vals, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return err
	}
	files, err := engine.Render(chrt, top)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for f, text := range files {
		if strings.HasSuffix(f, "NOTES.txt") || strings.TrimSpace(text) == "" {
			continue
		}
		names = append(names, f)
	}
	sort.Strings(names)
	var manifest bytes.Buffer
	for _, f := range names {
		fmt.Fprintf(&manifest, "---\n# Source: %s\n%s\n", f, strings.TrimSpace(files[f]))
	}
	// Every document must parse, as helm template requires too.
	objs := []json.RawMessage{}
	for _, doc := range strings.Split(manifest.String(), "\n---") {
		j, err := yaml.YAMLToJSON([]byte(strings.TrimPrefix(doc, "---")))
		if err != nil {
			return fmt.Errorf("rendered YAML does not parse: %w\n%s", err, doc)
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "" {
			continue // a document of comments only
		}
		objs = append(objs, j)
	}
	if !asJSON {
		_, err := out.Write(manifest.Bytes())
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(objs)
}
