// Generates the nixos provider's SDKs from its schema with Pulumi's own code generators
// (github.com/pulumi/pulumi/pkg/v3/codegen): go run . SCHEMA.json OUTDIR writes OUTDIR/<language>.
// The languages are in languages.go (Go, Python: the engine's pkg/v3) and dotnet.go (.NET, built
// with -tags dotnet -modfile dotnet.mod: pkg/v3 v3.248 no longer holds the .NET generator).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)

// tool names the generator in the generated files' headers.
const tool = "pulumi-nixos sdk/generate"

type generator func(pkg *schema.Package) (map[string][]byte, error)

// noReferences is the schema loader: the nixos schema refers to no other package.
type noReferences struct{}

func (noReferences) refused(name string) error {
	return fmt.Errorf("the nixos schema refers to no other package, but %s was asked for", name)
}

func (l noReferences) LoadPackage(name string, _ *semver.Version) (*schema.Package, error) {
	return nil, l.refused(name)
}

func (l noReferences) LoadPackageV2(_ context.Context, descriptor *schema.PackageDescriptor) (*schema.Package, error) {
	return nil, l.refused(descriptor.Name)
}

func (l noReferences) LoadPackageReference(name string, _ *semver.Version) (schema.PackageReference, error) {
	return nil, l.refused(name)
}

func (l noReferences) LoadPackageReferenceV2(_ context.Context, descriptor *schema.PackageDescriptor) (schema.PackageReference, error) {
	return nil, l.refused(descriptor.Name)
}

func run(schemaPath, outDir string) error {
	text, err := os.ReadFile(schemaPath)
	if err != nil {
		return err
	}
	var spec schema.PackageSpec
	if err := json.Unmarshal(text, &spec); err != nil {
		return fmt.Errorf("%s: %w", schemaPath, err)
	}
	for language, generate := range generators {
		// Each generator adds its language's settings to the package, so each gets its own.
		pkg, diags, err := schema.BindSpec(spec, noReferences{}, schema.ValidationOptions{})
		if err != nil {
			return err
		}
		if diags.HasErrors() {
			return diags
		}
		files, err := generate(pkg)
		if err != nil {
			return fmt.Errorf("%s: %w", language, err)
		}
		for name, content := range files {
			path := filepath.Join(outDir, language, name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, content, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: generate SCHEMA.json OUTDIR")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}
