# venuecam: `make run` (the appliance locally, demo mode) and `make test` on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     ?= .venv
PY       := $(VENV)/bin/python
BUILD    := build
# What the tests and the demo need from Debian. Installed once (stamp), only as root.
APT_RUN  := ffmpeg sqlite3 curl
APT_TEST := $(APT_RUN) iproute2 iptables ethtool shellcheck openssh-server openssh-client \
            rclone mmdebstrap qemu-user-static qemu-system-arm qemu-utils binfmt-support device-tree-compiler \
            dosfstools mtools e2fsprogs fdisk bmap-tools xz-utils zstd cpio arch-test chromium \
            faketime gcc libc6-dev
# QEMU >= 9 has the emulated Raspberry Pi 4 (raspi4b): from bookworm-backports on Debian 12.
APT_BACKPORTS := qemu-system-arm qemu-system-data qemu-utils

# `make release`: the signing key lives outside the repo (never commit it).
RELEASE_KEY    ?= $(HOME)/.config/venuecam/release-key
RELEASE_TARGET ?= 3.13-aarch64
# `make release DELTA_FROM=PATH`: a delta bundle against that release (bundle, manifest or marker).
DELTA_FROM     ?=

.PHONY: help run test test-fast bench soak image hw-check lint clean deps-run deps-test venv release release-key

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BUILD):
	@mkdir -p $(BUILD)

deps-run: | $(BUILD) ## Debian packages the demo needs (ffmpeg)
	@provisioning/host-deps.sh $(BUILD) $(APT_RUN)

deps-test: | $(BUILD) ## Debian packages the tests need
	@provisioning/host-deps.sh $(BUILD) $(APT_TEST)
	@provisioning/host-deps.sh --backports $(BUILD) $(APT_BACKPORTS)

venv: $(VENV)/.installed ## the virtualenv with the app and its dev tools

$(VENV)/.installed: app/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e 'app[dev]'
	@touch $@

run: deps-run venv ## run the whole appliance locally in demo mode (Ctrl-C stops it)
	$(VENV)/bin/venuecam demo --dir demo-data

test: deps-test venv lint ## install what is needed and run the whole test suite
	$(PY) -m pytest -q -p no:cacheprovider --durations=20 tests

test-fast: venv ## the suite without the slow image and network-namespace tests
	$(PY) -m pytest -q -p no:cacheprovider -m 'not slow' tests

lint: venv ## ruff and shellcheck
	$(VENV)/bin/ruff check app tests provisioning
	$(VENV)/bin/ruff format --check app tests provisioning
	@files=$$(git ls-files '*.sh' .ci/run 2>/dev/null); if [ -n "$$files" ]; then \
	  if command -v shellcheck >/dev/null; then shellcheck $$files; \
	  else $(VENV)/bin/shellcheck $$files; fi; fi

bench: deps-test venv | $(BUILD) ## measure speed and memory; prints a table, writes build/bench.json
	$(PY) tests/bench/run.py --out $(BUILD)/bench.json

# SOAK_SEED=<n> repeats a run; SOAK_ARGS="--bookings 100" makes a smaller one ("--fault-interval 3
# --power-cut-share 3" changes the mix, printed at the start). Needs root.
soak: deps-test venv | $(BUILD) ## 1,000 bookings under random faults, then the verdict; writes build/soak.json
	nice -n 19 $(PY) tests/soak.py --bookings 1000 --out $(BUILD)/soak.json $(SOAK_ARGS)

image: venv ## build the SD-card image into build/image/
	image/build.sh

# The installer's check of a booted box: LEDs, cameras, SD card, watchdog (skips without them).
# `make hw-check BOX=court-7.local` runs it there over ssh; without BOX, here (on a Pi).
hw-check: venv ## check a booted box's hardware: make hw-check BOX=<hostname>.local
	@if [ -n "$(BOX)" ]; then ssh root@$(BOX) venuecam-hw-check; \
	else $(PY) -m pytest -q -p no:cacheprovider -rs tests/hardware; fi

release: venv | $(BUILD) ## signed build/release/venuecam-<version>.bundle (RELEASE_KEY, RELEASE_TARGET=host for this machine)
	$(PY) -m venuecam.update.build release --key $(RELEASE_KEY) --target $(RELEASE_TARGET) --out $(BUILD)/release \
	  $(if $(DELTA_FROM),--delta-from $(DELTA_FROM))

release-key: venv ## make the release signing key at RELEASE_KEY; prints the line for rootfs/etc/venuecam/release-signers
	$(PY) -m venuecam.update.build key --out $(RELEASE_KEY)

clean: ## remove build output and the demo's data (keeps the cached image base)
	rm -rf demo-data $(BUILD)/bench.json $(BUILD)/soak.json
