#!/usr/bin/env bash
# Lints proto/ with buf (rules in buf.yaml) and checks it for breaking
# changes against the previous commit's protos (HEAD~1; for a merge commit,
# its first parent). protoc still generates the code (gen.sh): buf only
# checks. buf is built from the Go module proxy at BUF_VERSION, once, into
# a cache folder of its own.
#
# A breaking change fails the check, unless the HEAD commit's message
# contains [buf-breaking-ok] or BUF_BREAKING_OK=1 is set: then the changes
# are printed and the check passes. That is for a deliberate break, named
# in the commit that lands it (e.g. the merge commit that brings it to main).
# With no previous commit (a repository's first), the check is skipped and
# says so; a shallow clone first fetches the previous commit.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=v1.75.0
bindir="${XDG_CACHE_HOME:-$HOME/.cache}/onair-tools/buf-$BUF_VERSION"
buf="$bindir/buf"
if [ ! -x "$buf" ]; then
  echo "installing buf $BUF_VERSION (go install, a few minutes the first time)"
  GOTOOLCHAIN=local GOBIN="$bindir" go install "github.com/bufbuild/buf/cmd/buf@$BUF_VERSION"
fi
"$buf" --version

echo "buf lint"
"$buf" lint

has_parent() { git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; }
if ! has_parent && [ "$(git rev-parse --is-shallow-repository)" = true ]; then
  echo "shallow clone: fetching the previous commit"
  # A clone with no remote to deepen from cannot be compared: say so
  # loudly, but do not fail the build on how it was cloned.
  git fetch -q --deepen=1 || { echo "buf breaking: SKIPPED: cannot fetch HEAD~1 of this shallow clone" >&2; exit 0; }
fi
if ! has_parent; then
  echo "buf breaking: skipped: HEAD has no previous commit to compare with"
  exit 0
fi

# subdir=proto: the module's root, also in a commit from before buf.yaml.
echo "buf breaking against HEAD~1 ($(git rev-parse --short HEAD~1))"
rc=0
"$buf" breaking --against '.git#ref=HEAD~1,subdir=proto' || rc=$?
case $rc in
0) echo "buf breaking: no breaking change" ;;
100) # buf's exit code for breaking changes found (anything else is an error)
  if [ "${BUF_BREAKING_OK:-}" = 1 ] || git log -1 --format=%B HEAD | grep -qF '[buf-breaking-ok]'; then
    echo "buf breaking: the breaking changes above are allowed ([buf-breaking-ok] in HEAD's message, or BUF_BREAKING_OK=1)"
  else
    echo "buf breaking: the protos break their previous commit's (above); if that is meant, say [buf-breaking-ok] in the commit message" >&2
    exit 1
  fi
  ;;
*) exit "$rc" ;;
esac
