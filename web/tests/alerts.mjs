// Browser test of the web map's change-alerts layer in headless Chromium (playwright-core):
// opened with the alerts filter in the address, the alert polygons render on the map, a click
// on one shows its area, dates and before/after pair, and the address keeps the filter.
//
// usage: node web/tests/alerts.mjs BASE_URL OUT_DIR COLLECTION LON,LAT
// Prints one JSON line of findings; exits 1 on the first failed check.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, outDir, collection, lonlat] = process.argv.slice(2);
if (!lonlat) {
  console.error('usage: alerts.mjs BASE_URL OUT_DIR COLLECTION LON,LAT');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const findings = {};
const fail = async (msg, page) => {
  if (page) await page.screenshot({ path: join(outDir, 'alerts-failure.png') }).catch(() => {});
  console.error(`FAIL: ${msg}`);
  console.log(JSON.stringify(findings));
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
const [lon, lat] = lonlat.split(',').map(Number);
const url = `${base}/map/?collection=${collection}&alerts=1&alerts_confidence=low,high&center=${lon},${lat}&zoom=15.5`;
await page.goto(url);
await page
  .waitForFunction(
    () => {
      const d = window.downlink;
      return d && d.alerts.loads > 0 && d.state.loads > 0 && d.maps.after.loaded() && d.maps.after.areTilesLoaded();
    },
    null,
    { timeout: 60000, polling: 100 },
  )
  .catch(() => fail('the map and its alerts did not load', page));
// Count the alerts drawn once the GeoJSON tiles have settled (up to 15 s).
const drawn = () =>
  page.evaluate(() => {
    const m = window.downlink.maps.after;
    if (!m.getLayer('alerts-fill')) return 0;
    return new Set(m.queryRenderedFeatures({ layers: ['alerts-fill'] }).map((f) => f.properties.id)).size;
  });
for (let i = 0; i < 75 && (await drawn()) < 2; i += 1) await page.waitForTimeout(200);
findings.rendered = await drawn();
findings.fetched = await page.evaluate(() => window.downlink.alerts.data.features.length);
if (findings.rendered < 2) await fail(`expected 2 rendered alerts, got ${findings.rendered}`, page);
// Click the alert at LON,LAT on the "after" side (right of the swipe line).
const pt = await page.evaluate(([x, y]) => {
  const m = window.downlink.maps.after;
  window.downlink.setSwipe(0.05);
  const p = m.project([x, y]);
  const r = m.getCanvas().getBoundingClientRect();
  return { x: r.left + p.x, y: r.top + p.y };
}, [lon, lat]);
await page.mouse.click(pt.x, pt.y);
await page.waitForSelector('#panel:not([hidden])', { timeout: 10000 }).catch(() => fail('no panel after the click', page));
findings.panel = await page.textContent('#panel-body');
findings.address = await page.evaluate(() => location.search);
await page.screenshot({ path: join(outDir, 'alerts.png') });
findings.errors = errors;
console.log(JSON.stringify(findings));
await browser.close();
if (!findings.panel.includes(' ha') || !findings.panel.includes('Before / after')) process.exit(1);
