// A page check for the interop tests: headless Chromium (Debian's, driven by playwright-core)
// opens one of the engine's pages, optionally clicks a button, waits until a JavaScript
// expression is true in the page, writes a screenshot, and prints one JSON line.
//
//   node page_check.cjs --url URL --until EXPR [--report EXPR] [--click TEXT]...
//                       [--screenshot FILE] [--width PX] [--height PX] [--timeout S]
//
// --click TEXT clicks the first button whose name starts with TEXT (in order, once each).
//
// Output: {"ok", "waited_ms", "report" (EXPR's value at the end), "console_errors",
// "page_errors", "failed_requests"}; exit 0 when EXPR became true with no console or page
// error, 1 otherwise. Installed like hls_player.cjs (playwright-core from npm through
// NODE_PATH; Chromium from Debian).
const { opt, opts, launch } = require('./browser.cjs');

const url = opt('url');
const until = opt('until');
const report = opt('report', 'null');
const clicks = opts('click');
const shot = opt('screenshot');
const width = Number(opt('width', '1280'));
const height = Number(opt('height', '900'));
const timeoutMs = Number(opt('timeout', '60')) * 1000;
if (!url || !until) {
  console.error('usage: page_check.cjs --url URL --until EXPR [--report EXPR] [--click TEXT] [--screenshot FILE]');
  process.exit(2);
}

async function main() {
  const browser = await launch();
  const out = { ok: false, waited_ms: null, report: null, console_errors: [], page_errors: [],
    failed_requests: [] };
  try {
    const page = await browser.newPage({ viewport: { width, height } });
    page.on('console', (m) => {
      if (m.type() === 'error' && out.console_errors.length < 20) out.console_errors.push(m.text());
    });
    page.on('pageerror', (e) => {
      if (out.page_errors.length < 20) out.page_errors.push(String(e));
    });
    page.on('requestfailed', (r) => {
      if (out.failed_requests.length < 20) out.failed_requests.push(`${r.url()}: ${r.failure() && r.failure().errorText}`);
    });
    const t0 = Date.now();
    await page.goto(url, { waitUntil: 'load', timeout: timeoutMs });
    for (const name of clicks) {
      await page.getByRole('button', { name: new RegExp('^' + name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) })
        .first().click({ timeout: timeoutMs });
    }
    let done = false;
    while (!done && Date.now() - t0 < timeoutMs) {
      done = await page.evaluate((e) => { try { return !!eval(e); } catch (_) { return false; } }, until);
      if (!done) await new Promise((r) => setTimeout(r, 250));
    }
    out.waited_ms = Date.now() - t0;
    out.report = await page.evaluate((e) => { try { return eval(e); } catch (x) { return String(x); } }, report);
    if (shot) await page.screenshot({ path: shot });
    out.ok = done && out.console_errors.length === 0 && out.page_errors.length === 0;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
  process.exit(out.ok ? 0 : 1);
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, fatal: String(e) }));
  process.exit(1);
});
