#!/usr/bin/env bash
# Creates (or brings up to date) the export virtualenv .venv-export-NAME from
# test/exports/requirements-NAME.txt, for NAME in torch, torchrec, tf. A file
# with the line "# lock: --no-deps" is a complete lock, installed without
# resolving dependencies (torchrec's declared ones conflict with its CPU build).
# These venvs only regenerate the committed corpus (export_torch.py,
# export_torchrec.py, export_keras.py); they are not part of the README's two
# commands, and CI never needs them.
#   test/exports/venv.sh torch   # prints the venv's python
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: test/exports/venv.sh torch|torchrec|tf}
req=test/exports/requirements-$name.txt
[ -f "$req" ] || { echo "venv.sh: no $req" >&2; exit 2; }
venv=.venv-export-$name
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp=$venv/.requirements.stamp
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
  echo "venv.sh: installing $req into $venv" >&2
  "$venv/bin/pip" install -q --upgrade pip
  flags=()
  grep -qx "# lock: --no-deps" "$req" && flags=(--no-deps)
  "$venv/bin/pip" install -q "${flags[@]}" -r "$req"
  cp "$req" "$stamp"
fi
echo "$PWD/$venv/bin/python"
