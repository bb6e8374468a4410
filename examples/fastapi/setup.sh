#!/bin/sh
# Creates .venv beside this script and installs requirements.txt into it.
# Idempotent: a stamp records a hash of the requirements and the Python version, and a run whose
# hash matches does nothing, so this is cheap to call before every `valet up`.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"

# Hash with Python itself: sha256sum/shasum differ between Linux and macOS, python3 is needed anyway.
# The interpreter's version is part of the hash because a venv is tied to the Python that made it.
want="$("$python" -c '
import hashlib, sys
h = hashlib.sha256(open(sys.argv[1], "rb").read())
h.update(sys.version.encode())
print(h.hexdigest())
' "$here/requirements.txt")"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/uvicorn" ]; then
    echo "fastapi example: .venv is up to date"
    exit 0
fi

echo "fastapi example: creating .venv and installing requirements.txt"
# --clear: start from an empty venv so packages dropped from requirements.txt do not linger.
"$python" -m venv --clear "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$here/requirements.txt"
# The stamp is written last, so an install that failed halfway is retried next time.
echo "$want" > "$stamp"
echo "fastapi example: ready ($venv)"
