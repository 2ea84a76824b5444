#!/usr/bin/env bash
# peercdn's test command (the one the README names). Runs from any directory.
#
# Target: a fresh Debian 12 machine, run as root, with a Rust toolchain and nothing
# else. Installs the third-party clients the interop tests drive (only those
# missing), the Ace Stream client libraries from PyPI (into a virtual environment under
# target/) and hls.js with playwright-core from npm (under target/), then runs, failing fast:
#   fmt --check, clippy -D warnings, rustdoc -D warnings, the fuzz crate build
#   (if fuzz/ exists), and every workspace test (the interop tests spawn
#   /usr/bin/python3 tests/interop/lt_peer.py).
# Budget: < 35 minutes on 2 cores.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

# Debian packages the interop tests and benchmarks need.
# iproute2: the LSD and no-leak tests create network namespaces (`ip netns`).
# python3-venv, python3-distutils: the virtual environment of the Ace Stream client libraries
# (python-acestream imports distutils).
# chromium: the browser tests (a page of another site against the engine).
# prometheus: its promtool checks /metrics.
# miniupnpd-nftables, nftables: the NAT test's router (a UPnP IGD over an nftables masquerade).
# mpv, vlc-bin, vlc-plugin-base: the players the Ace-compatibility tests drive (VLC runs as
# nobody through util-linux's setpriv: it refuses root).
PACKAGES=(python3-libtorrent ffmpeg aria2 nginx curl iproute2 python3-venv python3-distutils
    chromium prometheus mpv vlc-bin vlc-plugin-base mkvtoolnix miniupnpd-nftables nftables)

# PyPI packages the Ace-compatibility tests drive, and the Stellar SDK that checks settlement
# envelopes, pinned, in a virtual environment under target/ (a build output: ignored by git,
# made again after `cargo clean`).
ACE_VENV="$REPO_ROOT/target/ace-clients"
ACE_PYPI=(acestream==0.2.0 acestream-search==1.6.4 acestream-launcher==2.1.0 stellar-sdk==16.1.1)
export PEERCDN_ACE_PYTHON="$ACE_VENV/bin/python"

# npm packages the browser HLS tests drive (hls.js in Debian's Chromium, through
# playwright-core), pinned, under target/ (a build output like the virtual environment).
WEB_DIR="$REPO_ROOT/target/web-clients"
WEB_NPM=(hls.js@1.6.15 playwright-core@1.57.0)
export PEERCDN_WEB_CLIENTS="$WEB_DIR"

# Absolute path of the libtorrent peer, for tests that prefer it to
# "$CARGO_MANIFEST_DIR/../../tests/interop/lt_peer.py" (cargo runs integration
# tests with the crate directory as cwd, not the repo root).
export PEERCDN_LT_PEER="$REPO_ROOT/tests/interop/lt_peer.py"

TOTAL_START=$SECONDS

# step NAME CMD... : print a header, run CMD, print its elapsed time.
step() {
    local name="$1"; shift
    local start=$SECONDS
    printf '\n==== %s\n==== $ %s\n' "$name" "$*"
    "$@"
    printf '==== %s: ok in %ds\n' "$name" $((SECONDS - start))
}

# install_missing: apt-get only the packages that dpkg does not report installed.
install_missing() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg -s "$pkg" >/dev/null 2>&1; then
            missing+=("$pkg")
        fi
    done
    # Node.js and npm for the browser HLS tests (Debian's, when the machine has none).
    if ! command -v npm >/dev/null 2>&1; then
        missing+=(nodejs npm)
    fi
    # libfuzzer-sys (fuzz/) compiles libFuzzer's C++ sources.
    if [[ -f fuzz/Cargo.toml ]] && ! command -v c++ >/dev/null 2>&1; then
        missing+=(g++)
    fi
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "all present: ${PACKAGES[*]}"
        return 0
    fi
    echo "installing: ${missing[*]}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# check_libtorrent: the interop tests need Debian's python3 to import libtorrent.
check_libtorrent() {
    local version
    if ! version=$(/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)'); then
        echo "FATAL: '/usr/bin/python3 -c \"import libtorrent\"' failed." >&2
        echo "       Install python3-libtorrent (apt-get install python3-libtorrent)." >&2
        exit 1
    fi
    echo "libtorrent $version"
}

# ace_clients: the virtual environment with the pinned Ace Stream client libraries (made
# once; pip checks the pins each run and installs only what is missing).
ace_clients() {
    if [[ ! -x "$ACE_VENV/bin/python" ]]; then
        /usr/bin/python3 -m venv "$ACE_VENV"
    fi
    "$ACE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${ACE_PYPI[@]}"
    "$ACE_VENV/bin/python" -c 'import acestream.server, acestream_search, acestream_launcher, stellar_sdk; print("Ace clients and the Stellar SDK ok")'
}

# web_clients: hls.js and playwright-core at their pins under target/web-clients (npm installs
# only what differs from the pins).
web_clients() {
    mkdir -p "$WEB_DIR"
    npm install --prefix "$WEB_DIR" --no-save --no-audit --no-fund --loglevel=error "${WEB_NPM[@]}"
    NODE_PATH="$WEB_DIR/node_modules" node -e 'require("playwright-core"); require.resolve("hls.js/dist/hls.min.js"); console.log("web clients ok")'
}

build_fuzz() {
    if [[ -f fuzz/Cargo.toml ]]; then
        # Its own target dir (fuzz/target): sharing the workspace's left a test binary's
        # incremental cache pointing at symbols of a dependency the other workspace rebuilt
        # (rust-lld: undefined hidden symbol when linking crates/http/tests/api.rs).
        cargo build --manifest-path fuzz/Cargo.toml --locked
    else
        echo "no fuzz/Cargo.toml: skipped"
    fi
}

step "system packages" install_missing
step "libtorrent python bindings" check_libtorrent
step "Ace Stream client libraries (PyPI)" ace_clients
step "browser HLS clients (npm)" web_clients
step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
step "fuzz build" build_fuzz
step "cargo test" cargo test --workspace --locked

printf '\n==== ALL PASSED in %dm%02ds\n' $(((SECONDS - TOTAL_START) / 60)) $(((SECONDS - TOTAL_START) % 60))
