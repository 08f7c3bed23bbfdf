#!/usr/bin/env bash
# End-to-end test of the web page of `synthscan serve` in a real headless Chromium (Debian's
# `chromium` package) driven by playwright-core: upload an image, check that the verdict, the
# probability bar and the Grad-CAM overlay appear, that a non-image gives an error in plain
# words, that the "Content credentials" box shows the file's provenance, and that the drop zone
# is reachable with the keyboard; save target/serve-page.png (SHOT=docs/serve-page.png to refresh
# the README's figure; CI writes under target/ only).
#
#   scripts/page-test.sh            # skips (exit 0, with the reason) when Chromium or Node is absent
#   scripts/page-test.sh --install  # installs chromium with apt-get first when it is absent (CI)
#
# Needs a release build (cargo build --release). playwright-core is installed from the npm
# registry into target/page-test (never its own browser download).
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x "$CHROMIUM" && "${1:-}" == "--install" ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [[ ! -x "$CHROMIUM" ]]; then
    echo "skipping page test: $CHROMIUM is absent (apt-get install chromium, or run with --install)"
    exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "skipping page test: node/npm are absent"
    exit 0
fi

BIN=target/release/synthscan
[[ -x "$BIN" ]] || cargo build --release
WORK=target/page-test
mkdir -p "$WORK"
if [[ ! -d "$WORK/node_modules/playwright-core" ]]; then
    (cd "$WORK" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent playwright-core@1 >/dev/null)
fi

# The picture to upload: a CIFAKE test image when the shared data is there, else a generated one.
IMG="$WORK/upload.jpg"
if [[ -f ../shared/data/cifake/cifake-test.tar.gz ]]; then
    member=$(tar -tzf ../shared/data/cifake/cifake-test.tar.gz | grep -m1 '^test/FAKE/.*\.jpg$' || true)
    if [[ -n "$member" ]]; then
        tar -xzf ../shared/data/cifake/cifake-test.tar.gz -C "$WORK" "$member"
        cp "$WORK/$member" "$IMG"
    fi
fi
if [[ ! -s "$IMG" ]]; then
    # No shared data: any picture will do for the page; use a figure committed in docs/.
    cp docs/explain-fake-stage1.png "$WORK/upload.png"
    IMG="$WORK/upload.png"
fi
printf 'this is a text file, not an image\n' > "$WORK/not-an-image.txt"

LOG="$WORK/server.log"
"$BIN" serve --addr 127.0.0.1:0 > "$WORK/server.out" 2> "$LOG" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q '^listening on ' "$WORK/server.out" 2>/dev/null && break
    sleep 0.1
done
URL=$(sed -n 's/^listening on //p' "$WORK/server.out" | head -n1)
[[ -n "$URL" ]] || { echo "server did not start:"; cat "$LOG"; exit 1; }

URL="$URL" CHROMIUM="$CHROMIUM" IMG="$PWD/$IMG" TXT="$PWD/$WORK/not-an-image.txt" \
SHOT="$PWD/${SHOT:-target/serve-page.png}" NODE_PATH="$PWD/$WORK/node_modules" node - <<'EOF'
const { chromium } = require("playwright-core");
const fail = (msg) => { console.error("page test FAILED: " + msg); process.exit(1); };
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(process.env.URL, { waitUntil: "load" });

    // Keyboard: the first Tab stop is the drop zone.
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
    if (focused !== "drop") fail("first Tab stop is " + focused + ", not the drop zone");

    // A non-image: an error in plain words, no result.
    await page.setInputFiles("#file", process.env.TXT);
    await page.waitForSelector("#status.error", { timeout: 15000 });
    const errText = await page.textContent("#status");
    if (!/not an image|could not be read|not accepted/i.test(errText)) fail("error text: " + errText);

    // An image: verdict, bar, threshold and overlay.
    await page.setInputFiles("#file", process.env.IMG);
    await page.waitForSelector("#result:not([hidden])", { timeout: 30000 });
    const verdict = (await page.textContent("#verdict")).trim();
    if (!/^Likely (AI-generated|a real photograph)$/.test(verdict)) fail("verdict: " + verdict);
    const width = await page.$eval("#fill", (e) => e.style.width);
    if (!/^\d+(\.\d+)?%$/.test(width)) fail("bar width: " + width);
    await page.waitForFunction(() => {
      const o = document.getElementById("overlay");
      return o && o.complete && o.naturalWidth > 0 && o.src.startsWith("data:image/png;base64,");
    }, null, { timeout: 15000 });
    const cred = (await page.textContent("#cred-verdict")).trim();
    if (!/^(None found|AI-generated|A camera capture|Edited|Credentials present)/.test(cred)) fail("content credentials: " + cred);
    const thr = await page.textContent("#thr");
    if (!/^0\.\d{4}/.test(thr)) fail("threshold: " + thr);
    if (errors.length) fail("page errors: " + errors.join("; "));
    await page.screenshot({ path: process.env.SHOT, fullPage: true });
    console.log("page test passed: verdict \"" + verdict + "\", bar " + width + ", overlay shown; screenshot " + process.env.SHOT);
  } finally {
    await browser.close();
  }
})().catch((e) => fail(String(e && e.stack || e)));
EOF
