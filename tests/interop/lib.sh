# Sourced by tests/interop/run and the peer scripts in tests/interop/peers/.
#   $interop     tests/interop (absolute)
#   $repo        the repository root
#   $cache       where built and fetched peers live, outside the repository:
#                $FG_INTEROP_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/frontgate/interop
#   every KEY=value of tests/interop/versions, as a shell variable
interop=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$interop/../.." && pwd)
cache=${FG_INTEROP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/frontgate/interop}
while IFS='=' read -r k v; do
    [[ $k =~ ^[A-Z][A-Z0-9_]*$ ]] && printf -v "$k" '%s' "${v%%[[:space:]]#*}"
done < <(grep -E '^[A-Z][A-Z0-9_]*=' "$interop/versions")

# peer_ready DIR: DIR holds a complete build (its .complete stamp exists)
peer_ready() { [ -f "$1/.complete" ]; }
# peer_done DIR: marks DIR complete; a build interrupted before this starts over next time
peer_done() { date -u +%FT%TZ >"$1/.complete"; }
# say MESSAGE: a progress line on stderr (stdout carries a peer script's answer)
say() { echo "interop: $*" >&2; }
