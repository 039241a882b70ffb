// Browser test of the web map in headless Chromium (Debian's, driven by playwright-core):
// the page loads over the offline basemap (land, coastlines, borders, place and country names
// drawn), mosaic tiles render into the canvas, moving the time slider asks for other tiles and
// the picture changes, the swipe moves, every layer shows a legend, changing the collection
// puts the swipe back in the middle, a click shows the STAC item with its image time, its pass
// quality and the pass timeline drawn from its JSON; with REDNIR_COLLECTION (an import of
// red/NIR uint16 bands), its uint16 band renders grey (not white) and its NDVI layer renders;
// a bare /map/ opens on the collection with the latest data. Screenshots are the artifacts.
//
// usage: node web/tests/webmap.mjs BASE_URL OUT_DIR TIME_COLLECTION CLICK_COLLECTION LON,LAT [REDNIR_COLLECTION]
// Prints one JSON line of findings; exits 1 on the first failed check.
import { chromium } from 'playwright-core';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [base, outDir, timeCollection, clickCollection, lonlat, rednirCollection] = process.argv.slice(2);
if (!lonlat) {
  console.error('usage: webmap.mjs BASE_URL OUT_DIR TIME_COLLECTION CLICK_COLLECTION LON,LAT');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const findings = {};
const fail = async (msg, page) => {
  if (page) await page.screenshot({ path: join(outDir, 'webmap-failure.png') }).catch(() => {});
  console.error(`FAIL: ${msg}`);
  if (errors.length) console.error(`page errors: ${errors.join(' | ')}`);
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

/** Pixel summary of the visible "after" side: how many pixels differ from the background (water and land). */
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
      // basemap water #cddbe6 and land #f2efe6
      const far = (r, g, b) => Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) > 12;
      if (far(0xcd, 0xdb, 0xe6) && far(0xf2, 0xef, 0xe6)) painted += 1;
      sum = (sum * 31 + data[i] * 7 + data[i + 1] * 3 + data[i + 2]) % 2147483647;
    }
    return { painted, pixels: data.length / 4, signature: sum };
  });

const resp = await page.goto(`${base}/map/?collection=${encodeURIComponent(timeCollection)}&before=0`, {
  waitUntil: 'domcontentloaded',
});
if (!resp || resp.status() !== 200) await fail(`GET /map/ answered ${resp && resp.status()}`, page);
await page
  .waitForFunction(() => window.downlink && window.downlink.state.loads >= 1, null, { timeout: 30000 })
  .catch(() => fail('the page never loaded its first collection', page));
await idle().catch(() => fail('tiles never finished loading', page));
// The basemap loads beside the first collection: wait for it to succeed or fail.
await page
  .waitForFunction(() => window.downlink.state.basemap !== undefined, null, { timeout: 30000 })
  .catch(() => fail('the basemap neither loaded nor failed', page));
findings.basemap_loaded = await page.evaluate(() => window.downlink.state.basemap);
findings.basemap_message = await page.evaluate(() => document.getElementById('message')?.textContent || '');
if (findings.basemap_loaded !== true) await fail('the basemap did not load', page);
const legend = () =>
  page.evaluate(() => {
    const l = document.getElementById('legend');
    const ramp = l.querySelector('.ramp');
    return { layer: l.dataset.layer, text: l.innerText.replace(/\s+/g, ' '), colormap: ramp ? ramp.dataset.colormap : null };
  });
findings.legend_visual = await legend();
if (!findings.legend_visual.text.includes('visual')) await fail(`no legend for the visual layer: ${JSON.stringify(findings.legend_visual)}`, page);
// Default rescales come from the asset statistics (STAC 1.1 `bands` or 1.0 `raster:bands`),
// and red + NIR bands make an NDVI layer.
findings.layers_from_metadata = await page.evaluate(() => {
  const stats = (mean, stddev) => ({ minimum: 0, maximum: 20000, mean, stddev });
  const tif = 'image/tiff; application=geotiff; profile=cloud-optimized';
  const v11 = window.downlink.layersOf([
    {
      assets: {
        data: {
          type: tif,
          data_type: 'uint16',
          bands: [
            { name: 'B04', 'eo:common_name': 'red', statistics: stats(600, 470) },
            { name: 'B08', 'eo:common_name': 'nir', statistics: stats(3100, 900) },
          ],
        },
      },
    },
  ]);
  const v10 = window.downlink.layersOf([
    { assets: { b1: { type: tif, 'raster:bands': [{ data_type: 'uint16', statistics: stats(1000, 100) }] } } },
  ]);
  return { v11: v11.map((l) => [l.id, l.kind, l.rescale]), v10: v10.map((l) => [l.id, l.kind, l.rescale]) };
});
{
  const want = JSON.stringify({
    v11: [
      ['data:1', 'gray', [[0, 1540]]],
      ['data:2', 'gray', [[1300, 4900]]],
      ['ndvi', 'ndvi-browser', [[-1, 1]]],
    ],
    v10: [['b1', 'gray', [[800, 1200]]]],
  });
  if (JSON.stringify(findings.layers_from_metadata) !== want) {
    await fail(`layers from STAC metadata: ${JSON.stringify(findings.layers_from_metadata)}, want ${want}`, page);
  }
}
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

// The basemap in context: zoomed out around the scenes, every basemap layer draws features.
await page.evaluate(() => {
  const m = window.downlink.maps.after;
  m.jumpTo({ center: m.getCenter(), zoom: 3.2 });
});
await idle().catch(() => fail('tiles never finished loading zoomed out', page));
await page.waitForFunction(
  () => ['basemap-coastline', 'basemap-places', 'basemap-countries'].every(
    (id) => window.downlink.maps.after.queryRenderedFeatures({ layers: [id] }).length > 0,
  ),
  null,
  { timeout: 15000, polling: 200 },
).catch(() => {});
findings.basemap = await page.evaluate(() => {
  const out = {};
  for (const id of ['basemap-land', 'basemap-coastline', 'basemap-borders', 'basemap-places', 'basemap-countries']) {
    const both = ['before', 'after'].every((k) => window.downlink.maps[k].getLayer(id));
    out[id] = both ? window.downlink.maps.after.queryRenderedFeatures({ layers: [id] }).length : -1;
  }
  // Nothing drawn across the world at the ±180° cut: no coastline step longer than 180°.
  let jump = 0;
  for (const line of window.downlink.maps.after.getSource('basemap-coastline').serialize().data.coordinates) {
    for (let i = 1; i < line.length; i += 1) jump = Math.max(jump, Math.abs(line[i][0] - line[i - 1][0]));
  }
  out.coastline_max_step_deg = jump;
  out.labels = window.downlink.maps.after
    .queryRenderedFeatures({ layers: ['basemap-places', 'basemap-countries'] })
    .slice(0, 8)
    .map((f) => f.properties.name);
  return out;
});
for (const [id, n] of Object.entries(findings.basemap)) {
  if (id === 'coastline_max_step_deg') {
    if (!(n < 180)) await fail(`the coastline jumps ${n}° at the antimeridian`, page);
  } else if (id !== 'labels' && !(n > 0)) await fail(`basemap layer ${id} draws nothing (${n})`, page);
}
await page.screenshot({ path: join(outDir, 'webmap-basemap.png') });

// Another collection; click the given place: the item panel with the pass quality.
await page.selectOption('#collection', clickCollection);
await page.waitForFunction(() => window.downlink.state.loads >= 2, null, { timeout: 30000 });
findings.swipe_after_change = await page.evaluate(() => window.downlink.state.swipe);
if (findings.swipe_after_change !== 0.5) await fail(`the swipe stayed at ${findings.swipe_after_change} after the collection changed`, page);
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
// Off the swipe handle, which sits in the middle again after the collection change.
await page.mouse.click(pt.x + 40, pt.y);
await page.waitForSelector('#panel:not([hidden]) #pass-quality', { timeout: 15000 }).catch(() => fail('the click showed no pass quality', page));
await page.waitForSelector('#panel:not([hidden]) #pass-timeline', { timeout: 15000 }).catch(() => fail('the panel shows no pass timeline', page));
findings.timeline = await page.evaluate(() => {
  const g = document.getElementById('pass-timeline');
  return { seconds: Number(g.dataset.seconds), polylines: g.querySelectorAll('polyline').length, texts: g.querySelectorAll('text').length };
});
if (!(findings.timeline.seconds > 0) || findings.timeline.polylines < 3) await fail(`pass timeline: ${JSON.stringify(findings.timeline)}`, page);
await page.locator('#pass-timeline').screenshot({ path: join(outDir, 'webmap-timeline.png') });
const panel = await page.innerText('#panel-body');
findings.panel = panel.replace(/\s+/g, ' ').slice(0, 400);
if (!/frames good\s*\d+/.test(panel)) await fail(`panel lacks frame counts: ${panel}`, page);
if (!/image time\s*\d{4}-\d\d-\d\d \d\d:\d\d/.test(panel)) await fail(`panel lacks the image time: ${panel}`, page);
await page.screenshot({ path: join(outDir, 'webmap.png') });

// The NDVI layer of the pass collection: colormapped tiles.
const layers = await page.$$eval('#layer option', (os) => os.map((o) => o.value));
findings.layers = layers;
// The panel covers the right of the map; close it for the layer screenshots.
await page.click('#panel-close');
if (!layers.includes('ndvi') || layers[0] !== 'visual') await fail(`layers of ${clickCollection}: ${layers}`, page);
const beforeNdvi = tiles.length;
await page.selectOption('#layer', 'ndvi');
await page.waitForTimeout(300);
await idle().catch(() => fail('NDVI tiles never finished loading', page));
const ndvi = tiles.slice(beforeNdvi).filter((t) => t.url.includes('assets=ndvi') && t.url.includes('colormap_name=rdylgn'));
findings.ndvi_tiles = { requested: ndvi.length, ok: ndvi.filter((t) => t.status === 200).length };
if (!ndvi.some((t) => t.status === 200)) await fail('no NDVI tile was served', page);
findings.legend_ndvi = await legend();
if (findings.legend_ndvi.layer !== 'ndvi' || findings.legend_ndvi.colormap !== 'rdylgn') await fail(`NDVI legend: ${JSON.stringify(findings.legend_ndvi)}`, page);
await page.screenshot({ path: join(outDir, 'webmap-ndvi.png') });

if (rednirCollection) {
  // Red/NIR bands come from the item's STAC metadata (`bands` with eo:common_name), as the
  // archive records them; nothing is added by the test.
  const loads = await page.evaluate(() => window.downlink.state.loads);
  await page.selectOption('#collection', rednirCollection);
  await page.waitForFunction((n) => window.downlink.state.loads > n, loads, { timeout: 30000 });
  await idle().catch(() => fail(`tiles of ${rednirCollection} never finished loading`, page));
  findings.rednir_layers = await page.evaluate(() => window.downlink.state.layers.map((l) => ({ id: l.id, kind: l.kind, rescale: l.rescale, from: l.from })));
  // A uint16 band as grey over its default rescale: grey pixels, few of them saturated white.
  const grey = findings.rednir_layers.find((l) => l.kind === 'gray' && /:2$/.test(l.id)) || findings.rednir_layers.find((l) => l.kind === 'gray');
  if (!grey) await fail(`no band layer in ${JSON.stringify(findings.rednir_layers)}`, page);
  await page.selectOption('#layer', grey.id);
  await page.waitForFunction((id) => document.getElementById('legend').dataset.layer === id, grey.id, { timeout: 5000 });
  await page.waitForTimeout(300);
  await idle().catch(() => fail('band tiles never finished loading', page));
  findings.legend_uint16 = await legend();
  findings.uint16 = await page.evaluate(() => {
    const src = window.downlink.maps.after.getCanvas();
    const c = document.createElement('canvas');
    c.width = src.width;
    c.height = src.height;
    const g = c.getContext('2d');
    g.drawImage(src, 0, 0);
    const { data } = g.getImageData(0, 0, src.width, src.height);
    let scene = 0;
    let white = 0;
    for (let i = 0; i < data.length; i += 4) {
      const [r, gg, b] = [data[i], data[i + 1], data[i + 2]];
      if (Math.abs(r - gg) < 3 && Math.abs(gg - b) < 3) {
        scene += 1;
        if (r >= 250) white += 1;
      }
    }
    return { scene_pixels: scene, white_fraction: scene ? white / scene : 1 };
  });
  if (findings.uint16.scene_pixels < 1000 || findings.uint16.white_fraction > 0.2) await fail(`uint16 band: ${JSON.stringify(findings.uint16)}`, page);
  await page.screenshot({ path: join(outDir, 'webmap-uint16.png') });

  findings.rednir_layer = findings.rednir_layers.find((l) => l.id === 'ndvi') || null;
  if (!findings.rednir_layer) await fail(`no NDVI layer for the red/NIR item: ${JSON.stringify(findings.rednir_layers)}`, page);
  await page.selectOption('#layer', 'ndvi');
  await page.waitForFunction(() => document.getElementById('legend').dataset.layer === 'ndvi', null, { timeout: 5000 });
  await page.waitForTimeout(300);
  await idle().catch(() => fail('red/NIR NDVI tiles never finished loading', page));
  findings.legend_rednir = await legend();
  findings.rednir_ndvi = await page.evaluate(() => {
    const src = window.downlink.maps.after.getCanvas();
    const c = document.createElement('canvas');
    c.width = src.width;
    c.height = src.height;
    const g = c.getContext('2d');
    g.drawImage(src, 0, 0);
    const { data } = g.getImageData(0, 0, src.width, src.height);
    let green = 0;
    let red = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 1] > data[i] + 30 && data[i + 1] > data[i + 2] + 20) green += 1;
      if (data[i] > data[i + 1] + 60 && data[i] > data[i + 2] + 60) red += 1;
    }
    return { green, red };
  });
  if (findings.rednir_ndvi.green < 1000) await fail(`the red/NIR NDVI layer shows no vegetation: ${JSON.stringify(findings.rednir_ndvi)}`, page);
  await page.screenshot({ path: join(outDir, 'webmap-ndvi-rednir.png') });
  await page.unroute('**/stac/search?*');
}

// A bare address opens on the collection with the latest data.
const fresh = await browser.newPage({ viewport: { width: 900, height: 600 } });
fresh.on('pageerror', (e) => errors.push(String(e)));
await fresh.goto(`${base}/map/`, { waitUntil: 'domcontentloaded' });
await fresh.waitForFunction(() => window.downlink && window.downlink.state.loads >= 1, null, { timeout: 30000 });
findings.default_collection = await fresh.$eval('#collection', (s) => s.value);
await fresh.close();
findings.errors = errors;
if (errors.length) await fail(`page errors: ${errors.join(' | ')}`, page);
await browser.close();
console.log(JSON.stringify(findings));
