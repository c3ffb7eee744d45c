// Copies the web app's third-party assets from node_modules (versions pinned in
// package-lock.json) into the Python package, so that the page needs no network and a
// `pip install` carries everything. The basemap's TopoJSON becomes GeoJSON here, once,
// so the page needs no TopoJSON decoder.
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { feature } from 'topojson-client';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const modules = join(root, 'node_modules');
const vendor = join(root, 'src', 'geolibre_ml', 'web', 'vendor');

rmSync(vendor, { recursive: true, force: true });
mkdirSync(join(vendor, 'maplibre-gl'), { recursive: true });
mkdirSync(join(vendor, 'world-atlas'), { recursive: true });

const maplibre = join(modules, 'maplibre-gl');
const dist = join(maplibre, 'dist');
for (const name of readdirSync(dist)) {
  // The production build only: no -dev bundles, source maps or type declarations.
  if (/^maplibre-gl(-[a-z]+)?\.(mjs|css)$/.test(name) && !name.includes('-dev')) {
    copyFileSync(join(dist, name), join(vendor, 'maplibre-gl', name));
  }
}
copyFileSync(join(maplibre, 'LICENSE.txt'), join(vendor, 'maplibre-gl', 'LICENSE.txt'));

const atlas = join(modules, 'world-atlas');
const topology = JSON.parse(readFileSync(join(atlas, 'countries-110m.json'), 'utf8'));
const countries = feature(topology, topology.objects.countries);
writeFileSync(join(vendor, 'world-atlas', 'countries-110m.geojson'), JSON.stringify(countries));
copyFileSync(join(atlas, 'LICENSE'), join(vendor, 'world-atlas', 'LICENSE'));

const versions = Object.fromEntries(
  ['maplibre-gl', 'world-atlas'].map((name) => [
    name,
    JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8')).version,
  ]),
);
writeFileSync(join(vendor, 'versions.json'), `${JSON.stringify(versions, null, 2)}\n`);
console.log(`web assets copied into ${vendor}:`, versions);
