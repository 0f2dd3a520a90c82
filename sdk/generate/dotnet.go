//go:build dotnet

package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/pulumi/pulumi/pkg/v3/codegen/dotnet"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)

// The .NET generator downloads the package's icon (schema logoUrl, else Pulumi's); this one is
// served from here instead, so that generating needs no network.
//
//go:embed logo.png
var logo []byte

type iconOnly struct{}

func (iconOnly) RoundTrip(request *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(request.URL.Path, ".png") {
		return nil, fmt.Errorf("the generator may fetch only the package icon, not %s", request.URL)
	}
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(bytes.NewReader(logo)), Request: request}, nil
}

var generators = map[string]generator{
	"dotnet": func(pkg *schema.Package) (map[string][]byte, error) {
		http.DefaultTransport = iconOnly{}
		return dotnet.GeneratePackage(tool, pkg, nil, nil)
	},
}
