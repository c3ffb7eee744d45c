// The app's layers: what is drawn on the map (raster images, vector results) and the
// Layers panel that lists them, with visibility, colour, opacity, zoom, remove and downloads.
import { maplibregl, boundsOf, fitTo } from './map.js';
import { resultUrl } from './api.js';

const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6'];

/** Id of the top layer of rasters: vector layers go above it, rasters below. */
const RASTER_TOP = 'raster-top';

let counter = 0;

export class Layers {
  /**
   * @param {maplibregl.Map} map
   * @param {HTMLElement} panel the `<aside aria-label="Layers">`
   */
  constructor(map, panel) {
    this.map = map;
    /** The list the test hook shows: {id, name, kind, featureCount, ...}. */
    this.list = [];
    this.ul = panel.querySelector('#layer-list');
    this.empty = panel.querySelector('#no-layers');
    this.message = panel.querySelector('#layers-message');
    this.onRemove = () => {};
    this.popupsEnabled = true;
    // An invisible marker layer keeps rasters under every vector layer.
    map.addLayer({
      id: RASTER_TOP,
      type: 'background',
      layout: { visibility: 'none' },
      paint: { 'background-color': '#000' },
    });
    this.render();
  }

  /** A name not yet taken: "Box / point", then "Box / point 2", ... */
  uniqueName(base) {
    const taken = new Set(this.list.map((l) => l.name));
    if (!taken.has(base)) return base;
    let n = 2;
    while (taken.has(`${base} ${n}`)) n += 1;
    return `${base} ${n}`;
  }

  /**
   * A raster layer: tiles for a georeferenced image, or an `image` source placed by a
   * PixelSpace for one without a CRS.
   */
  addRaster({ name, imageId, tiles, bounds, image, corners, fit }) {
    const id = `raster-${++counter}`;
    const source = tiles
      ? { type: 'raster', tiles: [tiles], tileSize: 256, bounds: bounds.flat(), maxzoom: 22 }
      : { type: 'image', url: image, coordinates: corners };
    this.map.addSource(id, source);
    this.map.addLayer({ id, type: 'raster', source: id, paint: { 'raster-opacity': 1 } }, RASTER_TOP);
    const layer = { id, name, kind: 'raster', featureCount: null, imageId, bounds: fit, opacity: 1, visible: true };
    this.list.push(layer);
    this.render();
    return layer;
  }

  /**
   * A vector layer of a FeatureCollection already in [lng, lat].
   * @param {object} options name, geojson (drawn), answer (the server's, for download), jobId
   */
  addVector({ name, geojson, answer, jobId }) {
    const id = `vector-${++counter}`;
    const color = PALETTE[(counter - 1) % PALETTE.length];
    this.map.addSource(id, { type: 'geojson', data: geojson });
    this.map.addLayer({
      id: `${id}-fill`,
      type: 'fill',
      source: id,
      paint: { 'fill-color': color, 'fill-opacity': 0.35 },
    }, this.topOfVectors());
    this.map.addLayer({
      id: `${id}-line`,
      type: 'line',
      source: id,
      paint: { 'line-color': color, 'line-width': 1.5, 'line-opacity': 1 },
    }, this.topOfVectors());
    this.map.on('click', `${id}-fill`, (e) => this.popup(e));
    this.map.on('mouseenter', `${id}-fill`, () => { this.map.getCanvas().style.cursor = 'pointer'; });
    this.map.on('mouseleave', `${id}-fill`, () => { this.map.getCanvas().style.cursor = ''; });
    const layer = {
      id,
      name,
      kind: 'vector',
      featureCount: geojson.features.length,
      jobId: jobId ?? null,
      answer: answer ?? geojson,
      bounds: boundsOf(geojson),
      color,
      opacity: 1,
      visible: true,
    };
    this.list.push(layer);
    this.render();
    return layer;
  }

  /** Vector layers go below the preview and prompt markers (drawn by draw.js). */
  topOfVectors() {
    return this.map.getLayer('preview-fill') ? 'preview-fill' : undefined;
  }

  mapLayerIds(layer) {
    return layer.kind === 'raster' ? [layer.id] : [`${layer.id}-fill`, `${layer.id}-line`];
  }

  setVisible(layer, visible) {
    layer.visible = visible;
    for (const id of this.mapLayerIds(layer)) {
      this.map.setLayoutProperty(id, 'visibility', visible ? 'visible' : 'none');
    }
  }

  setColor(layer, color) {
    layer.color = color;
    this.map.setPaintProperty(`${layer.id}-fill`, 'fill-color', color);
    this.map.setPaintProperty(`${layer.id}-line`, 'line-color', color);
  }

  setOpacity(layer, opacity) {
    layer.opacity = opacity;
    if (layer.kind === 'raster') {
      this.map.setPaintProperty(layer.id, 'raster-opacity', opacity);
    } else {
      this.map.setPaintProperty(`${layer.id}-fill`, 'fill-opacity', 0.35 * opacity);
      this.map.setPaintProperty(`${layer.id}-line`, 'line-opacity', opacity);
    }
  }

  zoomTo(layer) {
    fitTo(this.map, layer.bounds);
  }

  remove(layer) {
    for (const id of this.mapLayerIds(layer)) this.map.removeLayer(id);
    this.map.removeSource(layer.id);
    if (layer.geojsonUrl) URL.revokeObjectURL(layer.geojsonUrl);
    this.list.splice(this.list.indexOf(layer), 1);
    this.render();
    this.onRemove(layer);
  }

  /**
   * The server names its answer file ("segments.gpkg"), and that name would win over the
   * link's `download`; fetched here and handed over as a blob, the file is "<layer>.<ext>".
   */
  async downloadResult(event, a, layer) {
    event.preventDefault();
    try {
      const res = await fetch(a.href);
      if (!res.ok) throw new Error((await res.json().catch(() => ({}))).detail ?? res.statusText);
      const url = URL.createObjectURL(await res.blob());
      const save = document.createElement('a');
      save.href = url;
      save.download = a.download;
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      this.say('');
    } catch (error) {
      this.say(`Download of ${layer.name} failed: ${error.message}`);
    }
  }

  say(text) {
    if (this.message) this.message.textContent = text;
  }

  /** The properties of the clicked polygon, in a popup. */
  popup(event) {
    if (!this.popupsEnabled) return;
    const feature = event.features?.[0];
    if (!feature) return;
    const p = feature.properties;
    const rows = [
      ['Score', p.score !== undefined ? Number(p.score).toFixed(3) : undefined],
      ['Area (m²)', p.area_m2 !== undefined ? Math.round(Number(p.area_m2)).toLocaleString('en') : undefined],
      ['Prompt', p.prompt],
      ['Label', p.value],
      ['Mode', p.mode],
      ['Model', p.model],
    ];
    const box = document.createElement('div');
    box.className = 'feature-popup';
    const dl = document.createElement('dl');
    for (const [term, value] of rows) {
      if (value === undefined || value === null || value === '') continue;
      const dt = document.createElement('dt');
      dt.textContent = term;
      const dd = document.createElement('dd');
      dd.textContent = String(value);
      dl.append(dt, dd);
    }
    box.append(dl);
    new maplibregl.Popup({ maxWidth: '260px' }).setLngLat(event.lngLat).setDOMContent(box).addTo(this.map);
  }

  /** The panel, drawn again from the list (small: a handful of layers). */
  render() {
    this.empty.hidden = this.list.length > 0;
    // Newest on top, as on the map.
    this.ul.replaceChildren(...[...this.list].reverse().map((layer) => this.item(layer)));
  }

  item(layer) {
    const li = document.createElement('li');
    li.className = `layer layer-${layer.kind}`;
    li.setAttribute('aria-label', layer.name);
    const name = layer.name;

    const head = document.createElement('div');
    head.className = 'layer-head';
    const show = input('checkbox', `Show ${name}`);
    show.checked = layer.visible;
    show.addEventListener('change', () => this.setVisible(layer, show.checked));
    const title = document.createElement('span');
    title.className = 'layer-name';
    title.textContent = layer.kind === 'vector' ? `${name} (${layer.featureCount})` : name;
    head.append(show, title);

    const controls = document.createElement('div');
    controls.className = 'layer-controls';
    if (layer.kind === 'vector') {
      const color = input('color', `Colour of ${name}`);
      color.value = layer.color;
      color.addEventListener('input', () => this.setColor(layer, color.value));
      controls.append(color);
    }
    const opacity = input('range', `Opacity of ${name}`);
    Object.assign(opacity, { min: '0', max: '1', step: '0.05', value: String(layer.opacity) });
    opacity.addEventListener('input', () => this.setOpacity(layer, Number(opacity.value)));
    controls.append(opacity);
    controls.append(
      button('Zoom', `Zoom to ${name}`, () => this.zoomTo(layer)),
      button('✕', `Remove ${name}`, () => this.remove(layer)),
    );

    li.append(head, controls);
    if (layer.kind === 'vector') li.append(this.downloads(layer));
    return li;
  }

  downloads(layer) {
    const row = document.createElement('div');
    row.className = 'layer-downloads';
    // The answer held, as the server gave it; one object URL per layer, freed on remove.
    layer.geojsonUrl ??= URL.createObjectURL(
      new Blob([JSON.stringify(layer.answer)], { type: 'application/geo+json' }),
    );
    row.append(link('GeoJSON', `Download ${layer.name} as GeoJSON`, layer.geojsonUrl, `${layer.name}.geojson`));
    // Other formats come from the job's result (the page never converts formats itself).
    if (layer.jobId) {
      for (const [text, what, ext] of [['GPKG', 'GeoPackage', 'gpkg'], ['Parquet', 'GeoParquet', 'parquet']]) {
        const a = link(text, `Download ${layer.name} as ${what}`, resultUrl(layer.jobId, ext), `${layer.name}.${ext}`);
        a.addEventListener('click', (e) => this.downloadResult(e, a, layer));
        row.append(a);
      }
    }
    return row;
  }
}

function input(type, label) {
  const el = document.createElement('input');
  el.type = type;
  el.setAttribute('aria-label', label);
  el.title = label;
  return el;
}

function button(text, label, onClick) {
  const el = document.createElement('button');
  el.type = 'button';
  el.textContent = text;
  el.setAttribute('aria-label', label);
  el.title = label;
  el.addEventListener('click', onClick);
  return el;
}

function link(text, label, href, filename) {
  const a = document.createElement('a');
  a.textContent = text;
  a.href = href;
  a.download = filename;
  a.setAttribute('aria-label', label);
  a.title = label;
  a.className = 'download';
  // Named as a button (the contract's "Download ... buttons"); an <a download> so that the
  // browser starts a download. Space activates it like a button.
  a.setAttribute('role', 'button');
  a.addEventListener('keydown', (e) => {
    if (e.key === ' ') {
      e.preventDefault();
      a.click();
    }
  });
  return a;
}
