// Downlink analyst map: the station's STAC collections as time-filtered mosaics, a before/after
// swipe, and a click that shows the STAC item and the quality of the pass it came from.
// Everything it reads comes from the daemon's own STAC API (../stac relative to this page).
import * as maplibregl from './vendor/maplibre-gl.mjs';

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
  layer: 'visual', // asset rendered by the mosaic
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

/** Rendering parameters of a layer (an asset key): NDVI gets its colormap over [-1, 1]. */
function layerParams(layer) {
  const q = new URLSearchParams({ assets: layer });
  if (layer === 'ndvi') {
    q.set('colormap_name', 'rdylgn');
    q.set('rescale', '-1,1');
  }
  return q;
}

/** Mosaic tiles: the newest scene of the collection up to `time` wherever one has data. */
function tileUrl(collectionId, time) {
  const base = new URL(
    `collections/${encodeURIComponent(collectionId)}/tiles/WebMercatorQuad/`,
    STAC,
  ).href;
  const q = layerParams(state.layer);
  if (time) q.set('datetime', `../${time}`);
  // Keep the {z}/{x}/{y} template intact; only the query is encoded.
  return `${base}{z}/{x}/{y}.png?${q.toString()}`;
}

/** Layers a collection offers: the COG assets of its newest item, visual first. */
function layersOf(items) {
  const newest = items[0];
  const keys = Object.entries(newest?.assets || {})
    .filter(([, a]) => (a.type || '').startsWith('image/tiff'))
    .map(([k]) => k);
  keys.sort((a, b) => (a === 'visual' ? -1 : b === 'visual' ? 1 : a.localeCompare(b)));
  return keys.length ? keys : ['visual'];
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
  return {
    version: 8,
    sources: {},
    layers: [{ id: 'background', type: 'background', paint: { 'background-color': '#dfe7ee' } }],
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
    attributionControl: false,
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

function loaded(map) {
  return map.loaded() ? Promise.resolve() : new Promise((res) => map.once('load', res));
}

function setScenes(map, collectionId, time) {
  const tiles = [tileUrl(collectionId, time)];
  const src = map.getSource('scenes');
  if (src) {
    src.setTiles(tiles);
    return;
  }
  map.addSource('scenes', { type: 'raster', tiles, tileSize: 256, minzoom: 0, maxzoom: 18 });
  map.addLayer({ id: 'scenes', type: 'raster', source: 'scenes', paint: { 'raster-resampling': 'nearest' } });
}

function setFootprints(map) {
  const data = footprints();
  const src = map.getSource('footprints');
  if (src) {
    src.setData(data);
  } else {
    map.addSource('footprints', { type: 'geojson', data });
    map.addLayer({
      id: 'footprints',
      type: 'line',
      source: 'footprints',
      paint: { 'line-color': '#d2552a', 'line-width': 1.2 },
    });
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
  saveView();
}

async function selectCollection(col) {
  state.collection = col;
  message(`loading ${col.id}…`);
  state.items = await collectionItems(col.id);
  state.times = [...new Set(state.items.map((f) => f.properties.datetime).filter(Boolean))].sort(
    (a, b) => Date.parse(a) - Date.parse(b),
  );
  const layers = layersOf(state.items);
  const layerSelect = $('layer');
  layerSelect.replaceChildren(...layers.map((k) => el('option', k === 'ndvi' ? 'ndvi (RdYlGn, -1…1)' : k, { value: k })));
  const q = initial;
  initial = new URLSearchParams();
  const wantedLayer = q.get('layer');
  state.layer = layers.includes(wantedLayer) ? wantedLayer : layers[0];
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
  await Promise.all([loaded(maps.before), loaded(maps.after)]);
  applyTimes();
  setFootprints(maps.before);
  setFootprints(maps.after);
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
  body.append(
    table([
      ['collection', item.collection],
      ['datetime', p.datetime],
      ['platform', p.platform],
      ['instruments', (p.instruments || []).join(', ')],
      ['GSD (m)', p.gsd],
      ['sun elevation', p['view:sun_elevation']],
      ['cloud cover', p['eo:cloud_cover']],
    ]),
  );
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
          ['AOS', rec.aos],
          ['LOS', rec.los],
        ]),
      );
      const a = el('a', 'pass record (JSON)', { href: via.href, target: '_blank' });
      body.append(a);
      body.append(el('img', null, { src: `${via.href}/plot.png`, alt: 'pass plot' }));
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
  const first = collections.find((c) => c.id === wanted) || collections[0];
  select.value = first.id;
  select.addEventListener('change', () => {
    const c = collections.find((x) => x.id === select.value);
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
    map.addLayer({ id: 'alerts-fill', type: 'fill', source: 'alerts', paint: { 'fill-color': ALERT_COLOR, 'fill-opacity': 0.45 } });
    map.addLayer({ id: 'alerts-line', type: 'line', source: 'alerts', paint: { 'line-color': ALERT_COLOR, 'line-width': 2 } });
    // Keep the alerts above the scenes the collection adds later.
    map.on('styledata', () => {
      const ids = map.getStyle().layers.map((l) => l.id);
      if (ids[ids.length - 1] !== 'alerts-line' && map.getLayer('alerts-line')) {
        map.moveLayer('alerts-fill');
        map.moveLayer('alerts-line');
      }
    });
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
window.downlink = { maps, state, setSwipe, alerts };
// The alerts source is added once the first collection is shown (`loaded()` in
// selectCollection waits for the maps' first load event, which a source still loading would
// postpone).
main()
  .then(alertsRefresh)
  .catch((e) => message(e.message));
