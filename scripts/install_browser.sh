#!/usr/bin/env bash
# Install the system Chromium that the HTML report's browser tests drive (tests/report/).
#
# Playwright's own browser download needs network access that CI machines do not have, so the tests
# use Debian's `chromium` package through playwright's `executable_path`. Idempotent: does nothing
# when /usr/bin/chromium is already there. Needs apt (Debian; on Ubuntu the package is a snap
# wrapper that does not work in containers) and root, or sudo.
#
#   scripts/install_browser.sh            # then: pip install playwright (the "test" extra has it)
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "chromium is already installed at /usr/bin/chromium"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: install Chromium with your package manager and set FTEVALS_CHROMIUM to its path" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
test -x /usr/bin/chromium
echo "installed chromium at /usr/bin/chromium"
