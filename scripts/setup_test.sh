#!/usr/bin/env bash
# Tests scripts/setup.sh without installing anything: each case runs it with
# a PATH that holds only the tools the case wants (links to the real ones),
# a fake id (root or not) and fake package managers that log their
# arguments (a fake apt-get "installs" by creating the tool). Run by the
# check target (make test).
set -euo pipefail
cd "$(dirname "$0")/.."
setup="$PWD/scripts/setup.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fails=0

# sandbox UID TOOLS...: a fresh PATH folder with the helpers setup.sh runs,
# the given tools and an id that prints UID.
sandbox() {
  local uid="$1"
  shift
  rm -rf "$work/bin" "$work/log"
  mkdir -p "$work/bin"
  for t in bash dirname sed sort head uname "$@"; do
    ln -s "$(command -v "$t")" "$work/bin/$t"
  done
  printf '#!/bin/sh\necho %s\n' "$uid" >"$work/bin/id"
  chmod +x "$work/bin/id"
}

# fake NAME: a package manager that logs "NAME ARGS" and, for an install,
# creates each named tool.
fake() {
  local chmod
  chmod="$(command -v chmod)"
  cat >"$work/bin/$1" <<EOF
#!/bin/sh
echo "$1 \$*" >>"$work/log"
[ "\$1" = install ] || [ "\$1" = add ] || exit 0
for a in "\$@"; do
  case "\$a" in -*|install|add) ;; *) printf '#!/bin/sh\n' >"$work/bin/\$a"; $chmod +x "$work/bin/\$a" ;; esac
done
EOF
  chmod +x "$work/bin/$1"
}

# expect NAME CODE STDERR [ARGS]: runs setup.sh in the sandbox and checks the
# exit code and the whole stderr (one line, or empty).
expect() {
  local name="$1" code="$2" want="$3" got rc=0
  shift 3
  got="$(PATH="$work/bin" "$BASH" "$setup" "$@" 2>&1)" || rc=$?
  if [[ "$rc" != "$code" || "$got" != "$want" ]]; then
    printf 'FAIL %s: exit %s, want %s\n  got:  %s\n  want: %s\n' "$name" "$rc" "$code" "$got" "$want"
    fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
}

# log WANT: the fake package managers were called exactly so.
log() {
  local got
  got="$(cat "$work/log" 2>/dev/null || true)"
  if [[ "$got" != "$1" ]]; then
    printf 'FAIL package manager calls:\n  got:  %s\n  want: %s\n' "${got//$'\n'/; }" "${1//$'\n'/; }"
    fails=$((fails + 1))
  fi
}

need="$(sed -n 's/^go \([0-9.]*\).*/\1/p' go.mod)"
case "$(uname -m)" in aarch64 | arm64) arch=arm64 ;; *) arch=amd64 ;; esac
v="$need"
[[ "$v" == *.*.* ]] || v="$v.0"
gohint="install Go $need or later: curl -fsSL https://go.dev/dl/go$v.linux-$arch.tar.gz | tar -C /usr/local -xz && export PATH=/usr/local/go/bin:\$PATH"

sandbox 1000 go gcc g++ make cmake
expect "everything present" 0 ""
expect "everything present, --ccache without ccache, not root" 0 "" --ccache

sandbox 1000 go gcc g++ make
fake apt-get
expect "no cmake, not root, apt" 1 "setup: cmake is missing; install it with: sudo apt-get install -y cmake"
log ""

sandbox 0 go gcc g++ make
expect "no cmake, root, no package manager" 1 \
  "setup: cmake is missing and no known package manager was found; install it (cmake: https://cmake.org/download/)"

sandbox 1000 go gcc make
fake dnf
expect "no cmake and g++, not root, dnf" 1 "setup: cmake g++ are missing; install them with: sudo dnf install -y cmake gcc-c++"
log ""

sandbox 0 go gcc g++ make
fake apt-get
expect "no cmake, root, apt" 0 "setup: installing cmake (apt-get)"
log "apt-get update -qq
apt-get install -y -qq cmake"
expect "no ccache, root, apt, --ccache" 0 "setup: installing ccache (apt-get)" --ccache
expect "all installed" 0 "" --ccache
log "apt-get update -qq
apt-get install -y -qq cmake
apt-get update -qq
apt-get install -y -qq ccache"

sandbox 1000 gcc g++ make cmake
expect "no go" 1 "setup: go is missing; $gohint"
printf '#!/bin/sh\necho "go version go1.20.3 linux/amd64"\n' >"$work/bin/go"
chmod +x "$work/bin/go"
expect "old go" 1 "setup: go 1.20.3 is too old (go.mod needs $need); $gohint"

# make demo stops at the setup line before any work: no build folder.
sandbox 1000 go gcc g++ make
fake apt-get
got="$(PATH="$work/bin" MAKEFLAGS= MAKELEVEL= make --no-print-directory BUILD="$work/build" demo 2>&1)" && rc=0 || rc=$?
if [[ "$rc" == 0 || -e "$work/build" || "$(head -1 <<<"$got")" != "setup: cmake is missing; install it with: sudo apt-get install -y cmake" ]]; then
  printf 'FAIL make demo without cmake: exit %s, build folder %s, output:\n%s\n' "$rc" "$(test -e "$work/build" && echo made || echo absent)" "$got"
  fails=$((fails + 1))
else
  echo "ok   make demo without cmake stops first"
fi

if ((fails > 0)); then
  echo "setup_test: $fails failed"
  exit 1
fi
