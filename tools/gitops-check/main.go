// Command gitops-check judges the operator's Platform and PlatformGroup objects the way the two
// GitOps tools do, on fixtures recorded from the operator (capture_fixtures.py):
//
//   - Argo CD: runs deploy/argocd/*-health.lua with gopher-lua, the interpreter Argo CD embeds,
//     set up as Argo CD sets up a custom health check from argocd-cm (only the package, base
//     and table libraries; the object as the global `obj`; a table with status and message
//     returned), and compares each result with deploy/argocd/health_test.yaml. It also checks
//     that deploy/argocd/argocd-cm.yaml carries the scripts unchanged.
//   - Flux: computes each fixture's status with kstatus (status.Compute from
//     github.com/fluxcd/cli-utils, which kustomize-controller uses for health checks), and
//     with the healthCheckExprs of the Kustomization in deploy/flux/trading-stack.yaml
//     evaluated by Flux's own evaluator (github.com/fluxcd/pkg/runtime/cel), and compares
//     both with deploy/flux/kstatus_test.yaml.
//
// Usage, from the repository root: go -C tools/gitops-check run . [-root ../..]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// The health statuses Argo CD accepts from a script; anything else it turns into Unknown.
var argoStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

type healthTests struct {
	Tests []struct {
		Script       string `json:"script"`
		InputPath    string `json:"inputPath"`
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
	} `json:"tests"`
}

type kstatusTests struct {
	Tests []struct {
		InputPath string `json:"inputPath"`
		Status    string `json:"status"`
		Message   string `json:"message"`
		// The status with the example Kustomization's healthCheckExprs, or "Error" where
		// Flux's evaluation fails (a field the expressions read is absent).
		HealthCheckExprs string `json:"healthCheckExprs"`
	} `json:"tests"`
}

func main() {
	root := flag.String("root", "../..", "the repository root")
	flag.Parse()
	var failures []error
	failures = append(failures, checkArgo(filepath.Join(*root, "deploy", "argocd"))...)
	failures = append(failures, checkFlux(filepath.Join(*root, "deploy", "flux"))...)
	for _, err := range failures {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
	}
	if len(failures) > 0 {
		os.Exit(1)
	}
}

func readYAML(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// readObject decodes a fixture as client-go decodes an API response (integers as int64),
// which is how both Argo CD and kustomize-controller hold the objects they judge.
func readObject(path string) (*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	json, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(json); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

func checkArgo(dir string) []error {
	var tests healthTests
	if err := readYAML(filepath.Join(dir, "health_test.yaml"), &tests); err != nil {
		return []error{err}
	}
	if len(tests.Tests) == 0 {
		return []error{errors.New("deploy/argocd/health_test.yaml has no tests")}
	}
	var failures []error
	for _, test := range tests.Tests {
		script, err := os.ReadFile(filepath.Join(dir, test.Script))
		if err != nil {
			failures = append(failures, err)
			continue
		}
		obj, err := readObject(filepath.Join(dir, test.InputPath))
		if err != nil {
			failures = append(failures, err)
			continue
		}
		got, message, err := runHealth(string(script), obj.Object)
		switch {
		case err != nil:
			failures = append(failures, fmt.Errorf("argocd %s on %s: %w", test.Script, test.InputPath, err))
		case got != test.HealthStatus.Status || message != test.HealthStatus.Message:
			failures = append(failures, fmt.Errorf("argocd %s on %s: got %s %q, want %s %q",
				test.Script, test.InputPath, got, message, test.HealthStatus.Status, test.HealthStatus.Message))
		default:
			fmt.Printf("ok   argocd  %-26s %-36s %s: %s\n", test.Script, test.InputPath, got, message)
		}
	}
	return append(failures, checkConfigMap(dir)...)
}

// runHealth runs a health script as Argo CD runs one configured in argocd-cm.
func runHealth(script string, obj map[string]any) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage,
		lua.BaseLibName: lua.OpenBase,
		lua.TabLibName:  lua.OpenTable,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), NRet: 0, Protect: true}, lua.LString(name)); err != nil {
			return "", "", err
		}
	}
	// Argo CD gives a script one second.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	result, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	statusValue, ok := result.RawGetString("status").(lua.LString)
	if !ok || !argoStatuses[string(statusValue)] {
		return "", "", fmt.Errorf("the script returned status %v, which Argo CD does not accept", result.RawGetString("status"))
	}
	message := ""
	if m, ok := result.RawGetString("message").(lua.LString); ok {
		message = string(m)
	}
	return string(statusValue), message, nil
}

// toLua converts a decoded JSON/YAML object as Argo CD hands one to a script: maps become
// tables keyed by string, lists become 1-based arrays, numbers become Lua numbers.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(l, item))
		}
		return table
	default:
		panic(fmt.Sprintf("unexpected %T in a decoded object", value))
	}
}

// checkConfigMap makes sure the argocd-cm snippet users copy carries the tested scripts.
func checkConfigMap(dir string) []error {
	obj := map[string]any{}
	path := filepath.Join(dir, "argocd-cm.yaml")
	if err := readYAML(path, &obj); err != nil {
		return []error{err}
	}
	data, _, err := unstructured.NestedStringMap(obj, "data")
	if err != nil {
		return []error{fmt.Errorf("%s: %w", path, err)}
	}
	var failures []error
	for key, file := range map[string]string{
		"resource.customizations.health.pmp.dev_Platform":      "platform-health.lua",
		"resource.customizations.health.pmp.dev_PlatformGroup": "platformgroup-health.lua",
	} {
		script, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			failures = append(failures, err)
			continue
		}
		if data[key] != string(script) {
			failures = append(failures, fmt.Errorf("%s: %s differs from %s (make manifests rewrites it)", path, key, file))
		}
	}
	if len(data) != 2 {
		failures = append(failures, fmt.Errorf("%s: expected exactly the two health keys, found %d", path, len(data)))
	}
	return failures
}

func checkFlux(dir string) []error {
	var tests kstatusTests
	if err := readYAML(filepath.Join(dir, "kstatus_test.yaml"), &tests); err != nil {
		return []error{err}
	}
	if len(tests.Tests) == 0 {
		return []error{errors.New("deploy/flux/kstatus_test.yaml has no tests")}
	}
	evaluators, err := exprEvaluators(filepath.Join(dir, "trading-stack.yaml"))
	if err != nil {
		return []error{err}
	}
	var failures []error
	for _, test := range tests.Tests {
		obj, err := readObject(filepath.Join(dir, test.InputPath))
		if err != nil {
			failures = append(failures, err)
			continue
		}
		result, err := status.Compute(obj)
		switch {
		case err != nil:
			failures = append(failures, fmt.Errorf("kstatus on %s: %w", test.InputPath, err))
		case result.Status.String() != test.Status || result.Message != test.Message:
			failures = append(failures, fmt.Errorf("kstatus on %s: got %s %q, want %s %q",
				test.InputPath, result.Status, result.Message, test.Status, test.Message))
		default:
			fmt.Printf("ok   kstatus %-48s %s: %s\n", test.InputPath, result.Status, result.Message)
		}
		evaluator, ok := evaluators[obj.GetKind()]
		if !ok {
			failures = append(failures, fmt.Errorf("trading-stack.yaml has no healthCheckExprs for %s", obj.GetKind()))
			continue
		}
		withExprs, err := evaluator.Evaluate(context.Background(), obj)
		switch {
		case err != nil && test.HealthCheckExprs == "Error":
			fmt.Printf("ok   flux healthCheckExprs %-38s Error: %v\n", test.InputPath, err)
		case err != nil:
			failures = append(failures, fmt.Errorf("healthCheckExprs on %s: %w", test.InputPath, err))
		case withExprs.Status.String() != test.HealthCheckExprs:
			failures = append(failures, fmt.Errorf("healthCheckExprs on %s: got %s, want %s",
				test.InputPath, withExprs.Status, test.HealthCheckExprs))
		default:
			fmt.Printf("ok   flux healthCheckExprs %-38s %s\n", test.InputPath, withExprs.Status)
		}
	}
	return failures
}

// exprEvaluators reads the healthCheckExprs of the Kustomization users copy, so that what is
// tested is what is shipped, and builds Flux's evaluator for each kind.
func exprEvaluators(path string) (map[string]*fluxcel.StatusEvaluator, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	evaluators := map[string]*fluxcel.StatusEvaluator{}
	for _, document := range strings.Split(string(data), "\n---\n") {
		var kustomization struct {
			Kind string `json:"kind"`
			Spec struct {
				HealthCheckExprs []kustomize.CustomHealthCheck `json:"healthCheckExprs"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(document), &kustomization); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if kustomization.Kind != "Kustomization" {
			continue
		}
		for _, check := range kustomization.Spec.HealthCheckExprs {
			evaluator, err := fluxcel.NewStatusEvaluator(&check.HealthCheckExpressions)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, check.Kind, err)
			}
			evaluators[check.Kind] = evaluator
		}
	}
	if len(evaluators) == 0 {
		return nil, fmt.Errorf("%s: no Kustomization with healthCheckExprs", path)
	}
	return evaluators, nil
}
