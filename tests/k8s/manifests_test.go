// Offline, schema-aware checks of the Kubernetes manifests in deploy/k8s.
//
// Every YAML document is decoded strictly into the typed objects of
// k8s.io/api (the same Go types the API server uses): an unknown or
// misspelt field, a duplicate key or a value of the wrong type fails. Kinds
// outside k8s.io/api (the kustomization, KEDA's ScaledObject) must be listed
// in otherKinds and are only parsed. On top of the schema, the relations the
// manifests rely on are checked: each Deployment's selector matches its pod
// labels, every probe and Service targets a named container port that
// exists, the PodDisruptionBudget selects a Deployment, the kustomization
// lists every resource file except the Secret example, and no probe needs a
// header (the producer's /healthz, /readyz and /metrics are open).
//
// Run: cd tests/k8s && go test ./...   (VB_SOURCE_DIR = repository root,
// default ../..). Modules come from the Go module proxy (go.sum pins them).
package k8s

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Kinds that are not in k8s.io/api: parsed, not schema-checked.
var otherKinds = map[string]bool{
	"kustomize.config.k8s.io/v1beta1/Kustomization": true,
	"keda.sh/v1alpha1/ScaledObject":                 true,
}

// Kinds that must be present and decoded strictly.
var requiredKinds = []string{"Namespace", "ConfigMap", "Secret", "Deployment", "Service",
	"PodDisruptionBudget", "Job"}

type doc struct {
	file string
	obj  runtime.Object
	raw  map[string]interface{}
}

func k8sDir() string {
	root := os.Getenv("VB_SOURCE_DIR")
	if root == "" {
		root = filepath.Join("..", "..")
	}
	return filepath.Join(root, "deploy", "k8s")
}

func strictDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme,
		batchv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decodeAll splits a multi-document YAML stream and decodes each document.
func decodeAll(file string, data []byte) ([]doc, error) {
	dec := strictDecoder()
	var out []doc
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		chunk, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", file, i, err)
		}
		var raw map[string]interface{}
		if err := yaml.UnmarshalStrict(chunk, &raw); err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", file, i, err)
		}
		if len(raw) == 0 {
			continue
		}
		gvk := fmt.Sprintf("%v/%v", raw["apiVersion"], raw["kind"])
		d := doc{file: file, raw: raw}
		if !otherKinds[gvk] {
			obj, _, err := dec.Decode(chunk, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: document %d (%s): %v", file, i, gvk, err)
			}
			d.obj = obj
		}
		out = append(out, d)
	}
}

func loadAll(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir(), "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", k8sDir(), err)
	}
	sort.Strings(files)
	var all []doc
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := decodeAll(filepath.Base(f), data)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, docs...)
	}
	return all
}

func TestEveryManifestDecodesStrictly(t *testing.T) {
	seen := map[string]int{}
	for _, d := range loadAll(t) {
		if d.obj != nil {
			seen[d.obj.GetObjectKind().GroupVersionKind().Kind]++
		}
	}
	for _, k := range requiredKinds {
		if seen[k] == 0 {
			t.Errorf("no %s decoded from deploy/k8s", k)
		}
	}
	t.Logf("decoded strictly: %v", seen)
}

// The decoder is strict: a misspelt field or a wrong type must fail.
func TestStrictDecodingRejectsUnknownFieldsAndWrongTypes(t *testing.T) {
	bad := map[string]string{
		"unknown field": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicass: 2\n",
		"wrong type":    "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: eighty}]\n",
		"probe field":   "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: c, readinessProbe: {httpGet: {path: /readyz, port: 1}, period: 5}}]\n",
		"duplicate key": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: '1', A: '2'}\n",
	}
	for name, text := range bad {
		if _, err := decodeAll(name, []byte(text)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func podLabelsAndPorts(spec corev1.PodSpec) map[string]int32 {
	ports := map[string]int32{}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name != "" {
				ports[p.Name] = p.ContainerPort
			}
		}
	}
	return ports
}

func checkProbe(t *testing.T, where string, p *corev1.Probe, ports map[string]int32) {
	if p == nil {
		return
	}
	if p.HTTPGet == nil {
		t.Errorf("%s: not an httpGet probe", where)
		return
	}
	if len(p.HTTPGet.HTTPHeaders) != 0 {
		t.Errorf("%s: probe sends headers (a secret in a manifest?)", where)
	}
	port := p.HTTPGet.Port
	if port.StrVal != "" {
		if _, ok := ports[port.StrVal]; !ok {
			t.Errorf("%s: probe port %q is not a named container port", where, port.StrVal)
		}
	}
	switch p.HTTPGet.Path {
	case "/healthz", "/readyz":
	default:
		t.Errorf("%s: probe path %q is not an open endpoint", where, p.HTTPGet.Path)
	}
}

func TestRelationsBetweenManifests(t *testing.T) {
	all := loadAll(t)
	var deps []*appsv1.Deployment
	for _, d := range all {
		if dep, ok := d.obj.(*appsv1.Deployment); ok {
			deps = append(deps, dep)
		}
	}
	for _, dep := range deps {
		sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
		if err != nil {
			t.Fatalf("%s: selector: %v", dep.Name, err)
		}
		if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
			t.Errorf("%s: selector does not match the pod labels", dep.Name)
		}
		ports := podLabelsAndPorts(dep.Spec.Template.Spec)
		for _, c := range dep.Spec.Template.Spec.Containers {
			where := dep.Name + "/" + c.Name
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s: liveness and readiness probes required", where)
			}
			checkProbe(t, where+" liveness", c.LivenessProbe, ports)
			checkProbe(t, where+" readiness", c.ReadinessProbe, ports)
			checkProbe(t, where+" startup", c.StartupProbe, ports)
		}
		if p := dep.Spec.Template.Annotations["prometheus.io/port"]; p != "" {
			found := false
			for _, v := range ports {
				found = found || fmt.Sprint(v) == p
			}
			if !found {
				t.Errorf("%s: prometheus.io/port %s is not a container port", dep.Name, p)
			}
		}
	}
	for _, d := range all {
		switch o := d.obj.(type) {
		case *corev1.Service:
			sel := labels.SelectorFromSet(o.Spec.Selector)
			matched := false
			for _, dep := range deps {
				if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
					continue
				}
				matched = true
				ports := podLabelsAndPorts(dep.Spec.Template.Spec)
				for _, p := range o.Spec.Ports {
					if p.TargetPort.StrVal != "" {
						if _, ok := ports[p.TargetPort.StrVal]; !ok {
							t.Errorf("service %s: targetPort %q not in %s", o.Name, p.TargetPort.StrVal, dep.Name)
						}
					}
				}
			}
			if !matched {
				t.Errorf("service %s selects no Deployment", o.Name)
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			matched := false
			for _, dep := range deps {
				matched = matched || sel.Matches(labels.Set(dep.Spec.Template.Labels))
			}
			if !matched {
				t.Errorf("PDB %s selects no Deployment", o.Name)
			}
		}
	}
}

func TestKustomizationListsEveryResource(t *testing.T) {
	listed := map[string]bool{}
	files := map[string]bool{}
	for _, d := range loadAll(t) {
		files[d.file] = true
		if d.raw["kind"] == "Kustomization" {
			res, _ := d.raw["resources"].([]interface{})
			for _, r := range res {
				listed[fmt.Sprint(r)] = true
			}
		}
	}
	for f := range files {
		skip := f == "kustomization.yaml" || strings.HasSuffix(f, ".example.yaml")
		if !skip && !listed[f] {
			t.Errorf("%s is not listed in kustomization.yaml", f)
		}
		if strings.HasSuffix(f, ".example.yaml") && listed[f] {
			t.Errorf("%s (an example) is listed in kustomization.yaml", f)
		}
	}
	for r := range listed {
		if !files[r] {
			t.Errorf("kustomization.yaml lists %s, which does not exist", r)
		}
	}
}
