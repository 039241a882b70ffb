// Downlink analyst map: the station's STAC collections as time-filtered mosaics over an offline
// basemap, a before/after swipe, a legend for the layer shown, and a click that shows the STAC
// item and the quality of the pass it came from (its timeline drawn from the pass's JSON).
// Everything it reads comes from the daemon: its STAC API (../stac relative to this page), the
// pass API (/api/v1/passes) and the embedded basemap files.
//
// Layer stack, bottom to top: background (water), basemap land, scenes (the mosaic), [the change
// alerts (alertsSetLayers)], footprints,
// coastlines, borders, place names, country names.
import * as maplibregl from './vendor/maplibre-gl.mjs';
import { ATTRIBUTION, OVER, WATER, addBasemap, loadBasemap, showBasemap } from './basemap.js';

const STAC = new URL('../stac/', location.href);
const MAX_PAGES = 20;
const PAGE = 500;

const $ = (id) => document.getElementById(id);
// The address the page was opened with: its view applies to the first collection shown only.
let initial = new URLSearchParams(location.search);
const state = {
  collection: null, // STAC collection JSON
  items: [], // features of the collection, newest first
  times: [], // distinct item datetimes, oldest first
  before: 0,
  after: 0,
  swipe: 0.5, // fraction of the width shown as "before"
  layer: 'visual', // id of the layer rendered by the mosaic (see layersOf)
  layers: [], // layers the collection offers
  loads: 0, // collection loads finished (tests wait on it)
};

function message(text) {
  $('message').textContent = text || '';
}

async function getJson(url, init) {
  const r = await fetch(url, init);
  if (!r.ok) {
    let detail = '';
    try {
      detail = (await r.json()).description || '';
    } catch {
      /* not JSON */
    }
    throw new Error(`${r.status} ${r.statusText} from ${url}${detail ? `: ${detail}` : ''}`);
  }
  return r.json();
}

/** Every item of a collection (bounded), following `next` links. */
async function collectionItems(id) {
  const out = [];
  let url = new URL(`search?collections=${encodeURIComponent(id)}&limit=${PAGE}`, STAC).href;
  for (let page = 0; url && page < MAX_PAGES; page += 1) {
    const fc = await getJson(url);
    out.push(...(fc.features || []));
    const next = (fc.links || []).find((l) => l.rel === 'next');
    url = next && (!next.method || next.method === 'GET') ? next.href : null;
  }
  return out;
}

// ---- layers: what each asset renders as, with rescales from the asset statistics ----

/** ColorBrewer RdYlGn, 11 classes: the server's `rdylgn` colormap, for legends and browser NDVI. */
const RDYLGN = [
  [0xa5, 0x00, 0x26], [0xd7, 0x30, 0x27], [0xf4, 0x6d, 0x43], [0xfd, 0xae, 0x61],
  [0xfe, 0xe0, 0x8b], [0xff, 0xff, 0xbf], [0xd9, 0xef, 0x8b], [0xa6, 0xd9, 0x6a],
  [0x66, 0xbd, 0x63], [0x1a, 0x98, 0x50], [0x00, 0x68, 0x37],
];
/** The 256-entry table, interpolated linearly between the anchors (as the server does). */
const RDYLGN_256 = Array.from({ length: 256 }, (_, i) => {
  const x = (i / 255) * (RDYLGN.length - 1);
  const k = Math.min(RDYLGN.length - 2, Math.floor(x));
  const f = x - k;
  return RDYLGN[k].map((c, j) => Math.round(c + (RDYLGN[k + 1][j] - c) * f));
});
const COLORMAPS = {
  rdylgn: { title: 'RdYlGn', css: `linear-gradient(to right, ${RDYLGN.map((c) => `rgb(${c})`).join(', ')})` },
  gray: { title: 'grey', css: 'linear-gradient(to right, #000, #fff)' },
};

/** Full ranges of data types without statistics (reflectance ×10000 for 16-bit integers). */
const TYPE_RANGE = {
  uint8: [0, 255],
  int8: [-128, 127],
  uint16: [0, 10000],
  int16: [0, 10000],
  uint32: [0, 10000],
  int32: [0, 10000],
  float16: [0, 1],
  float32: [0, 1],
  float64: [0, 1],
};

/** The bands of an asset: STAC 1.1 `bands`, or the 1.0 `raster:bands` + `eo:bands`. */
function bandsOf(asset) {
  const b11 = Array.isArray(asset.bands) ? asset.bands : [];
  const rb = asset['raster:bands'] || [];
  const eb = asset['eo:bands'] || [];
  const n = Math.max(b11.length, rb.length, eb.length, 1);
  return Array.from({ length: n }, (_, i) => {
    const a = b11[i] || {};
    const r = rb[i] || {};
    const e = eb[i] || {};
    const text = `${a.name || e.name || ''} ${a.description || e.description || r.description || ''}`;
    const common =
      a['eo:common_name'] || e.common_name || e['eo:common_name'] || (/\bnir\b/i.test(text) ? 'nir' : /\bred\b/i.test(text) ? 'red' : undefined);
    return {
      index: i + 1,
      name: a.name || e.name || r.name || '',
      common,
      stats: a.statistics || r.statistics || (n === 1 ? asset.statistics : undefined),
      dataType: a.data_type || r.data_type || asset.data_type,
      scale: a.scale ?? r.scale ?? asset.scale ?? 1,
      offset: a.offset ?? r.offset ?? asset.offset ?? 0,
    };
  });
}

/** A default rescale of a band: mean ± 2σ within [min, max] of its statistics, else its type's range. */
function defaultRange(band) {
  const s = band.stats || {};
  if (Number.isFinite(s.minimum) && Number.isFinite(s.maximum) && s.maximum > s.minimum) {
    let lo = s.minimum;
    let hi = s.maximum;
    if (Number.isFinite(s.mean) && Number.isFinite(s.stddev) && s.stddev > 0) {
      lo = Math.max(lo, s.mean - 2 * s.stddev);
      hi = Math.min(hi, s.mean + 2 * s.stddev);
    }
    if (hi > lo) return { range: [lo, hi], from: 'asset statistics (mean ± 2σ)' };
  }
  const t = TYPE_RANGE[band.dataType];
  if (t) return { range: t, from: `${band.dataType} default (no statistics)` };
  return { range: [0, 255], from: 'default (no statistics or data type)' };
}

const round = (v) => (Math.abs(v) >= 100 ? Math.round(v) : Number(v.toPrecision(3)));

/**
 * Layers a collection offers, from the COG assets of its newest item: `visual` first, the
 * server's `ndvi` asset (RdYlGn over -1…1), each band of the other assets as grey with a
 * rescale from its statistics, and an NDVI computed in the browser for an item with red and NIR
 * bands but no NDVI asset.
 */
function layersOf(items) {
  const assets = Object.entries(items[0]?.assets || {}).filter(([, a]) => (a.type || '').startsWith('image/tiff'));
  const out = [];
  const found = {};
  for (const [key, a] of assets) {
    const bands = bandsOf(a);
    for (const b of bands) if (b.common && !found[b.common]) found[b.common] = { asset: key, band: b };
    if (key === 'visual') {
      const typed = bands[0].dataType && bands[0].dataType !== 'uint8';
      const stats = typed ? bands.slice(0, 3).map(defaultRange) : null;
      out.push({
        id: 'visual',
        label: 'visual',
        asset: key,
        kind: 'rgb',
        rescale: stats ? stats.map((s) => s.range) : null,
        from: stats ? stats[0].from : '8-bit as stored',
      });
    } else if (key === 'ndvi') {
      out.push({ id: 'ndvi', label: 'ndvi (RdYlGn, -1…1)', asset: key, kind: 'ndvi', colormap: 'rdylgn', rescale: [[-1, 1]], from: 'NDVI asset' });
    } else {
      for (const b of bands) {
        const d = defaultRange(b);
        const multi = bands.length > 1;
        const name = [b.common, b.name].filter(Boolean)[0];
        out.push({
          id: multi ? `${key}:${b.index}` : key,
          label: multi ? `${key} band ${b.index}${name ? ` (${name})` : ''}` : `${key}${name && name !== key ? ` (${name})` : ''}`,
          asset: key,
          bidx: multi ? b.index : null,
          kind: 'gray',
          rescale: [d.range],
          from: d.from,
        });
      }
    }
  }
  if (!out.some((l) => l.kind === 'ndvi') && found.red && found.nir) {
    const part = ({ asset, band }) => ({ asset, bidx: band.index, range: defaultRange(band).range, scale: band.scale, offset: band.offset });
    out.push({
      id: 'ndvi',
      label: 'ndvi (red/NIR, RdYlGn, -1…1)',
      kind: 'ndvi-browser',
      colormap: 'rdylgn',
      rescale: [[-1, 1]],
      red: part(found.red),
      nir: part(found.nir),
      from: `(NIR − red) / (NIR + red) from ${found.red.asset} band ${found.red.band.index} and ${found.nir.asset} band ${found.nir.band.index}`,
    });
  }
  out.sort((a, b) => (a.id === 'visual' ? -1 : b.id === 'visual' ? 1 : 0));
  return out.length ? out : [{ id: 'visual', label: 'visual', asset: 'visual', kind: 'rgb', rescale: null, from: '' }];
}

function currentLayer() {
  return state.layers.find((l) => l.id === state.layer) || state.layers[0];
}

/** Query of one asset's tiles. */
function assetQuery(asset, bidx, rescale, colormap) {
  const q = new URLSearchParams({ assets: asset });
  if (bidx) q.set('bidx', String(bidx));
  for (const r of rescale || []) q.append('rescale', r.map(round).join(','));
  if (colormap) q.set('colormap_name', colormap);
  return q;
}

/** Mosaic tiles: the newest scene of the collection up to `time` wherever one has data. */
function tileUrl(collectionId, time) {
  const l = currentLayer() || { asset: 'visual' };
  const base = new URL(
    `collections/${encodeURIComponent(collectionId)}/tiles/WebMercatorQuad/`,
    STAC,
  ).href;
  if (l.kind === 'ndvi-browser') {
    // Two grey tiles (red, NIR) combined in the browser: see the `ndvi` protocol below.
    const q = new URLSearchParams({
      base,
      red: assetQuery(l.red.asset, l.red.bidx, [l.red.range]).toString(),
      nir: assetQuery(l.nir.asset, l.nir.bidx, [l.nir.range]).toString(),
      rr: l.red.range.join(','),
      nr: l.nir.range.join(','),
      so: [l.red.scale, l.red.offset, l.nir.scale, l.nir.offset].join(','),
    });
    if (time) q.set('datetime', `../${time}`);
    return `ndvi://tile/{z}/{x}/{y}?${q.toString()}`;
  }
  const q = assetQuery(l.asset, l.bidx, l.rescale, l.colormap);
  if (time) q.set('datetime', `../${time}`);
  // Keep the {z}/{x}/{y} template intact; only the query is encoded.
  return `${base}{z}/{x}/{y}.png?${q.toString()}`;
}

/** Decodes a grey PNG tile into values in data units (NaN where masked), or null for no data. */
async function greyTile(url, [lo, hi], signal) {
  const r = await fetch(url, { signal });
  if (r.status === 204) return null;
  if (!r.ok) throw new Error(`${r.status} ${r.statusText} from ${url}`);
  const bmp = await createImageBitmap(await r.blob());
  const c = new OffscreenCanvas(bmp.width, bmp.height);
  const g = c.getContext('2d');
  g.drawImage(bmp, 0, 0);
  const { data } = g.getImageData(0, 0, bmp.width, bmp.height);
  const out = new Float32Array(bmp.width * bmp.height);
  for (let i = 0; i < out.length; i += 1) {
    out[i] = data[i * 4 + 3] === 0 ? NaN : lo + (data[i * 4] / 255) * (hi - lo);
  }
  return { values: out, width: bmp.width, height: bmp.height };
}

// NDVI of an item with red and NIR bands but no NDVI asset: the server renders each band as a
// grey tile rescaled over its statistics; here both are read back to data units, scaled to
// reflectance (band scale/offset), and (NIR − red) / (NIR + red) is coloured with RdYlGn over
// -1…1. The 8-bit tiles quantise each band to 1/255 of its range.
maplibregl.addProtocol('ndvi', async (params, abort) => {
  const u = new URL(params.url.replace(/^ndvi:/, 'http:'));
  const [z, x, y] = u.pathname.split('/').filter(Boolean);
  const p = u.searchParams;
  const tile = (which) => {
    const q = new URLSearchParams(p.get(which));
    if (p.get('datetime')) q.set('datetime', p.get('datetime'));
    return `${p.get('base')}${z}/${x}/${y}.png?${q}`;
  };
  const [rs, ro, ns, no] = p.get('so').split(',').map(Number);
  const [red, nir] = await Promise.all([
    greyTile(tile('red'), p.get('rr').split(',').map(Number), abort.signal),
    greyTile(tile('nir'), p.get('nr').split(',').map(Number), abort.signal),
  ]);
  const w = red?.width || nir?.width || 256;
  const h = red?.height || nir?.height || 256;
  const c = new OffscreenCanvas(w, h);
  const g = c.getContext('2d');
  const img = g.createImageData(w, h);
  if (red && nir) {
    for (let i = 0; i < w * h; i += 1) {
      const r = red.values[i] * rs + ro;
      const n = nir.values[i] * ns + no;
      if (!(n + r > 0)) continue;
      const v = (n - r) / (n + r);
      const k = Math.max(0, Math.min(255, Math.floor(((v + 1) / 2) * 255)));
      const [cr, cg, cb] = RDYLGN_256[k];
      img.data.set([cr, cg, cb, 255], i * 4);
    }
  }
  g.putImageData(img, 0, 0);
  return { data: await createImageBitmap(c) };
});

/** The legend of the layer shown: its colormap or ramp with the range, and where the range comes from. */
function renderLegend() {
  const box = $('legend');
  const l = currentLayer();
  box.replaceChildren();
  if (!l || !state.collection) return;
  box.append(el('div', l.label, { class: 'title' }));
  if (l.kind === 'rgb') {
    const row = el('div');
    for (const [c, name] of [['#d33', 'red'], ['#3a3', 'green'], ['#33d', 'blue']]) {
      row.append(el('span', null, { class: 'swatch', style: `background:${c}` }), el('span', `${name}  `));
    }
    box.append(row);
    const r = l.rescale ? ` · rescale ${l.rescale.map((x) => x.map(round).join('…')).join(', ')}` : '';
    box.append(el('div', `RGB composite of bands 1, 2, 3${r}`, { class: 'note' }));
  } else {
    const cm = COLORMAPS[l.colormap || 'gray'];
    box.append(el('div', null, { class: 'ramp', style: `background:${cm.css}`, 'data-colormap': l.colormap || 'gray' }));
    const [lo, hi] = l.rescale[0];
    const ticks = el('div', null, { class: 'ticks' });
    const mid = (lo + hi) / 2;
    for (const v of [lo, mid, hi]) ticks.append(el('span', round(v)));
    box.append(ticks);
    box.append(el('div', `${cm.title} · ${l.from}`, { class: 'note' }));
  }
  box.dataset.layer = l.id;
}

function footprints() {
  return {
    type: 'FeatureCollection',
    features: state.items
      .filter((f) => f.geometry)
      .map((f) => ({ type: 'Feature', geometry: f.geometry, properties: { id: f.id } })),
  };
}

function style() {
  // No `glyphs`: labels are drawn with the browser's local fonts, nothing is fetched.
  return {
    version: 8,
    sources: {},
    layers: [{ id: 'background', type: 'background', paint: { 'background-color': WATER } }],
  };
}

function makeMap(container) {
  const q = new URLSearchParams(location.search);
  const center = (q.get('center') || '').split(',').map(Number);
  return new maplibregl.Map({
    container,
    style: style(),
    center: center.length === 2 && center.every(Number.isFinite) ? center : [0, 0],
    zoom: Number(q.get('zoom')) || 1,
    attributionControl: container === 'map-after' ? { compact: true, customAttribution: ATTRIBUTION } : false,
    fadeDuration: 0,
    // Keeps the last frame readable (tests and screenshots).
    canvasContextAttributes: { preserveDrawingBuffer: true },
  });
}

const maps = { before: makeMap('map-before'), after: makeMap('map-after') };
maps.after.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'bottom-right');
maps.after.addControl(new maplibregl.ScaleControl(), 'bottom-left');

maps.after.on('moveend', () => saveView());

// Keep the two maps on the same view.
let syncing = false;
for (const [a, b] of [
  [maps.before, maps.after],
  [maps.after, maps.before],
]) {
  a.on('move', () => {
    if (syncing) return;
    syncing = true;
    b.jumpTo({ center: a.getCenter(), zoom: a.getZoom(), bearing: a.getBearing(), pitch: a.getPitch() });
    syncing = false;
  });
}

// Each map's first 'load' (its style is ready for sources and layers), caught when it happens:
// `map.loaded()` is false again whenever tiles are loading.
const ready = new Map(Object.values(maps).map((m) => [m, new Promise((res) => m.once('load', res))]));
function loaded(map) {
  return ready.get(map);
}

// The basemap, added to both maps once their style has loaded.
const basemap = loadBasemap()
  .then(async (data) => {
    await Promise.all([loaded(maps.before), loaded(maps.after)]);
    for (const m of Object.values(maps)) addBasemap(m, data);
    state.basemap = true;
  })
  .catch((e) => {
    state.basemap = false;
    message(`basemap unavailable: ${e.message}`);
  });

/** The first basemap layer above the imagery: scenes and overlays go under it. */
function overLayer(map) {
  return OVER.find((id) => map.getLayer(id));
}

/**
 * Overlays drawn over the scenes and under the basemap lines (the change alerts layer is added
 * between 'scenes' and 'footprints' by alertsSetLayers once the first collection is shown).
 */
function addOverlays(map) {
  setFootprints(map);
}

function setScenes(map, collectionId, time) {
  const tiles = [tileUrl(collectionId, time)];
  const src = map.getSource('scenes');
  if (src) {
    src.setTiles(tiles);
    return;
  }
  map.addSource('scenes', { type: 'raster', tiles, tileSize: 256, minzoom: 0, maxzoom: 18 });
  map.addLayer(
    { id: 'scenes', type: 'raster', source: 'scenes', paint: { 'raster-resampling': 'nearest' } },
    map.getLayer('footprints') ? 'footprints' : overLayer(map),
  );
}

function setFootprints(map) {
  const data = footprints();
  const src = map.getSource('footprints');
  if (src) {
    src.setData(data);
  } else {
    map.addSource('footprints', { type: 'geojson', data });
    map.addLayer(
      {
        id: 'footprints',
        type: 'line',
        source: 'footprints',
        paint: { 'line-color': '#d2552a', 'line-width': 1.2 },
      },
      overLayer(map),
    );
  }
  map.setLayoutProperty('footprints', 'visibility', $('footprints').checked ? 'visible' : 'none');
}

function timeLabel(i) {
  const t = state.times[i];
  return t ? t.replace('T', ' ').replace(/(\.\d+)?(Z|\+00:00)$/, ' UTC') : '—';
}

/** Keeps the page address in step with the view, so a link reopens the same comparison. */
function saveView() {
  if (!state.collection) return;
  const m = maps.after;
  const c = m.getCenter();
  const q = new URLSearchParams({
    collection: state.collection.id,
    layer: state.layer,
    before: String(state.before),
    after: String(state.after),
    center: `${c.lng.toFixed(5)},${c.lat.toFixed(5)}`,
    zoom: m.getZoom().toFixed(2),
  });
  alertsKeepInAddress(q);
  history.replaceState(null, '', `${location.pathname}?${q}`);
}

function applyTimes() {
  const id = state.collection.id;
  $('before-label').textContent = timeLabel(state.before);
  $('after-label').textContent = timeLabel(state.after);
  setScenes(maps.before, id, state.times[state.before]);
  setScenes(maps.after, id, state.times[state.after]);
  renderLegend();
  saveView();
}

async function selectCollection(col) {
  state.collection = col;
  message(`loading ${col.id}…`);
  state.items = await collectionItems(col.id);
  state.times = [...new Set(state.items.map((f) => f.properties.datetime).filter(Boolean))].sort(
    (a, b) => Date.parse(a) - Date.parse(b),
  );
  state.layers = layersOf(state.items);
  const layerSelect = $('layer');
  layerSelect.replaceChildren(...state.layers.map((l) => el('option', l.label, { value: l.id })));
  const q = initial;
  initial = new URLSearchParams();
  const wantedLayer = q.get('layer');
  state.layer = state.layers.some((l) => l.id === wantedLayer) ? wantedLayer : state.layers[0].id;
  layerSelect.value = state.layer;
  const last = Math.max(0, state.times.length - 1);
  for (const id of ['before', 'after']) {
    $(id).max = String(last);
    $(id).disabled = state.times.length < 2;
  }
  state.before = Math.min(last, Number(q.get('before') ?? 0) || 0);
  state.after = Math.min(last, Number(q.get('after') ?? last));
  $('before').value = String(state.before);
  $('after').value = String(state.after);
  await Promise.all([loaded(maps.before), loaded(maps.after), basemap]);
  applyTimes();
  addOverlays(maps.before);
  addOverlays(maps.after);
  const bbox = col.extent?.spatial?.bbox?.[0];
  if (!q.get('center') && bbox && bbox.length >= 4 && state.items.length) {
    maps.after.fitBounds([bbox[0], bbox[1], bbox[2], bbox[3]], { padding: 40, animate: false, maxZoom: 12 });
  }
  message(state.items.length ? '' : `${col.id} has no items yet`);
  state.loads += 1;
}

function setSwipe(fraction) {
  state.swipe = Math.min(1, Math.max(0, fraction));
  const pct = `${(state.swipe * 100).toFixed(2)}%`;
  $('swipe').style.left = pct;
  $('map-after').style.clipPath = `inset(0 0 0 ${pct})`;
}

function initSwipe() {
  const handle = $('swipe');
  const box = () => $('maps').getBoundingClientRect();
  handle.addEventListener('pointerdown', (e) => {
    handle.setPointerCapture(e.pointerId);
    const move = (ev) => setSwipe((ev.clientX - box().left) / box().width);
    const up = () => {
      handle.removeEventListener('pointermove', move);
      handle.removeEventListener('pointerup', up);
    };
    handle.addEventListener('pointermove', move);
    handle.addEventListener('pointerup', up);
  });
  handle.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowLeft') setSwipe(state.swipe - 0.05);
    if (e.key === 'ArrowRight') setSwipe(state.swipe + 0.05);
  });
  setSwipe(state.swipe);
}

// ---- the item panel ----

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function table(rows) {
  const t = el('table');
  for (const [k, v, cls] of rows) {
    if (v === undefined || v === null || v === '') continue;
    const tr = el('tr');
    tr.append(el('td', k));
    const td = el('td', typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : v);
    if (cls) td.className = cls;
    tr.append(td);
    t.append(tr);
  }
  return t;
}

const fixed = (v) => (typeof v === 'number' ? v.toFixed(2) : '?');
const utc = (t) => (t ? String(t).replace('T', ' ').replace(/(\.\d+)?(Z|\+00:00)$/, ' UTC') : '');

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

/**
 * The pass timeline from its JSON: good and rejected frames/s, RS corrections/s and the lock
 * strip over UTC time, with AOS/LOS lines and the gaps shaded; each plot has a labelled y axis.
 */
function timelineChart(t) {
  const W = 320;
  const H = 210;
  const L = 40; // left axis column
  const R = 8;
  const n = Math.max(1, t.frames_good.length, Math.ceil(t.los_s || 0));
  const X = (s) => L + ((W - L - R) * s) / n;
  const panels = [
    { top: 8, h: 78, title: 'frames/s', series: [[t.frames_good, '#28a03c'], [t.frames_rejected, '#d22828']] },
    { top: 100, h: 58, title: 'RS corr./s', series: [[t.rs_corrected, '#f08c14']] },
  ];
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, id: 'pass-timeline', role: 'img', 'aria-label': 'pass timeline' });
  g.dataset.seconds = String(t.frames_good.length);
  const aos = Date.parse(t.aos);
  const clock = (s) => new Date(aos + s * 1000).toISOString().slice(11, 19);
  for (const p of panels) {
    const max = Math.max(1, ...p.series.flatMap(([v]) => v));
    const Y = (v) => p.top + p.h - (p.h * v) / max;
    for (const gap of t.gaps || []) {
      g.append(svg('rect', { class: 'gap', x: X(gap.start_s), y: p.top, width: Math.max(1, X(gap.end_s) - X(gap.start_s)), height: p.h, fill: '#ffcdd7' }));
    }
    g.append(svg('line', { x1: L, y1: p.top, x2: L, y2: p.top + p.h, stroke: '#000' }));
    g.append(svg('line', { x1: L, y1: p.top + p.h, x2: W - R, y2: p.top + p.h, stroke: '#000' }));
    for (const v of [0, max]) {
      g.append(svg('text', { x: L - 3, y: Y(v) + 3, 'text-anchor': 'end' }, v));
    }
    g.append(svg('text', { x: 9, y: p.top + p.h / 2, transform: `rotate(-90 9 ${p.top + p.h / 2})`, 'text-anchor': 'middle' }, p.title));
    for (const [values, colour] of p.series) {
      const pts = values.flatMap((v, i) => [`${X(i).toFixed(1)},${Y(v).toFixed(1)}`, `${X(i + 1).toFixed(1)},${Y(v).toFixed(1)}`]);
      if (pts.length) g.append(svg('polyline', { points: pts.join(' '), fill: 'none', stroke: colour, 'stroke-width': 1.3 }));
    }
  }
  const lockTop = 168;
  g.append(svg('text', { x: L - 3, y: lockTop + 8, 'text-anchor': 'end' }, 'lock'));
  for (const r of t.lock || []) {
    g.append(svg('rect', { x: X(r.start_s), y: lockTop, width: Math.max(0.5, X(r.end_s) - X(r.start_s)), height: 10, fill: r.locked ? '#28a03c' : '#aaa' }));
  }
  // A LOS close to AOS (a short or replayed pass) is labelled on its right, a line lower.
  const near = X(t.los_s || 0) - X(0) < 60;
  for (const [s, name, anchor, y] of [[0, 'AOS', 'start', 16], [t.los_s || 0, 'LOS', near ? 'start' : 'end', near ? 27 : 16]]) {
    g.append(svg('line', { class: 'mark', x1: X(s), y1: 8, x2: X(s), y2: lockTop + 10, stroke: '#2846a0', 'stroke-width': 1.5 }));
    g.append(svg('text', { x: X(s) + (anchor === 'start' ? 3 : -3), y, 'text-anchor': anchor, fill: '#2846a0' }, `${name} ${clock(s)}`));
  }
  for (const k of n >= 4 ? [0, 0.5, 1] : [0, 1]) {
    const s = n * k;
    g.append(svg('text', { x: X(s), y: lockTop + 24, 'text-anchor': k === 0 ? 'start' : k === 1 ? 'end' : 'middle' }, clock(s)));
  }
  g.append(svg('text', { x: (L + W) / 2, y: H - 2, 'text-anchor': 'middle', fill: '#55657a' }, 'UTC'));
  return g;
}

function qualityRows(q) {
  const bad = (n) => (n > 0 ? 'bad' : undefined);
  return [
    ['frames good', q.frames_good],
    ['frames rejected', q.frames_rejected, bad(q.frames_rejected)],
    ['frames missing', q.frames_missing, bad(q.frames_missing)],
    ['RS corrected', q.rs_corrected],
    ['RS uncorrectable', q.rs_uncorrectable, bad(q.rs_uncorrectable)],
    ['packets', q.packets],
    ['sequence gaps', q.packet_sequence_gaps],
  ];
}

async function showItem(item) {
  const body = $('panel-body');
  body.replaceChildren();
  const p = item.properties || {};
  body.append(el('h2', item.id));
  // The time the image was taken (the item's acquisition time), not when a pass was received
  // or replayed: that is the pass record's AOS/LOS below.
  const span = p.start_datetime && p.end_datetime ? `${utc(p.start_datetime)} – ${utc(p.end_datetime).slice(11)}` : utc(p.datetime);
  const info = table([
      ['image time', span],
      ['collection', item.collection],
      ['platform', p.platform],
      ['instruments', (p.instruments || []).join(', ')],
      ['GSD (m)', p.gsd],
      ['sun elevation', p['view:sun_elevation']],
      ['cloud cover', p['eo:cloud_cover']],
    ]);
  info.id = 'item-info';
  body.append(info);
  const q = p['downlink:link_quality'];
  if (q) {
    body.append(el('h3', 'Pass quality'));
    const t = table(qualityRows(q));
    t.id = 'pass-quality';
    body.append(t);
    const ch = q.image_channels || {};
    const rows = Object.entries(ch).map(([apid, c]) => [
      `APID ${apid}`,
      `${(100 * (c.valid_fraction ?? 0)).toFixed(1)} % lines, ${c.packets_ok} ok, ${c.packets_missing} missing`,
    ]);
    if (rows.length) body.append(table(rows));
  }
  const qa = p['downlink:geolocation_qa'];
  if (Array.isArray(qa) && qa.length) {
    body.append(el('h3', 'Geolocation check'));
    body.append(
      table(
        qa.map((r) => [
          `APID ${r.apid}`,
          r.offset_km == null
            ? `no estimate (confidence ${fixed(r.confidence)})`
            : `${fixed(r.offset_east_km)} km E, ${fixed(r.offset_north_km)} km N, confidence ${fixed(r.confidence)}${r.reliable ? '' : ' (not reliable)'}`,
        ]),
      ),
    );
  }
  const via = (item.links || []).find((l) => l.rel === 'via');
  if (via) {
    try {
      const rec = await getJson(via.href);
      body.append(el('h3', 'Pass record'));
      body.append(
        table([
          ['pass', rec.id],
          ['input', rec.input],
          ['received (AOS)', utc(rec.aos)],
          ['received (LOS)', utc(rec.los)],
        ]),
      );
      body.append(el('h3', 'Pass timeline (reception)'));
      try {
        body.append(timelineChart(await getJson(`${via.href}/timeline`)));
      } catch {
        // Passes recorded before timelines were kept: the picture only.
        body.append(el('img', null, { src: `${via.href}/plot.png`, alt: 'pass plot' }));
      }
      const links = el('p');
      links.append(
        el('a', 'pass record (JSON)', { href: via.href, target: '_blank' }),
        ' · ',
        el('a', 'timeline (JSON)', { href: `${via.href}/timeline`, target: '_blank' }),
        ' · ',
        el('a', 'plot (PNG)', { href: `${via.href}/plot.png`, target: '_blank' }),
      );
      body.append(links);
    } catch (e) {
      body.append(el('p', `pass record unavailable: ${e.message}`));
    }
  }
  const assets = Object.entries(item.assets || {});
  if (assets.length) {
    body.append(el('h3', 'Assets'));
    const ul = el('ul');
    for (const [k, a] of assets) {
      const li = el('li');
      li.append(el('a', `${k}${a.title ? ` — ${a.title}` : ''}`, { href: a.href }));
      ul.append(li);
    }
    body.append(ul);
  }
  const self = (item.links || []).find((l) => l.rel === 'self');
  if (self) body.append(el('a', 'STAC item (JSON)', { href: self.href, target: '_blank' }));
  $('panel').hidden = false;
}

async function onClick(e, side) {
  if (showAlertAt(side === 'before' ? maps.before : maps.after, e)) return;
  if (!state.collection) return;
  const time = state.times[side === 'before' ? state.before : state.after];
  const body = {
    collections: [state.collection.id],
    intersects: { type: 'Point', coordinates: [e.lngLat.lng, e.lngLat.lat] },
    limit: 1,
  };
  if (time) body.datetime = `../${time}`;
  try {
    const fc = await getJson(new URL('search', STAC).href, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!fc.features?.length) {
      message('no scene here');
      $('panel').hidden = true;
      return;
    }
    message('');
    await showItem(fc.features[0]);
  } catch (err) {
    message(err.message);
  }
}

/** The collection with the latest data (the end, else the start, of its temporal extent). */
function mostRecent(collections) {
  const latest = (c) => {
    const [start, end] = c.extent?.temporal?.interval?.[0] || [];
    return Date.parse(end || start || '') || -Infinity;
  };
  return collections.reduce((best, c) => (latest(c) > latest(best) ? c : best), collections[0]);
}

async function main() {
  initSwipe();
  $('panel-close').addEventListener('click', () => {
    $('panel').hidden = true;
  });
  for (const side of ['before', 'after']) {
    $(side).addEventListener('input', () => {
      state[side] = Number($(side).value);
      applyTimes();
    });
  }
  $('layer').addEventListener('change', () => {
    state.layer = $('layer').value;
    if (state.collection) applyTimes();
  });
  $('basemap').addEventListener('change', () => {
    for (const m of Object.values(maps)) showBasemap(m, $('basemap').checked);
  });
  $('footprints').addEventListener('change', () => {
    setFootprints(maps.before);
    setFootprints(maps.after);
  });
  // A click belongs to the side of the swipe line it lands on.
  maps.after.on('click', (e) => onClick(e, e.point.x < state.swipe * maps.after.getCanvas().clientWidth ? 'before' : 'after'));
  maps.before.on('click', (e) => onClick(e, 'before'));

  const { collections } = await getJson(new URL('collections', STAC).href);
  const select = $('collection');
  for (const c of collections) select.append(el('option', c.title ? `${c.title} (${c.id})` : c.id, { value: c.id }));
  if (!collections.length) {
    message('no collections yet: passes appear here after LOS, imports with `downlink archive add`');
    state.loads += 1;
    return;
  }
  const wanted = initial.get('collection');
  const first = collections.find((c) => c.id === wanted) || mostRecent(collections);
  select.value = first.id;
  select.addEventListener('change', () => {
    const c = collections.find((x) => x.id === select.value);
    // A new collection is a new comparison: the swipe starts in the middle again.
    setSwipe(0.5);
    $('panel').hidden = true;
    if (c) selectCollection(c).catch((e) => message(e.message));
  });
  await selectCollection(first);
}

// ---------------------------------------------------------------------------------------------
// Change alerts layer: GET ../api/v1/alerts as polygons coloured by confidence on both sides of
// the swipe; a click shows area, dates and the before/after pair. The filter (alerts=1,
// alerts_confidence, alerts_min_ha) is kept in the page address.
// ---------------------------------------------------------------------------------------------
const ALERTS_API = new URL('../api/v1/alerts', location.href);
const ALERT_COLOR = ['match', ['get', 'confidence'], 'high', '#d7191c', 'low', '#fdae61', '#8c8c8c'];
const alerts = {
  on: initial.get('alerts') === '1',
  confidence: initial.get('alerts_confidence') || '',
  minHa: initial.get('alerts_min_ha') || '',
  data: { type: 'FeatureCollection', features: [] },
  loads: 0, // fetches finished (tests wait on it)
};

function alertsKeepInAddress(q) {
  if (!alerts.on) return;
  q.set('alerts', '1');
  if (alerts.confidence) q.set('alerts_confidence', alerts.confidence);
  if (alerts.minHa) q.set('alerts_min_ha', alerts.minHa);
}

function alertsSetLayers(map) {
  const src = map.getSource('alerts');
  if (src) src.setData(alerts.data);
  else {
    map.addSource('alerts', { type: 'geojson', data: alerts.data });
    // Over the scenes (added with the first collection, before this), under the footprints
    // and the basemap's lines and labels.
    const before = map.getLayer('footprints') ? 'footprints' : overLayer(map);
    map.addLayer({ id: 'alerts-fill', type: 'fill', source: 'alerts', paint: { 'fill-color': ALERT_COLOR, 'fill-opacity': 0.45 } }, before);
    map.addLayer({ id: 'alerts-line', type: 'line', source: 'alerts', paint: { 'line-color': ALERT_COLOR, 'line-width': 2 } }, before);
  }
  const vis = alerts.on ? 'visible' : 'none';
  map.setLayoutProperty('alerts-fill', 'visibility', vis);
  map.setLayoutProperty('alerts-line', 'visibility', vis);
}

async function alertsRefresh() {
  if (alerts.on) {
    const q = new URLSearchParams();
    if (alerts.confidence) q.set('confidence', alerts.confidence);
    if (alerts.minHa) q.set('min_area_ha', alerts.minHa);
    try {
      alerts.data = await getJson(`${ALERTS_API.href}?${q}`);
    } catch (err) {
      message(`alerts: ${err.message}`);
    }
  }
  for (const m of [maps.before, maps.after]) {
    try {
      alertsSetLayers(m);
    } catch {
      // The style is not loaded yet (no collection shown): after its load event.
      await new Promise((res) => m.once('load', res));
      alertsSetLayers(m);
    }
  }
  alerts.loads += 1;
  saveView();
}

function showAlertAt(map, e) {
  if (!alerts.on || !map.getLayer('alerts-fill')) return false;
  const [f] = map.queryRenderedFeatures(e.point, { layers: ['alerts-fill'] });
  if (!f) return false;
  const p = f.properties;
  const items = typeof p.source_items === 'string' ? JSON.parse(p.source_items) : p.source_items || [];
  const body = $('panel-body');
  body.replaceChildren(el('h2', `Alert ${p.id}`));
  body.append(table([
    ['collection', p.collection],
    ['confidence', p.confidence, p.confidence === 'high' ? 'bad' : undefined],
    ['area', `${Number(p.area_ha).toFixed(2)} ha`],
    ['first detected', p.first_detected],
    ['last observed', p.last_observed],
    ['mean ΔNDVI', Number(p.mean_dndvi)],
    ['baseline NDVI', Number(p.baseline_ndvi)],
    ['mask', p.mask === 'null' ? '' : p.mask],
  ]));
  const before = items[0];
  const after = items[items.length - 1];
  body.append(el('h3', 'Before / after'));
  for (const [label, id] of [['before', before], ['after', after]]) {
    const a = el('a', `${label}: ${id}`, { href: new URL(`collections/${p.collection}/items/${id}`, STAC).href });
    body.append(a, el('br'));
  }
  // Compare the pair with the swipe when the map shows the alert's collection.
  if (state.collection?.id === p.collection) {
    const at = (id) => state.times.indexOf(state.items.find((it) => it.id === id)?.properties?.datetime);
    const [b, a] = [at(before), at(after)];
    if (b >= 0 && a >= 0) {
      const btn = el('button', 'Show this pair', { type: 'button', id: 'alert-pair' });
      btn.addEventListener('click', () => {
        state.before = b;
        state.after = a;
        $('before').value = String(b);
        $('after').value = String(a);
        applyTimes();
      });
      body.append(btn);
    }
  }
  $('panel').hidden = false;
  return true;
}

function alertsControls() {
  const box = el('input', null, { id: 'alerts', type: 'checkbox' });
  box.checked = alerts.on;
  const conf = el('select', null, { id: 'alerts-confidence', 'aria-label': 'Alert confidence' });
  for (const [v, t] of [['', 'all'], ['high', 'high'], ['low,high', 'low + high'], ['contradicted', 'contradicted']]) {
    conf.append(el('option', t, { value: v }));
  }
  conf.value = alerts.confidence;
  const min = el('input', null, { id: 'alerts-min-ha', type: 'number', min: '0', step: '0.1', placeholder: 'min ha', 'aria-label': 'Smallest alert, hectares' });
  min.style.width = '6em';
  min.value = alerts.minHa;
  const label = el('label');
  label.append(box, ' Alerts', conf, min);
  $('message').before(label);
  box.addEventListener('change', () => { alerts.on = box.checked; alertsRefresh(); });
  conf.addEventListener('change', () => { alerts.confidence = conf.value; alertsRefresh(); });
  min.addEventListener('change', () => { alerts.minHa = min.value; alertsRefresh(); });
}

alertsControls();

// For operators' consoles and the browser test.
window.downlink = { maps, state, setSwipe, layersOf, alerts };
// The alerts source is added once the first collection is shown (`loaded()` in
// selectCollection waits for the maps' first load event, which a source still loading would
// postpone).
main()
  .then(alertsRefresh)
  .catch((e) => message(e.message));
