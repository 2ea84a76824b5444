// What the browser harnesses (hls_player.cjs, page_check.cjs) share: their command-line
// options and headless Chromium (Debian's, driven by playwright-core) launched with the flags
// a closed network and a root user need (no sandbox, no background connections to Google's
// hosts, autoplay without a gesture).
const { chromium } = require('playwright-core');

const args = process.argv.slice(2);

// The value after `--NAME`, or `dflt`.
const opt = (name, dflt) => {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args[i + 1] : dflt;
};

// Whether `--NAME` was given.
const flag = (name) => args.includes('--' + name);

// Every value after a `--NAME`, in order.
const opts = (name) => args.flatMap((a, i) => (a === '--' + name ? [args[i + 1]] : []));

function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
}

module.exports = { opt, flag, opts, launch };
