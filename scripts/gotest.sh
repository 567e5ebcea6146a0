#!/usr/bin/env bash
# go test with one line per package as it starts and as it ends, so that a
# long suite shows which package runs; a failing package's output is
# printed whole. Arguments are go test's (flags, then packages).
#   scripts/gotest.sh -count=1 ./...      (GO=/path/to/go to use another go)
set -o pipefail
"${GO:-go}" test -json "$@" | awk '
# str returns the JSON string value of key in the event line.
function str(key,   s, i, c, out) {
	i = index($0, "\"" key "\":\"")
	if (i == 0) return ""
	s = substr($0, i + length(key) + 4)
	out = ""
	for (i = 1; i <= length(s); i++) {
		c = substr(s, i, 1)
		if (c == "\"") break
		if (c == "\\") {
			i++
			c = substr(s, i, 1)
			if (c == "n") c = "\n"; else if (c == "t") c = "\t"; else if (c == "u") { c = "?"; i += 4 }
		}
		out = out c
	}
	return out
}
function num(key,   i, s) {
	i = index($0, "\"" key "\":")
	if (i == 0) return ""
	s = substr($0, i + length(key) + 3)
	sub(/[,}].*/, "", s)
	return s
}
{
	action = str("Action"); pkg = str("Package"); test = str("Test")
	if (action == "output") { buf[pkg] = buf[pkg] str("Output"); next }
	if (test != "") next
	if (action == "start") { printf "run   %s\n", pkg; fflush(); next }
	if (action == "pass") { printf "ok    %s  %ss\n", pkg, num("Elapsed"); fflush(); delete buf[pkg]; next }
	if (action == "skip") { printf "skip  %s (no tests)\n", pkg; fflush(); delete buf[pkg]; next }
	if (action == "fail") { printf "%s", buf[pkg]; printf "FAIL  %s  %ss\n", pkg, num("Elapsed"); fflush(); delete buf[pkg]; failed = 1 }
}
END { exit failed }
'
