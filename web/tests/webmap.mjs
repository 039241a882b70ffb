// Browser test of the web map in headless Chromium (Debian's, driven by playwright-core):
// the page loads, mosaic tiles render into the canvas, moving the time slider asks for other
// tiles and the picture changes, the swipe moves, and a click shows the STAC item and its pass
// quality. A screenshot is written as the test artifact.
//
// usage: node web/tests/webmap.mjs BASE_URL OUT_DIR TIME_COLLECTION CLICK_COLLECTION LON,LAT
// Prints one JSON line of findings; exits 1 on the first failed check.
import { chromium } from 'playwright-core';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [base, outDir, timeCollection, clickCollection, lonlat] = process.argv.slice(2);
if (!lonlat) {
  console.error('usage: webmap.mjs BASE_URL OUT_DIR TIME_COLLECTION CLICK_COLLECTION LON,LAT');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const findings = {};
const fail = async (msg, page) => {
  if (page) await page.screenshot({ path: join(outDir, 'webmap-failure.png') }).catch(() => {});
  console.error(`FAIL: ${msg}`);
  console.log(JSON.stringify(findings));
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // WebGL through SwiftShader (no GPU on CI); root in containers needs --no-sandbox.
  args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
page.on('console', (m) => m.type() === 'error' && errors.push(`${m.text()} ${m.location().url || ''}`));
page.on('response', (r) => r.status() >= 400 && errors.push(`${r.status()} ${r.url()}`));
// Every tile response: URL → status and body hash.
const tiles = [];
page.on('response', async (r) => {
  if (!r.url().includes('/tiles/WebMercatorQuad/')) return;
  const body = r.status() === 200 ? await r.body().catch(() => null) : null;
  tiles.push({
    url: r.url(),
    status: r.status(),
    hash: body ? createHash('sha256').update(body).digest('hex').slice(0, 16) : null,
  });
});

/** Resolves when both maps are idle with their tiles loaded (or fails after `ms`). */
const idle = (ms = 30000) =>
  page.waitForFunction(
    () => {
      const d = window.downlink;
      return d && ['before', 'after'].every((k) => d.maps[k].loaded() && d.maps[k].areTilesLoaded());
    },
    null,
    { timeout: ms, polling: 100 },
  );

/** Pixel summary of the visible "after" side: how many pixels differ from the background. */
const canvasStats = () =>
  page.evaluate(() => {
    const src = window.downlink.maps.after.getCanvas();
    const c = document.createElement('canvas');
    c.width = src.width;
    c.height = src.height;
    const g = c.getContext('2d');
    g.drawImage(src, 0, 0);
    const x0 = Math.floor(src.width * window.downlink.state.swipe);
    const { data } = g.getImageData(x0, 0, src.width - x0, src.height);
    let painted = 0;
    let sum = 0;
    for (let i = 0; i < data.length; i += 4) {
      // background #dfe7ee
      if (Math.abs(data[i] - 0xdf) + Math.abs(data[i + 1] - 0xe7) + Math.abs(data[i + 2] - 0xee) > 12) painted += 1;
      sum = (sum * 31 + data[i] * 7 + data[i + 1] * 3 + data[i + 2]) % 2147483647;
    }
    return { painted, pixels: data.length / 4, signature: sum };
  });

const resp = await page.goto(`${base}/map/?collection=${encodeURIComponent(timeCollection)}&before=0`, {
  waitUntil: 'domcontentloaded',
});
if (!resp || resp.status() !== 200) await fail(`GET /map/ answered ${resp && resp.status()}`, page);
await page.waitForFunction(() => window.downlink && window.downlink.state.loads >= 1, null, { timeout: 30000 });
await idle().catch(() => fail('tiles never finished loading', page));
const state0 = await page.evaluate(() => ({
  times: window.downlink.state.times,
  before: window.downlink.state.before,
  after: window.downlink.state.after,
}));
findings.times = state0.times;
if (state0.times.length < 2) await fail(`collection ${timeCollection} needs two scene times, has ${state0.times.length}`, page);
if (state0.after !== state0.times.length - 1 || state0.before !== 0) await fail(`sliders start at ${JSON.stringify(state0)}`, page);

const ok = tiles.filter((t) => t.status === 200);
findings.tiles_first = { requested: tiles.length, ok: ok.length, statuses: [...new Set(tiles.map((t) => t.status))] };
if (!ok.length) await fail('no tile was served with 200', page);
if (tiles.some((t) => t.status >= 400)) await fail(`tile errors: ${JSON.stringify(tiles.filter((t) => t.status >= 400))}`, page);
const newest = state0.times[state0.times.length - 1];
if (!ok.some((t) => decodeURIComponent(t.url).includes(`datetime=../${newest}`))) {
  await fail(`no tile asked for datetime=../${newest}: ${tiles.map((t) => t.url).join(' ')}`, page);
}
const s1 = await canvasStats();
findings.canvas_first = s1;
if (s1.painted < s1.pixels * 0.02) await fail(`the map shows almost no imagery (${s1.painted}/${s1.pixels} px)`, page);

// Move the "after" slider to the oldest scene: other tiles, another picture.
const seen = tiles.length;
await page.evaluate(() => {
  const s = document.getElementById('after');
  s.value = '0';
  s.dispatchEvent(new Event('input', { bubbles: true }));
});
await page.waitForFunction((n) => window.downlink && window.downlink.state.after === 0, seen, { timeout: 5000 });
await page.waitForTimeout(300);
await idle().catch(() => fail('tiles never finished loading after the slider moved', page));
const oldest = state0.times[0];
const moved = tiles.slice(seen).filter((t) => t.status === 200);
findings.tiles_after_slider = moved.length;
if (!moved.some((t) => decodeURIComponent(t.url).includes(`datetime=../${oldest}`))) {
  await fail(`moving the slider asked for no tile up to ${oldest}`, page);
}
const firstHashes = new Set(ok.filter((t) => decodeURIComponent(t.url).includes(`../${newest}`)).map((t) => t.hash));
if (moved.every((t) => firstHashes.has(t.hash))) await fail('the slider changed the URLs but not the tiles', page);
const label = await page.textContent('#after-label');
if (!label || !label.startsWith(oldest.slice(0, 10))) await fail(`after label is ${label}`, page);
// The address follows the view: a shared link reopens this comparison.
const shared = new URL(page.url());
findings.address = shared.search;
if (shared.searchParams.get('after') !== '0' || shared.searchParams.get('collection') !== timeCollection) {
  await fail(`the address does not hold the view: ${shared.search}`, page);
}
const s2 = await canvasStats();
findings.canvas_after_slider = s2;
if (s2.signature === s1.signature) await fail('the picture did not change when the time slider moved', page);

// The swipe handle moves with the keyboard and clips the "after" map.
await page.focus('#swipe');
await page.keyboard.press('ArrowRight');
const clip = await page.evaluate(() => document.getElementById('map-after').style.clipPath);
findings.swipe_clip = clip;
if (!/inset\(0(px)? 0(px)? 0(px)? 55/.test(clip)) await fail(`swipe did not clip the after map: ${clip}`, page);
await page.screenshot({ path: join(outDir, 'webmap-time.png') });

// Another collection; click the given place: the item panel with the pass quality.
await page.selectOption('#collection', clickCollection);
await page.waitForFunction(() => window.downlink.state.loads >= 2, null, { timeout: 30000 });
await idle().catch(() => fail(`tiles of ${clickCollection} never finished loading`, page));
const [lon, lat] = lonlat.split(',').map(Number);
const pt = await page.evaluate(([x, y]) => {
  const m = window.downlink.maps.after;
  m.jumpTo({ center: [x, y] });
  const p = m.project([x, y]);
  const r = m.getCanvas().getBoundingClientRect();
  return { x: r.left + p.x, y: r.top + p.y };
}, [lon, lat]);
await idle().catch(() => fail('tiles never finished loading after the jump', page));
await page.mouse.click(pt.x + 5, pt.y);
await page.waitForSelector('#panel:not([hidden]) #pass-quality', { timeout: 15000 }).catch(() => fail('the click showed no pass quality', page));
await page.waitForFunction(() => document.querySelector('#panel-body').textContent.includes('Pass record'), null, { timeout: 10000 }).catch(() => {});
const panel = await page.innerText('#panel-body');
findings.panel = panel.replace(/\s+/g, ' ').slice(0, 400);
if (!/frames good\s*\d+/.test(panel)) await fail(`panel lacks frame counts: ${panel}`, page);
await page.screenshot({ path: join(outDir, 'webmap.png') });

// The NDVI layer of the pass collection: colormapped tiles.
const layers = await page.$$eval('#layer option', (os) => os.map((o) => o.value));
findings.layers = layers;
if (!layers.includes('ndvi') || layers[0] !== 'visual') await fail(`layers of ${clickCollection}: ${layers}`, page);
const beforeNdvi = tiles.length;
await page.selectOption('#layer', 'ndvi');
await page.waitForTimeout(300);
await idle().catch(() => fail('NDVI tiles never finished loading', page));
const ndvi = tiles.slice(beforeNdvi).filter((t) => t.url.includes('assets=ndvi') && t.url.includes('colormap_name=rdylgn'));
findings.ndvi_tiles = { requested: ndvi.length, ok: ndvi.filter((t) => t.status === 200).length };
if (!ndvi.some((t) => t.status === 200)) await fail('no NDVI tile was served', page);
await page.screenshot({ path: join(outDir, 'webmap-ndvi.png') });
findings.errors = errors;
if (errors.length) await fail(`page errors: ${errors.join(' | ')}`, page);
await browser.close();
console.log(JSON.stringify(findings));
