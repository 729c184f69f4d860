#!/bin/sh
# The Debian packages the test suite needs: Chromium for the drawing page's browser test (driven by
# Playwright from PyPI), and fonts for the printed digits of the realistic uploads. Installed here
# when missing and this is Debian or Ubuntu run as root; otherwise it stops at once with the
# command to run.
set -eu
packages=""
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    packages="chromium"
fi
if ! find /usr/share/fonts /usr/local/share/fonts -name '*.ttf' 2>/dev/null | grep -q .; then
    packages="$packages fonts-dejavu-core fonts-liberation"
fi
[ -z "$packages" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages the tests need:$packages"
    apt-get update -qq
    # shellcheck disable=SC2086  # one word a package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages
    exit 0
fi
echo "error: the tests need these Debian packages:$packages" >&2
echo "install them with:  sudo apt-get install -y --no-install-recommends$packages" >&2
echo "(or name another Chromium with CHROMIUM=/path/to/chromium)" >&2
exit 1
