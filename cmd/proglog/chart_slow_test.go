//go:build slow

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/proglog/proglog/internal/slowtest"
)

// TestChartServeFlags renders the Helm chart (deploy/helm/proglog) with
// each of its ci/ value sets and checks what the StatefulSet makes each
// pod run against this package's serve command: every argument parses as
// serve's flags (no unknown flag, no bad value), every PROGLOG_ variable
// and every setting of the per-pod config files names a flag, and the
// config file each pod is pointed at exists. Renaming or removing a flag
// the chart passes fails it.
func TestChartServeFlags(t *testing.T) {
	chartcheck := chartcheckBinary(t)
	chart := filepath.Join("..", "..", "deploy", "helm", "proglog")
	valueSets, err := filepath.Glob(filepath.Join(chart, "ci", "*.yaml"))
	if err != nil || len(valueSets) == 0 {
		t.Fatalf("no value sets in %s/ci: %v", chart, err)
	}
	for _, values := range valueSets {
		t.Run(strings.TrimSuffix(filepath.Base(values), ".yaml"), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(chartcheck, "template", chart, "-f", values, "--json", "--namespace", "logs")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("chartcheck template: %v\n%s", err, stderr.Bytes())
			}
			var objs []k8sObject
			if err := json.Unmarshal(stdout.Bytes(), &objs); err != nil {
				t.Fatalf("decoding the rendered chart: %v", err)
			}
			checkChartServe(t, objs)
		})
	}
}

// chartcheckBinary finds deploy/chartcheck's binary, which make setup
// builds into .tmp/bin (on the PATH of make's recipes).
func chartcheckBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chartcheck"); err == nil {
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", "..", ".tmp", "bin", "chartcheck"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		slowtest.Unavailable(t, "chartcheck not built (make setup builds it into .tmp/bin): %v", err)
	}
	return p
}

// k8sObject is what the test reads of a rendered object.
type k8sObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
	Spec struct {
		Replicas *int `json:"replicas"`
		Template struct {
			Spec struct {
				Containers []k8sContainer `json:"containers"`
				Volumes    []k8sVolume    `json:"volumes"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type k8sContainer struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
	Env     []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `json:"fieldPath"`
			} `json:"fieldRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	VolumeMounts   []k8sVolumeMount `json:"volumeMounts"`
	StartupProbe   *k8sProbe        `json:"startupProbe"`
	LivenessProbe  *k8sProbe        `json:"livenessProbe"`
	ReadinessProbe *k8sProbe        `json:"readinessProbe"`
}

type k8sProbe struct {
	Exec *struct {
		Command []string `json:"command"`
	} `json:"exec"`
}

type k8sVolume struct {
	Name      string `json:"name"`
	ConfigMap *struct {
		Name string `json:"name"`
	} `json:"configMap"`
}

type k8sVolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

func checkChartServe(t *testing.T, objs []k8sObject) {
	t.Helper()
	configMaps := map[string]map[string]string{}
	var sts *k8sObject
	for i, o := range objs {
		switch o.Kind {
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o.Data
		case "StatefulSet":
			if sts != nil {
				t.Fatalf("two StatefulSets: %s and %s", sts.Metadata.Name, o.Metadata.Name)
			}
			sts = &objs[i]
		}
	}
	if sts == nil {
		t.Fatal("no StatefulSet rendered")
	}
	pod := sts.Spec.Template.Spec
	var found bool
	for _, c := range pod.Containers {
		if c.Name != "proglog" {
			continue
		}
		found = true
		if len(c.Command) > 0 {
			t.Errorf("command %q: the image's entrypoint is proglog; the chart should pass args only", c.Command)
		}
		if len(c.Args) == 0 || c.Args[0] != "serve" {
			t.Fatalf("args %q: want serve and its flags", c.Args)
		}
		// The probes exec proglog health: its flags must exist too.
		for name, p := range map[string]*k8sProbe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			if p == nil || p.Exec == nil {
				t.Errorf("%s probe: want an exec probe running proglog health", name)
				continue
			}
			cmd := p.Exec.Command
			if len(cmd) < 2 || cmd[0] != "/usr/local/bin/proglog" || cmd[1] != "health" {
				t.Errorf("%s probe runs %q, want /usr/local/bin/proglog health", name, cmd)
				continue
			}
			checkFlagArgs(t, chartCmd(t, "health"), cmd[2:])
		}
		replicas := 1
		if sts.Spec.Replicas != nil {
			replicas = *sts.Spec.Replicas
		}
		for i := range replicas {
			podName := fmt.Sprintf("%s-%d", sts.Metadata.Name, i)
			env := map[string]string{}
			for _, e := range c.Env {
				switch {
				case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
					env[e.Name] = podName
				case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
					env[e.Name] = fmt.Sprintf("10.1.0.%d", i+1)
				case e.ValueFrom == nil:
					env[e.Name] = e.Value
				}
			}
			args := make([]string, len(c.Args)-1)
			for j, a := range c.Args[1:] {
				args[j] = expandKubeVars(a, env)
			}
			serve := chartCmd(t, "serve")
			checkFlagArgs(t, serve, args)

			// The config file the pod reads, from the ConfigMap mounted
			// over its directory.
			configPath := serve.Flags().Lookup("config").Value.String()
			if configPath == "" {
				continue
			}
			data, ok := mountedConfigMap(pod.Volumes, c.VolumeMounts, path.Dir(configPath), configMaps)
			if !ok {
				t.Errorf("%s: --config %s: no ConfigMap rendered for %s", podName, configPath, path.Dir(configPath))
				continue
			}
			text, ok := data[path.Base(configPath)]
			if !ok {
				t.Errorf("%s: --config %s: the ConfigMap has no key %s", podName, configPath, path.Base(configPath))
				continue
			}
			settings, err := parseConfig(strings.NewReader(text))
			if err != nil {
				t.Errorf("%s: config file: %v\n%s", podName, err, text)
				continue
			}
			for name, v := range settings {
				f := serve.Flags().Lookup(name)
				if f == nil {
					t.Errorf("%s: config file sets %q, which serve has no flag for", podName, name)
				} else if err := f.Value.Set(v.value); err != nil {
					t.Errorf("%s: config file: %s = %q: %v", podName, name, v.value, err)
				}
			}
			for name, v := range env {
				if !strings.HasPrefix(name, "PROGLOG_") {
					continue
				}
				f := flagForEnv(serve, name)
				if f == nil {
					t.Errorf("%s: environment %s names no flag of serve", podName, name)
				} else if err := f.Value.Set(v); err != nil {
					t.Errorf("%s: environment %s=%q: %v", podName, name, v, err)
				}
			}
		}
	}
	if !found {
		t.Fatal("the StatefulSet has no container named proglog")
	}
}

// chartCmd is the command name (serve, health) as proglog builds it, with
// the root's persistent flags (--config) merged into its flag set.
func chartCmd(t *testing.T, name string) *cobra.Command {
	t.Helper()
	root := newRootCmd(&env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }})
	cmd, _, err := root.Find([]string{name})
	if err != nil || cmd.Name() != name {
		t.Fatalf("no %s command: %v", name, err)
	}
	cmd.InheritedFlags() // merges the root's persistent flags into cmd.Flags()
	return cmd
}

// checkFlagArgs checks args (after the command's name) one by one,
// --flag=value and --flag value alike, naming each flag cmd lacks, then
// parses them all with cmd's own flag set so that bad values fail too.
func checkFlagArgs(t *testing.T, cmd *cobra.Command, args []string) {
	t.Helper()
	flags := cmd.Flags()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q (of %q): want --flag or --flag=value (%s takes no arguments, and the chart spells flags out)", a, args, cmd.Name())
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		f := flags.Lookup(name)
		if f == nil {
			t.Errorf("the chart passes --%s, which %s has no flag for", name, cmd.Name())
			continue
		}
		if !hasValue && f.NoOptDefVal == "" {
			i++ // --flag value
			if i == len(args) {
				t.Errorf("--%s is the last argument and has no value", name)
			}
		}
	}
	if err := flags.Parse(args); err != nil {
		t.Errorf("%s's flags do not parse the chart's arguments %q: %v", cmd.Name(), args, err)
	}
	if flags.NArg() > 0 {
		t.Errorf("arguments left over after the flags: %q", flags.Args())
	}
}

// flagForEnv is the flag PROGLOG_<FLAG> sets, or nil.
func flagForEnv(cmd *cobra.Command, name string) *pflag.Flag {
	var found *pflag.Flag
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if envName(f.Name) == name {
			found = f
		}
	})
	return found
}

// mountedConfigMap returns the data of the ConfigMap mounted at dir.
func mountedConfigMap(volumes []k8sVolume, mounts []k8sVolumeMount, dir string, configMaps map[string]map[string]string) (map[string]string, bool) {
	for _, m := range mounts {
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		for _, v := range volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				data, ok := configMaps[v.ConfigMap.Name]
				return data, ok
			}
		}
	}
	return nil, false
}

var kubeVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandKubeVars expands $(VAR) as the kubelet does in args: a variable
// the container does not define stays as written.
func expandKubeVars(s string, env map[string]string) string {
	return kubeVar.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}
