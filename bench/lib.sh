# Helpers shared by the bench scripts; sourced, not run. Set SCRIPT (the script's name, for
# messages) before sourcing.

log() { printf '%s\n' "$*" >&2; }
die() { log "$SCRIPT: $*"; exit 1; }

# need COMMAND=PACKAGE...: installs, from Debian, the package of every command that is missing.
need() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
    done
    ((${#missing[@]})) || return 0
    local sudo=
    ((EUID == 0)) || sudo=sudo
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >&2
}
