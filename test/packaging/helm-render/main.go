// helm-render renders a Helm chart the way `helm template` does, for tests on machines without
// the helm binary. The template language is Go's text/template with the sprig functions, which
// is Helm's own engine; this program adds only what Helm adds on top: the built-in objects
// (.Values, .Release, .Chart, .Capabilities, .Template), the functions include, tpl, required,
// toYaml, fromYaml, toJson, fromJson and lookup, values coalescing for dependencies, and the
// Chart.yaml kubeVersion check.
//
// Usage: helm-render [-f values.yaml]... [--kube-version 1.30.0] [--release NAME] [--namespace NS] CHART_DIR
// Output (stdout): {"manifests": {"<chart>/templates/<file>": "<yaml>"}, "notes": "<NOTES.txt>"}.
// A render error (a `fail`, a `required`, a bad template) goes to stderr with exit status 1.
//
// Built in GOPATH mode against the Debian packages golang-go and
// golang-github-masterminds-sprig-dev (see test/packaging/helm-chart.test.ts).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	semver "github.com/Masterminds/semver"
	sprig "github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v3"
)

type chart struct {
	name     string
	path     string // template path prefix: "app" or "app/charts/sub"
	metadata map[string]interface{}
	values   map[string]interface{}
	files    map[string]string // template name -> text
	deps     []*chart
}

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func main() {
	var files valueFiles
	flag.Var(&files, "f", "values file (repeatable, later wins)")
	kubeVersion := flag.String("kube-version", "1.30.0", "Kubernetes version for .Capabilities and the kubeVersion check")
	release := flag.String("release", "release-name", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	flag.Parse()
	if flag.NArg() != 1 {
		fail(errors.New("usage: helm-render [-f values.yaml]... CHART_DIR"))
	}
	out, err := render(flag.Arg(0), files, *kubeVersion, *release, *namespace)
	if err != nil {
		fail(err)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err.Error())
	os.Exit(1)
}

func render(dir string, files []string, kubeVersion, releaseName, namespace string) (map[string]interface{}, error) {
	top, err := loadChart(dir, "")
	if err != nil {
		return nil, err
	}
	user := map[string]interface{}{}
	for _, f := range files {
		v, err := readYaml(f)
		if err != nil {
			return nil, err
		}
		user = merge(user, v)
	}
	values := coalesce(top, user)

	kv, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return nil, err
	}
	if err := checkKubeVersion(top, kv); err != nil {
		return nil, err
	}
	capabilities := map[string]interface{}{
		"KubeVersion": map[string]interface{}{"Version": "v" + kv.String(), "Major": fmt.Sprint(kv.Major()), "Minor": fmt.Sprint(kv.Minor()), "GitVersion": "v" + kv.String()},
		"APIVersions": []string{},
	}
	releaseObj := map[string]interface{}{"Name": releaseName, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1}

	t := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	includeDepth := map[string]int{}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includeDepth[name] > 100 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includeDepth[name]++
		defer func() { includeDepth[name]-- }()
		var b strings.Builder
		if err := t.ExecuteTemplate(&b, name, data); err != nil {
			return "", err
		}
		return b.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		parsed, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		if err := parsed.Execute(&b, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(b.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(message string, value interface{}) (interface{}, error) {
		if value == nil {
			return nil, errors.New(message)
		}
		if s, ok := value.(string); ok && s == "" {
			return nil, errors.New(message)
		}
		return value, nil
	}
	funcs["toYaml"] = func(v interface{}) string {
		s, err := toYaml(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(s, "\n")
	}
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := unmarshalYaml([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	t.Funcs(funcs)

	// Every template of every chart goes into one set, so named templates are shared, as in Helm.
	type job struct {
		name string
		data map[string]interface{}
	}
	var jobs []job
	var notes string
	var notesJob *job
	var walk func(c *chart, scope map[string]interface{}) error
	walk = func(c *chart, scope map[string]interface{}) error {
		names := make([]string, 0, len(c.files))
		for name := range c.files {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if _, err := t.New(name).Parse(c.files[name]); err != nil {
				return err
			}
			data := map[string]interface{}{
				"Values":       scope,
				"Release":      releaseObj,
				"Chart":        chartObject(c.metadata),
				"Capabilities": capabilities,
				"Template":     map[string]interface{}{"Name": name, "BasePath": c.path + "/templates"},
			}
			base := filepath.Base(name)
			if base == "NOTES.txt" {
				if c == top {
					notesJob = &job{name, data}
				}
				continue
			}
			if strings.HasPrefix(base, "_") {
				continue
			}
			jobs = append(jobs, job{name, data})
		}
		for _, d := range c.deps {
			sub, _ := scope[d.name].(map[string]interface{})
			if err := walk(d, sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(top, values); err != nil {
		return nil, err
	}

	manifests := map[string]string{}
	for _, j := range jobs {
		var b strings.Builder
		if err := t.ExecuteTemplate(&b, j.name, j.data); err != nil {
			return nil, cleanError(err)
		}
		// Like helm template, a file that renders to nothing is left out.
		if text := strings.ReplaceAll(b.String(), "<no value>", ""); strings.TrimSpace(text) != "" {
			manifests[j.name] = text
		}
	}
	if notesJob != nil {
		var b strings.Builder
		if err := t.ExecuteTemplate(&b, notesJob.name, notesJob.data); err != nil {
			return nil, cleanError(err)
		}
		notes = strings.ReplaceAll(b.String(), "<no value>", "")
	}
	return map[string]interface{}{"manifests": manifests, "notes": notes}, nil
}

// cleanError keeps the message of a `fail` or `required` (Helm prints it after the template
// position, as "...: error calling fail: <message>").
func cleanError(err error) error {
	msg := err.Error()
	for _, marker := range []string{"error calling fail: ", "error calling required: ", "error calling include: "} {
		if i := strings.LastIndex(msg, marker); i >= 0 {
			return fmt.Errorf("%s\n(%s)", msg[i+len(marker):], msg)
		}
	}
	return err
}

func checkKubeVersion(c *chart, v *semver.Version) error {
	constraint, _ := c.metadata["kubeVersion"].(string)
	if constraint == "" {
		return nil
	}
	parsed, err := semver.NewConstraint(constraint)
	if err != nil {
		return fmt.Errorf("chart %s: kubeVersion %q is not a valid constraint: %v", c.name, constraint, err)
	}
	if !parsed.Check(v) {
		return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes v%s", constraint, v.String())
	}
	return nil
}

// chartObject is .Chart: Chart.yaml with Helm's capitalised field names.
func chartObject(metadata map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range metadata {
		out[strings.ToUpper(k[:1])+k[1:]] = v
	}
	return out
}

func loadChart(dir, parentPath string) (*chart, error) {
	metadata, err := readYaml(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	name, _ := metadata["name"].(string)
	if name == "" {
		return nil, fmt.Errorf("%s: Chart.yaml has no name", dir)
	}
	c := &chart{name: name, metadata: metadata, files: map[string]string{}}
	c.path = name
	if parentPath != "" {
		c.path = parentPath + "/charts/" + name
	}
	if _, err := os.Stat(filepath.Join(dir, "values.yaml")); err == nil {
		if c.values, err = readYaml(filepath.Join(dir, "values.yaml")); err != nil {
			return nil, err
		}
	} else {
		c.values = map[string]interface{}{}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "templates"))
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		text, err := os.ReadFile(filepath.Join(dir, "templates", e.Name()))
		if err != nil {
			return nil, err
		}
		c.files[c.path+"/templates/"+e.Name()] = string(text)
	}
	// Dependencies: charts/<name> as Helm vendors them, or a file:// repository (what
	// `helm dependency build` would copy there).
	deps, _ := metadata["dependencies"].([]interface{})
	for _, raw := range deps {
		d, _ := raw.(map[string]interface{})
		depName, _ := d["name"].(string)
		repo, _ := d["repository"].(string)
		depDir := filepath.Join(dir, "charts", depName)
		if strings.HasPrefix(repo, "file://") {
			depDir = filepath.Join(dir, strings.TrimPrefix(repo, "file://"))
		}
		sub, err := loadChart(depDir, c.path)
		if err != nil {
			return nil, fmt.Errorf("dependency %s: %v", depName, err)
		}
		if alias, _ := d["alias"].(string); alias != "" {
			return nil, fmt.Errorf("dependency %s: aliases are not supported by this renderer", depName)
		}
		c.deps = append(c.deps, sub)
	}
	return c, nil
}

// coalesce is Helm's value precedence: the user's values over the chart's, and for each
// dependency, the parent's values under its name over the dependency's own values.yaml.
// Parent globals flow down to dependencies.
func coalesce(c *chart, user map[string]interface{}) map[string]interface{} {
	values := merge(deepCopy(c.values), user)
	for _, d := range c.deps {
		sub, _ := values[d.name].(map[string]interface{})
		if sub == nil {
			sub = map[string]interface{}{}
		}
		if global, ok := values["global"].(map[string]interface{}); ok {
			sub["global"] = merge(deepCopy(global), asMap(sub["global"]))
		}
		values[d.name] = coalesce(d, sub)
	}
	return values
}

func asMap(v interface{}) map[string]interface{} {
	m, _ := v.(map[string]interface{})
	if m == nil {
		return map[string]interface{}{}
	}
	return m
}

// merge copies src over dst, recursing into maps; a null in src deletes the key, as in Helm.
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
			dst[k] = deepCopy(sm)
			continue
		}
		dst[k] = v
	}
	return dst
}

func deepCopy(m map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range m {
		if sm, ok := v.(map[string]interface{}); ok {
			out[k] = deepCopy(sm)
		} else {
			out[k] = v
		}
	}
	return out
}

func readYaml(path string) (map[string]interface{}, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := unmarshalYaml(text, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return m, nil
}

// unmarshalYaml goes through JSON as Helm does (sigs.k8s.io/yaml), so numbers are float64 and
// maps are map[string]interface{}, exactly the types Helm's templates see.
func unmarshalYaml(text []byte, out *map[string]interface{}) error {
	var raw interface{}
	if err := yaml.Unmarshal(text, &raw); err != nil {
		return err
	}
	if raw == nil {
		return nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// toYaml marshals as Helm does: through JSON (keys sorted), then YAML with 2-space indents.
func toYaml(v interface{}) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	var normalized interface{}
	if err := json.Unmarshal(b, &normalized); err != nil {
		return "", err
	}
	var sb strings.Builder
	enc := yaml.NewEncoder(&sb)
	enc.SetIndent(2)
	if err := enc.Encode(normalized); err != nil {
		return "", err
	}
	return sb.String(), nil
}
