#!/bin/sh
# Secrets are compared in constant time (STYLE.md): no plain memcmp/strcmp/strncmp on a bearer
# token, a secret, a credential or the per-connection token memo in the daemon's sources. A
# comparison that leaks timing is a bug this test catches before review does.
cd "$(dirname "$0")/../.." || exit 2
hits=$(grep -nE '\b(memcmp|strcmp|strncmp|bcmp)\([^;"]*(bearer|secret|cred\b|cred->|memo\.token|->token\b|\.token\b)' \
    gateway/*.c auth/*.c config/*.c)
if [ -n "$hits" ]; then
    echo "not ok 1 - secrets compared with a non-constant-time function:"
    echo "$hits" | sed 's/^/#   /'
    echo "1..1"
    exit 1
fi
echo "ok 1 - secrets compared in constant time"
echo "1..1"
