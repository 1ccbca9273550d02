#!/usr/bin/env bash
# Step 15: the app as a wheel plus every runtime dependency as an arm64/any wheel, so the
# chroot installs offline and nothing compiles under emulation. Versions follow the
# development venv (what the tests ran against). Prints the wheel directory.
set -euo pipefail
# shellcheck source=image/lib.sh
. "$(dirname "$0")/lib.sh"

pip="${VENUECAM_PIP:-$REPO_DIR/.venv/bin/pip}"
[[ -x "$pip" ]] || die "no pip at $pip: run 'make venv' first"
mkdir -p "$WORK_DIR"
constraints="$WORK_DIR/constraints.txt"
"$pip" freeze --exclude-editable 2>/dev/null | grep -v '^-e ' >"$constraints"
deps_key=$(cache_key "$REPO_DIR/app/pyproject.toml" "$constraints" "$IMAGE_DIR/15-wheels.sh" "$IMAGE_PYTHON")
deps_dir="$CACHE_DIR/wheels-$deps_key"
app_dir="$WORK_DIR/app-wheel"
app_src="$WORK_DIR/app-src"
rm -rf "$app_dir" "$app_src"
mkdir -p "$app_src"
# Built from a clean copy so no build/ or egg-info lands in the checkout.
tar -C "$REPO_DIR/app" --exclude=build --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$app_src" -xf -
"$pip" wheel --quiet --no-deps -w "$app_dir" "$app_src" >&2
app_wheel=$(find "$app_dir" -name 'venuecam-*.whl' | head -n1)
[[ -n "$app_wheel" ]] || die "building the app wheel produced nothing"
if [[ ! -d "$deps_dir" ]]; then
  log "downloading runtime wheels for arm64 (cached as $deps_dir)"
  rm -rf "$deps_dir.tmp"
  "$pip" download --quiet --only-binary=:all: -c "$constraints" -d "$deps_dir.tmp" \
    --platform manylinux2014_aarch64 --platform linux_aarch64 --platform any \
    --python-version "$IMAGE_PYTHON" --implementation cp --abi "cp${IMAGE_PYTHON//./}" "$app_wheel" \
    pytest >&2  # pytest: the installer's hardware check on the box (venuecam-hw-check)
  rm -f "$deps_dir.tmp"/venuecam-*.whl
  mv "$deps_dir.tmp" "$deps_dir"
fi
out="$WORK_DIR/wheels"
rm -rf "$out"
mkdir -p "$out"
cp "$deps_dir"/*.whl "$app_wheel" "$out/"
echo "$out"
