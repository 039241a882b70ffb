// The offline basemap: land, coastlines, country borders and names from Natural Earth 1:50m
// (the pinned `world-atlas` TopoJSON, read with `topojson-client`), and city names from
// places.json (GeoNames, made by web/tools/places.mjs). All of it is embedded in the daemon, so
// the map has context with no tile server on the internet. Labels need no glyph files: with no
// `glyphs` URL in the style, MapLibre draws text with the browser's local sans-serif font.

/** Layer ids of the basemap, bottom to top: land under the imagery, the rest above it. */
export const UNDER = ['basemap-land'];
export const OVER = ['basemap-coastline', 'basemap-borders', 'basemap-places', 'basemap-countries'];

export const WATER = '#cddbe6';
export const LAND = '#f2efe6';

export const ATTRIBUTION = 'Basemap: Natural Earth (public domain) via world-atlas · places: GeoNames (CC BY 4.0)';

async function json(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${r.status} ${r.statusText} from ${url}`);
  return r.json();
}

/**
 * Natural Earth cuts land at ±180°, so a ring or line there jumps from -180 to 180 (Fiji,
 * Chukotka, Wrangel Island, Antarctica): drawn as is, that is a line, or a filled band, across
 * the whole world. Continuous longitudes (past ±180 where needed) are drawn right: MapLibre
 * wraps them onto the neighbouring world copy.
 */
function unwrap(coords) {
  let shift = 0;
  let prev = null;
  return coords.map(([x, y]) => {
    if (prev !== null) {
      const d = x + shift - prev;
      if (d > 180) shift -= 360;
      else if (d < -180) shift += 360;
    }
    prev = x + shift;
    return [prev, y];
  });
}

function unwrapGeometry(g) {
  switch (g.type) {
    case 'LineString':
      return { ...g, coordinates: unwrap(g.coordinates) };
    case 'MultiLineString':
      return { ...g, coordinates: g.coordinates.map(unwrap) };
    case 'Polygon':
      return { ...g, coordinates: g.coordinates.map(unwrap) };
    case 'MultiPolygon':
      return { ...g, coordinates: g.coordinates.map((p) => p.map(unwrap)) };
    default:
      return g;
  }
}

/** A Feature or FeatureCollection with its geometries unwrapped. */
function unwrapAll(f) {
  if (f.type === 'FeatureCollection') return { ...f, features: f.features.map(unwrapAll) };
  if (f.type === 'Feature') return { ...f, geometry: f.geometry && unwrapGeometry(f.geometry) };
  return unwrapGeometry(f);
}

/** Signed area of a ring (lon/lat degrees, shoelace). */
function ringArea(ring) {
  let a = 0;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i, i += 1) {
    a += (ring[j][0] + ring[i][0]) * (ring[j][1] - ring[i][1]);
  }
  return a / 2;
}

/** A label point for a country: the centroid of the outer ring of its largest polygon. */
function labelPoint(geometry) {
  const polys = geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.coordinates;
  let best = null;
  let bestArea = 0;
  for (const p of polys) {
    const a = Math.abs(ringArea(p[0]));
    if (a > bestArea) {
      bestArea = a;
      best = p[0];
    }
  }
  if (!best) return null;
  let x = 0;
  let y = 0;
  let k = 0;
  for (const [lon, lat] of best) {
    x += lon;
    y += lat;
    k += 1;
  }
  return { point: [x / k, y / k], area: bestArea };
}

/** Fetches and converts the basemap data once; the result is shared by both maps. */
export async function loadBasemap() {
  const topo = globalThis.topojson;
  if (!topo) throw new Error('topojson-client is not loaded');
  const [land, countries, places] = await Promise.all([
    json('vendor/land-50m.json'),
    json('vendor/countries-50m.json'),
    json('places.json'),
  ]);
  const countryFc = unwrapAll(topo.feature(countries, countries.objects.countries));
  const names = countryFc.features
    .filter((f) => f.geometry && f.properties?.name)
    .map((f) => {
      const l = labelPoint(f.geometry);
      return l && {
        type: 'Feature',
        geometry: { type: 'Point', coordinates: l.point },
        properties: { name: f.properties.name, area: l.area },
      };
    })
    .filter(Boolean);
  return {
    land: unwrapAll(topo.feature(land, land.objects.land)),
    coastline: unwrapAll(topo.mesh(land, land.objects.land)),
    borders: topo.mesh(countries, countries.objects.countries, (a, b) => a !== b),
    countries: { type: 'FeatureCollection', features: names },
    places: {
      type: 'FeatureCollection',
      features: places.places.map(([name, lon, lat, population, capital]) => ({
        type: 'Feature',
        geometry: { type: 'Point', coordinates: [lon, lat] },
        properties: { name, population, capital },
      })),
    },
  };
}

/** Adds the basemap's sources and layers to a map (the imagery goes between UNDER and OVER). */
export function addBasemap(map, data) {
  for (const k of ['land', 'coastline', 'borders', 'countries', 'places']) {
    map.addSource(`basemap-${k}`, { type: 'geojson', data: data[k], tolerance: 0.2 });
  }
  map.addLayer({ id: 'basemap-land', type: 'fill', source: 'basemap-land', paint: { 'fill-color': LAND } });
  map.addLayer({
    id: 'basemap-coastline',
    type: 'line',
    source: 'basemap-coastline',
    paint: { 'line-color': '#3c6e8f', 'line-width': ['interpolate', ['linear'], ['zoom'], 1, 0.6, 8, 1.4] },
  });
  map.addLayer({
    id: 'basemap-borders',
    type: 'line',
    source: 'basemap-borders',
    paint: { 'line-color': '#7a5a7a', 'line-width': 1, 'line-dasharray': [3, 2] },
  });
  const halo = { 'text-color': '#222', 'text-halo-color': 'rgba(255,255,255,0.85)', 'text-halo-width': 1.4 };
  map.addLayer({
    id: 'basemap-places',
    type: 'symbol',
    source: 'basemap-places',
    // Big cities first; smaller ones appear as the map zooms in.
    filter: [
      '>=',
      ['get', 'population'],
      ['step', ['zoom'], 5000000, 3, 2000000, 4, 1000000, 5, 500000, 6, 0],
    ],
    layout: {
      'text-field': ['get', 'name'],
      'text-font': ['sans-serif'],
      'text-size': ['case', ['==', ['get', 'capital'], 1], 13, 12],
      'text-anchor': 'left',
      'text-offset': [0.5, 0],
      'symbol-sort-key': ['-', 0, ['get', 'population']],
    },
    paint: halo,
  });
  map.addLayer({
    id: 'basemap-countries',
    type: 'symbol',
    source: 'basemap-countries',
    maxzoom: 7,
    layout: {
      'text-field': ['get', 'name'],
      'text-font': ['sans-serif'],
      'text-size': 11,
      'text-transform': 'uppercase',
      'text-letter-spacing': 0.08,
      'symbol-sort-key': ['-', 0, ['get', 'area']],
    },
    paint: { ...halo, 'text-color': '#6b5a6b' },
  });
}

/** Shows or hides every basemap layer. */
export function showBasemap(map, visible) {
  for (const id of [...UNDER, ...OVER]) {
    if (map.getLayer(id)) map.setLayoutProperty(id, 'visibility', visible ? 'visible' : 'none');
  }
}
