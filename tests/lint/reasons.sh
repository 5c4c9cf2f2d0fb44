#!/bin/sh
# Every sentence an authenticator or the union gives as a request's failure reason (the files
# below; key-fetch errors in jwks.c and oidc.c only reach the log) is sorted into a
# reason of auth/reason.c's table (the reason label of frontgate_authentication_attempts_total
# and the access log's reason_code): a new sentence without one would be counted as "other".
cd "$(dirname "$0")/../.." || exit 2
# statements assigning *why, reason or res->reason/u->reason (joined up to their ';'), their
# string literals; and the named reason constants
sentences=$(awk '
    /(\*why|\*reason|->reason|[^_]reason) = |land\(fl, FG_AUTHN_REJECTED/ { stmt = $0; while (stmt !~ /;/ && (getline line) > 0) stmt = stmt line; print stmt; next }
    /static const char [a-z_]*reason\[\] = / { print }
' auth/jwt.c auth/jwtauthn.c auth/statickeys.c auth/tokenreview.c auth/identity.c auth/union.c | grep -oE '"([^"\\]|\\.)*"' | sort -u)
missing=""
n=0
for s in $(printf '%s\n' "$sentences" | tr ' ' '\001'); do
    s=$(printf '%s' "$s" | tr '\001' ' ')
    n=$((n + 1))
    grep -qF "{$s, FG_REASON_" auth/reason.c || missing="$missing
#   $s"
done
if [ -n "$missing" ] || [ "$n" -lt 40 ]; then
    echo "not ok 1 - failure sentences without a reason in auth/reason.c ($n found):$missing"
    echo "1..1"
    exit 1
fi
echo "ok 1 - all $n failure sentences have a reason"
echo "1..1"
