#!/usr/bin/env bash
# Checks that the tools the build needs are installed: go (>= the go.mod
# version), gcc, g++, make and cmake. When one is missing and this runs as
# root on a machine with apt-get, it installs it; otherwise it stops before
# any work with one line naming what is missing and the command that
# installs it. With --ccache it also installs ccache when it can (optional:
# the portable build's ggml CPU variants use it when present).
#
# make build, make demo, make portable and make test run it first, and so
# does .ci/run; with everything present it takes a few milliseconds.
set -euo pipefail

want_ccache=0
[[ "${1:-}" == "--ccache" ]] && want_ccache=1

missing=()
for tool in cmake gcc g++ make; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
extra=()
if ((want_ccache)) && ! command -v ccache >/dev/null 2>&1; then
  extra=(ccache)
fi

# go: Debian's package is older than the project needs, so it is never
# installed from apt; the message gives the official tarball's command.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
need_go="$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$root/go.mod")"
go_hint() {
  local v="$need_go" arch
  [[ "$v" == *.*.* ]] || v="$v.0"
  case "$(uname -m)" in aarch64 | arm64) arch=arm64 ;; *) arch=amd64 ;; esac
  echo "install Go $need_go or later: curl -fsSL https://go.dev/dl/go$v.linux-$arch.tar.gz | tar -C /usr/local -xz && export PATH=/usr/local/go/bin:\$PATH"
}
if ! command -v go >/dev/null 2>&1; then
  echo "setup: go is missing; $(go_hint)" >&2
  exit 1
fi
have_go="$(go version | sed -n 's/^go version go\([0-9.]*\).*/\1/p')"
if [[ "$(printf '%s\n%s\n' "$need_go" "$have_go" | sort -V | head -1)" != "$need_go" ]]; then
  echo "setup: go $have_go is too old (go.mod needs $need_go); $(go_hint)" >&2
  exit 1
fi

if ((${#missing[@]} == 0 && ${#extra[@]} == 0)); then
  exit 0
fi

# The package manager and whether we may use it.
pm=""
for p in apt-get dnf yum apk pacman zypper brew; do
  if command -v "$p" >/dev/null 2>&1; then
    pm="$p"
    break
  fi
done
if [[ "$pm" == "apt-get" && "$(id -u)" == 0 ]]; then
  all=("${missing[@]}" "${extra[@]}")
  echo "setup: installing ${all[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  if ((${#missing[@]} > 0)); then
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ((${#extra[@]} > 0)); then
    apt-get install -y -qq "${extra[@]}" >/dev/null 2>&1 || echo "setup: could not install ${extra[*]}; building without it" >&2
  fi
  exit 0
fi
((${#missing[@]} == 0)) && exit 0 # only ccache is missing: build without it

sudo=""
[[ "$(id -u)" == 0 ]] || sudo="sudo "
case "$pm" in
  apt-get) cmd="${sudo}apt-get install -y ${missing[*]}" ;;
  dnf | yum) cmd="${sudo}$pm install -y ${missing[*]/g++/gcc-c++}" ;;
  apk) cmd="${sudo}apk add ${missing[*]}" ;;
  pacman) cmd="${sudo}pacman -S --needed ${missing[*]/g++/gcc}" ;;
  zypper) cmd="${sudo}zypper install -y ${missing[*]/g++/gcc-c++}" ;;
  brew) cmd="brew install ${missing[*]}" ;;
  *) cmd="" ;;
esac
what="${missing[*]} is" it=it
((${#missing[@]} == 1)) || what="${missing[*]} are" it=them
if [[ -n "$cmd" ]]; then
  echo "setup: $what missing; install $it with: $cmd" >&2
else
  echo "setup: $what missing and no known package manager was found; install $it (cmake: https://cmake.org/download/)" >&2
fi
exit 1
