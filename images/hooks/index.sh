#!/bin/sh
# rarc-hooks shim: the runner (ACTIONS_RUNNER_CONTAINER_HOOKS=<dir>/index.sh) runs this with
# `bash -e` (or `sh -e` without bash) and this replaces itself with the native rarc-hooks binary,
# which then owns stdin, stdout, stderr, the signals and the exit code. POSIX sh; see docs/hooks.md.
#
# Binary: $RARC_HOOKS_BIN if set, else rarc-hooks-<arch> (x86_64, aarch64) and then rarc-hooks,
# looked up next to this file as the runner named it, then next to its real path (symlinks).
# Mode: the first argument if given, else $RARC_HOOKS_MODE, else the name of this file's
# directory (docker, k8s, k8s-novolume), as the runner named it.

rarc_fail() {
    printf '::error::rarc-hooks shim: %s\n' "$1"
    exit 1
}

rarc_self=$0
rarc_dir=$(CDPATH='' cd -- "$(dirname -- "$rarc_self")" && pwd) || rarc_fail "cannot resolve the directory of $rarc_self"

rarc_bin=${RARC_HOOKS_BIN:-}
if [ -z "$rarc_bin" ]; then
    case $(uname -m) in
        x86_64 | amd64) rarc_arch=x86_64 ;;
        aarch64 | arm64) rarc_arch=aarch64 ;;
        *) rarc_arch=$(uname -m) ;;
    esac
    rarc_dirs=$rarc_dir
    rarc_real=$(readlink -f -- "$rarc_self" 2>/dev/null || true)
    if [ -n "$rarc_real" ] && [ "$(dirname -- "$rarc_real")" != "$rarc_dir" ]; then
        rarc_dirs="$rarc_dir
$(dirname -- "$rarc_real")"
    fi
    rarc_tried=
    rarc_old_ifs=$IFS
    IFS='
'
    for rarc_d in $rarc_dirs; do
        for rarc_name in "rarc-hooks-$rarc_arch" rarc-hooks; do
            if [ -z "$rarc_bin" ] && [ -f "$rarc_d/$rarc_name" ] && [ -x "$rarc_d/$rarc_name" ]; then
                rarc_bin=$rarc_d/$rarc_name
            fi
            rarc_tried="$rarc_tried $rarc_d/$rarc_name"
        done
    done
    IFS=$rarc_old_ifs
    [ -n "$rarc_bin" ] || rarc_fail "no rarc-hooks binary for $rarc_arch (tried$rarc_tried); set RARC_HOOKS_BIN"
fi

[ -f "$rarc_bin" ] && [ -x "$rarc_bin" ] || rarc_fail "cannot start $rarc_bin: not an executable file"

rarc_mode=${1:-${RARC_HOOKS_MODE:-}}
if [ -z "$rarc_mode" ]; then
    case $(basename -- "$rarc_dir") in
        docker) rarc_mode=docker ;;
        k8s) rarc_mode=k8s ;;
        k8s-novolume) rarc_mode=k8s-novolume ;;
        *) rarc_fail "cannot tell the mode from the directory '$rarc_dir': put index.sh in a directory named docker, k8s, k8s-novolume or set RARC_HOOKS_MODE" ;;
    esac
fi

exec "$rarc_bin" "$rarc_mode"
