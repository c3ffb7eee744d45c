// The MapLibre map: an offline basemap (Natural Earth countries), the optional online
// OpenStreetMap basemap, and the mapping of pixel-space images (no CRS) into Mercator.
import * as maplibregl from '../vendor/maplibre-gl/maplibre-gl.mjs';

// The worker module next to the library, named relative to the page (so a path prefix
// in front of the sidecar keeps working).
maplibregl.setWorkerUrl(new URL('vendor/maplibre-gl/maplibre-gl-worker.mjs', document.baseURI).href);

export { maplibregl };

const OSM_ATTRIBUTION =
  '© <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors';
const NE_ATTRIBUTION = 'Basemap: <a href="https://www.naturalearthdata.com/">Natural Earth</a>';

/** Ids of the basemap layers, bottom first; everything the app adds goes above them. */
export const BASEMAP_LAYERS = ['countries-fill', 'countries-line'];
const OSM_LAYER = 'osm';

/**
 * The style: a plain background and the countries. No `glyphs` or `sprite`: the page
 * draws no text on the map, so nothing is fetched from off the machine.
 */
function offlineStyle() {
  return {
    version: 8,
    sources: {
      countries: {
        type: 'geojson',
        data: 'vendor/world-atlas/countries-110m.geojson',
        attribution: NE_ATTRIBUTION,
      },
    },
    layers: [
      { id: 'background', type: 'background', paint: { 'background-color': '#dfe9f2' } },
      {
        id: 'countries-fill',
        type: 'fill',
        source: 'countries',
        paint: { 'fill-color': '#f4f1e8' },
      },
      {
        id: 'countries-line',
        type: 'line',
        source: 'countries',
        paint: { 'line-color': '#9a9384', 'line-width': 0.7 },
      },
    ],
  };
}

/** The map in `container`, and a promise for its loaded style. */
export function createMap(container) {
  const map = new maplibregl.Map({
    container,
    style: offlineStyle(),
    center: [0, 20],
    zoom: 1.2,
    attributionControl: { compact: false },
    // Every URL the page asks for is its own (relative, same origin).
    validateStyle: true,
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl(), 'bottom-left');
  const ready = new Promise((resolve) => map.once('load', () => resolve(map)));
  return { map, ready };
}

/** Turn the online basemap on or off; only when on are tiles requested off the machine. */
export function setOnlineBasemap(map, on) {
  const has = Boolean(map.getLayer(OSM_LAYER));
  if (on && !has) {
    map.addSource(OSM_LAYER, {
      type: 'raster',
      tiles: ['https://tile.openstreetmap.org/{z}/{x}/{y}.png'],
      tileSize: 256,
      maxzoom: 19,
      attribution: OSM_ATTRIBUTION,
    });
    // Above the countries, below every layer of the app's.
    map.addLayer({ id: OSM_LAYER, type: 'raster', source: OSM_LAYER }, firstAppLayer(map));
  } else if (!on && has) {
    map.removeLayer(OSM_LAYER);
    map.removeSource(OSM_LAYER);
  }
}

/** The basemap hidden for a pixel-space image (its coordinates mean nothing on Earth). */
export function setBasemapVisible(map, visible) {
  for (const id of [...BASEMAP_LAYERS, OSM_LAYER]) {
    if (map.getLayer(id)) map.setLayoutProperty(id, 'visibility', visible ? 'visible' : 'none');
  }
  // Nor does the scale bar mean anything there.
  map.getContainer().classList.toggle('pixel-space', !visible);
}

/** The id of the lowest layer above the basemap (undefined: none, add on top). */
export function firstAppLayer(map) {
  const layers = map.getStyle().layers;
  const base = new Set(['background', OSM_LAYER, ...BASEMAP_LAYERS]);
  return layers.find((layer) => !base.has(layer.id))?.id;
}

/**
 * Pixel space of an image without a CRS: pixel (col, row) maps linearly into MapLibre's
 * Mercator square (x right, y down, as pixels are), centred, its longest side a quarter
 * of the world, so it is flat on screen. Results in pixels go through the same mapping.
 */
export class PixelSpace {
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.scale = 0.25 / Math.max(width, height);
  }

  /** [lng, lat] of pixel (col, row). */
  toLngLat(col, row) {
    const x = 0.5 + (col - this.width / 2) * this.scale;
    const y = 0.5 + (row - this.height / 2) * this.scale;
    const lngLat = new maplibregl.MercatorCoordinate(x, y).toLngLat();
    return [lngLat.lng, lngLat.lat];
  }

  /** [col, row] of a map position. */
  toPixel(lngLat) {
    const m = maplibregl.MercatorCoordinate.fromLngLat(lngLat);
    return [
      (m.x - 0.5) / this.scale + this.width / 2,
      (m.y - 0.5) / this.scale + this.height / 2,
    ];
  }

  /** The image's corners, as an `image` source wants them (clockwise from top left). */
  corners() {
    return [
      this.toLngLat(0, 0),
      this.toLngLat(this.width, 0),
      this.toLngLat(this.width, this.height),
      this.toLngLat(0, this.height),
    ];
  }

  /** A GeoJSON object with every position mapped from pixels to [lng, lat]. */
  geojsonToMap(geojson) {
    const map = (coords) =>
      typeof coords[0] === 'number' ? this.toLngLat(coords[0], coords[1]) : coords.map(map);
    return {
      ...geojson,
      crs: undefined,
      features: geojson.features.map((f) => ({
        ...f,
        geometry: f.geometry && { ...f.geometry, coordinates: map(f.geometry.coordinates) },
      })),
    };
  }
}

/** [[minLng, minLat], [maxLng, maxLat]] of a FeatureCollection, or null when empty. */
export function boundsOf(geojson) {
  const b = [Infinity, Infinity, -Infinity, -Infinity];
  const visit = (coords) => {
    if (typeof coords[0] === 'number') {
      b[0] = Math.min(b[0], coords[0]);
      b[1] = Math.min(b[1], coords[1]);
      b[2] = Math.max(b[2], coords[0]);
      b[3] = Math.max(b[3], coords[1]);
    } else coords.forEach(visit);
  };
  for (const f of geojson.features) if (f.geometry) visit(f.geometry.coordinates);
  return Number.isFinite(b[0]) ? [[b[0], b[1]], [b[2], b[3]]] : null;
}

/**
 * Fit the map to bounds in the part of the map the Layers panel and an open dialog leave
 * free (on a narrow window, where they cover most of it, a plain margin).
 */
export function fitTo(map, bounds) {
  if (!bounds) return;
  const box = map.getContainer().getBoundingClientRect();
  const padding = { top: 20, bottom: 30, left: 20, right: 20 };
  const overlays = [document.getElementById('layers-panel'), document.getElementById('seg-dialog')]
    .filter((el) => el && (el.tagName !== 'DIALOG' || el.open))
    .map((el) => el.getBoundingClientRect())
    .filter((r) => r.width && r.height);
  for (const r of overlays) {
    const wide = r.width > box.width / 2;
    if (!wide && r.right < box.left + box.width / 2) padding.left = Math.max(padding.left, r.right - box.left + 20);
    else if (!wide) padding.right = Math.max(padding.right, box.right - r.left + 20);
    else if ((r.top + r.bottom) / 2 < box.top + box.height / 2) padding.top = Math.max(padding.top, r.bottom - box.top + 10);
    else padding.bottom = Math.max(padding.bottom, box.bottom - r.top + 10);
  }
  // Keep some room for the image itself, whatever covers the map.
  if (box.width - padding.left - padding.right < box.width / 3) padding.left = padding.right = 20;
  if (box.height - padding.top - padding.bottom < 80) padding.top = padding.bottom = 10;
  map.fitBounds(bounds, { padding, duration: 0, maxZoom: 20 });
}
