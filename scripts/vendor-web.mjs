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
// The TopoJSON is drawn on the sphere by d3; a flat map joins a ring's +180 and -180
// vertices with a line across the world. A ring that crosses the antimeridian is unwrapped
// (longitudes past 180 continue it; MapLibre draws them on the next world copy). A ring
// around a pole (Antarctica) cannot close that way and is left alone: its crossing runs
// along the pole, beyond the map's edge.
for (const feat of countries.features) {
  const polygons =
    feat.geometry?.type === 'Polygon' ? [feat.geometry.coordinates] : feat.geometry?.coordinates ?? [];
  for (const polygon of polygons) {
    polygon.forEach((ring, i) => {
      polygon[i] = unwrapped(ring) ?? ring;
    });
  }
}

writeFileSync(join(vendor, 'world-atlas', 'countries-110m.geojson'), JSON.stringify(countries));
copyFileSync(join(atlas, 'LICENSE'), join(vendor, 'world-atlas', 'LICENSE'));

/** The ring with its longitudes made continuous, or null when it does not close so. */
function unwrapped(ring) {
  let shift = 0;
  let jumped = false;
  const out = ring.map(([lon, lat], i) => {
    if (i > 0) {
      const step = lon - ring[i - 1][0];
      if (step > 180) { shift -= 360; jumped = true; }
      else if (step < -180) { shift += 360; jumped = true; }
    }
    return [lon + shift, lat];
  });
  if (!jumped) return null;
  return shift === 0 ? out : null;
}

const versions = Object.fromEntries(
  ['maplibre-gl', 'world-atlas'].map((name) => [
    name,
    JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8')).version,
  ]),
);
writeFileSync(join(vendor, 'versions.json'), `${JSON.stringify(versions, null, 2)}\n`);
console.log(`web assets copied into ${vendor}:`, versions);
