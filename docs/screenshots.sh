#!/usr/bin/env bash
# Makes the README's screenshots again (docs/images/*.png): serves promptreg
# on SQLite with a demo prompt, signs in in headless Chromium and saves each
# page listed in tests/ui/screenshots.rs. Needs chromium and chromedriver.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo test --test ui screenshots -- --ignored --nocapture
