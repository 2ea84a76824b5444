// A browser HLS player for the interop tests: headless Chromium (Debian's, driven by
// playwright-core) plays a playlist with hls.js in a <video> on a blank page (another origin
// than the engine's, so CORS is exercised too) and prints one JSON line of what it saw.
//
//   node hls_player.cjs --hlsjs PATH/hls.min.js --url PLAYLIST [--play S] [--seek S]
//                       [--low-latency] [--timeout S]
//
// It plays until the media time passed --play seconds (default 4); with --seek it then seeks
// there and plays --play seconds more. Output: {"ok", "startup_ms", "played", "seeked",
// "after_seek", "errors", "fatal", "latency" (hls.js: behind the playlist's edge),
// "source_delay" (behind the source, by PROGRAM-DATE-TIME), "stalls", "stalled_ms", "log"};
// exit 0 when it played (and seeked) without a fatal error, 1 otherwise. --trace adds the
// requests. Installed by scripts/test.sh: playwright-core and hls.js from npm under
// target/web-clients (found through NODE_PATH); Chromium from Debian.
const { opt, flag, launch } = require('./browser.cjs');

const hlsjs = opt('hlsjs');
const url = opt('url');
const play = Number(opt('play', '4'));
const seek = opt('seek') === undefined ? null : Number(opt('seek'));
const lowLatency = flag('low-latency');
const timeoutMs = Number(opt('timeout', '90')) * 1000;
if (!hlsjs || !url) {
  console.error('usage: hls_player.cjs --hlsjs PATH --url PLAYLIST [--play S] [--seek S]');
  process.exit(2);
}

async function main() {
  const browser = await launch();
  let result;
  const t0 = Date.now();
  const requests = [];
  try {
    const page = await browser.newPage();
    page.on('requestfinished', (req) => {
      const t = req.timing();
      if (requests.length < 60) {
        const u = req.url().replace(/^.*\/ace\//, '').replace(/[?].*(_HLS_msn=[0-9]+).*(_HLS_part=[0-9]+).*/, '?$1&$2').replace(/[?].*/, '');
        requests.push(`${Math.round(t.startTime - t0)}+${Math.round(t.responseEnd)} ${u}`);
      }
    });
    await page.setContent('<!doctype html><html><body><video id="v" muted></video></body></html>');
    await page.addScriptTag({ path: hlsjs });
    result = await page.evaluate(async ({ url, play, seek, lowLatency, timeoutMs }) => {
      const r = { ok: false, startup_ms: null, played: 0, seeked: null, after_seek: null,
        errors: [], fatal: null, latency: null, source_delay: null, target_latency: null,
        stalls: 0, stalled_ms: 0,
        log: [] };
      if (!Hls.isSupported()) {
        r.fatal = 'hls.js is not supported in this browser';
        return r;
      }
      const v = document.getElementById('v');
      const hls = new Hls({ lowLatencyMode: lowLatency });
      hls.on(Hls.Events.ERROR, (_, d) => {
        if (r.errors.length < 20) {
          const where = d.frag ? ` at ${d.frag.sn}${d.part ? '.' + d.part.index : ''}` : '';
          const why = d.reason || (d.error && d.error.message) || '';
          r.errors.push(`${d.type}/${d.details}${d.fatal ? ' (fatal)' : ''}${where}${why ? ': ' + why : ''}`);
        }
        if (d.fatal) r.fatal = `${d.type}/${d.details}`;
      });
      const t0 = performance.now();
      let stallStart = null;
      v.addEventListener('waiting', () => {
        r.stalls += 1;
        stallStart = performance.now();
      });
      v.addEventListener('playing', () => {
        if (stallStart !== null) r.stalled_ms += Math.round(performance.now() - stallStart);
        stallStart = null;
      });
      const note = (what) => {
        if (r.log.length < 40) r.log.push(`${Math.round(performance.now() - t0)} ${what}`);
      };
      hls.on(Hls.Events.FRAG_LOADED, (_, d) => note(`frag ${d.frag.sn}${d.part ? '.' + d.part.index : ''}`));
      v.addEventListener('waiting', () => note(`waiting at ${v.currentTime.toFixed(2)}`));
      hls.loadSource(url);
      hls.attachMedia(v);
      v.play().catch(() => {});
      const until = async (cond) => {
        while (!cond()) {
          if (r.fatal || performance.now() - t0 > timeoutMs) return false;
          await new Promise((res) => setTimeout(res, 100));
        }
        return true;
      };
      if (!(await until(() => v.currentTime > 0))) return r;
      r.startup_ms = Math.round(performance.now() - t0);
      const from = v.currentTime;
      if (!(await until(() => v.currentTime - from >= play || v.ended))) {
        r.played = v.currentTime - from;
        return r;
      }
      r.played = v.currentTime - from;
      if (seek !== null) {
        v.currentTime = seek;
        await until(() => !v.seeking);
        r.seeked = v.currentTime;
        if (!(await until(() => v.currentTime - seek >= play || v.ended))) {
          r.after_seek = v.currentTime;
          return r;
        }
        r.after_seek = v.currentTime;
      }
      r.latency = Number.isFinite(hls.latency) ? hls.latency : null;
      // Behind the source itself: the playlist's PROGRAM-DATE-TIME carries the source's clock
      // (the same machine's in the tests).
      r.source_delay = hls.playingDate ? (Date.now() - hls.playingDate.getTime()) / 1000 : null;
      r.target_latency = Number.isFinite(hls.targetLatency) ? hls.targetLatency : null;
      r.ok = !r.fatal;
      return r;
    }, { url, play, seek, lowLatency, timeoutMs });
  } catch (e) {
    result = { ok: false, fatal: String(e) };
  } finally {
    await browser.close();
  }
  if (flag('trace')) result.requests = requests;
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, fatal: String(e) }));
  process.exit(1);
});
