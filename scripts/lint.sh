#!/usr/bin/env bash
# gofmt, go vet, staticcheck, golangci-lint and govulncheck, installed with
# `go install` at pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(go env GOPATH)/bin
[[ -x $bin/staticcheck ]] || go install honnef.co/go/tools/cmd/staticcheck@2025.1.1
[[ -x $bin/golangci-lint ]] || go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.5.0
[[ -x $bin/govulncheck ]] || go install golang.org/x/vuln/cmd/govulncheck@v1.1.4
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n $unformatted ]]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
go vet ./...
"$bin/staticcheck" ./...
"$bin/golangci-lint" run ./...
"$bin/govulncheck" ./...
go mod tidy -diff
