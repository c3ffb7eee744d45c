// Box and point prompts on the map (Box / point mode): a drag draws a box, a click adds a
// foreground point, Alt+click or right-click a background point. The prompts and the
// preview answer are drawn above every layer, and are not in the Layers panel.

const EMPTY = { type: 'FeatureCollection', features: [] };

export class PromptTool {
  /**
   * @param {maplibregl.Map} map
   * @param {function} onChange called with the prompts after each new box or point
   */
  constructor(map, onChange) {
    this.map = map;
    this.onChange = onChange;
    this.tool = null; // 'box' | 'point' | null (off)
    this.boxes = []; // [[[lng, lat], [lng, lat]], ...] corners as drawn
    this.points = []; // [{lngLat: [lng, lat], label: 1|0}]
    this.dragStart = null;
    this.dragNow = null;
    this.addLayers();
    this.bindEvents();
  }

  addLayers() {
    const map = this.map;
    map.addSource('preview', { type: 'geojson', data: EMPTY });
    map.addSource('prompts', { type: 'geojson', data: EMPTY });
    map.addLayer({
      id: 'preview-fill',
      type: 'fill',
      source: 'preview',
      paint: { 'fill-color': '#ffd400', 'fill-opacity': 0.4 },
    });
    map.addLayer({
      id: 'preview-line',
      type: 'line',
      source: 'preview',
      paint: { 'line-color': '#b38f00', 'line-width': 2 },
    });
    map.addLayer({
      id: 'prompt-boxes',
      type: 'line',
      source: 'prompts',
      filter: ['==', ['geometry-type'], 'Polygon'],
      paint: { 'line-color': '#0b63ce', 'line-width': 2, 'line-dasharray': [2, 1] },
    });
    map.addLayer({
      id: 'prompt-points',
      type: 'circle',
      source: 'prompts',
      filter: ['==', ['geometry-type'], 'Point'],
      paint: {
        'circle-radius': 6,
        // Foreground green, background red.
        'circle-color': ['match', ['get', 'label'], 1, '#1a9e3a', '#d62728'],
        'circle-stroke-color': '#fff',
        'circle-stroke-width': 2,
      },
    });
  }

  bindEvents() {
    const map = this.map;
    map.on('mousedown', (e) => {
      if (this.tool !== 'box' || e.originalEvent.button !== 0) return;
      this.dragStart = e.lngLat.toArray();
      this.dragStartPoint = e.point;
      this.dragNow = this.dragStart;
    });
    map.on('mousemove', (e) => {
      if (!this.dragStart) return;
      this.dragNow = e.lngLat.toArray();
      this.redraw();
    });
    const finish = (e) => {
      if (!this.dragStart) return;
      const start = this.dragStart;
      const moved = e ? Math.hypot(e.point.x - this.dragStartPoint.x, e.point.y - this.dragStartPoint.y) : 0;
      const end = e ? e.lngLat.toArray() : this.dragNow;
      this.dragStart = null;
      this.dragNow = null;
      // A click without a drag is no box.
      if (moved >= 4) {
        this.boxes.push([start, end]);
        this.changed();
      } else this.redraw();
    };
    map.on('mouseup', finish);
    map.getCanvas().addEventListener('mouseleave', () => finish(null));
    map.on('click', (e) => {
      if (this.tool !== 'point') return;
      this.points.push({ lngLat: e.lngLat.toArray(), label: e.originalEvent.altKey ? 0 : 1 });
      this.changed();
    });
    // The keyboard's way to a point: with the map focused, Enter puts a foreground point at
    // the map's centre (pan with the arrow keys first), Shift+Enter a background point.
    map.getCanvas().addEventListener('keydown', (e) => {
      if (this.tool !== 'point' || e.key !== 'Enter') return;
      e.preventDefault();
      this.points.push({ lngLat: map.getCenter().toArray(), label: e.shiftKey ? 0 : 1 });
      this.changed();
    });
    map.on('contextmenu', (e) => {
      if (this.tool !== 'point') return;
      e.preventDefault();
      this.points.push({ lngLat: e.lngLat.toArray(), label: 0 });
      this.changed();
    });
  }

  /** 'box', 'point' or null; panning by drag is off while the box tool is on. */
  setTool(tool) {
    this.tool = tool;
    const map = this.map;
    if (tool === 'box') map.dragPan.disable();
    else map.dragPan.enable();
    if (tool) map.doubleClickZoom.disable();
    else map.doubleClickZoom.enable();
    map.getCanvas().style.cursor = tool ? 'crosshair' : '';
    map.getContainer().classList.toggle('drawing', Boolean(tool));
  }

  get empty() {
    return this.boxes.length === 0 && this.points.length === 0;
  }

  changed() {
    this.redraw();
    this.onChange(this);
  }

  clear() {
    this.boxes = [];
    this.points = [];
    this.dragStart = null;
    this.redraw();
    this.setPreview(EMPTY);
  }

  setPreview(geojson) {
    this.map.getSource('preview')?.setData(geojson);
  }

  redraw() {
    const boxes = [...this.boxes];
    if (this.dragStart && this.dragNow) boxes.push([this.dragStart, this.dragNow]);
    const features = [
      ...boxes.map(([a, b]) => ({
        type: 'Feature',
        properties: {},
        geometry: {
          type: 'Polygon',
          coordinates: [[a, [b[0], a[1]], b, [a[0], b[1]], a]],
        },
      })),
      ...this.points.map((p) => ({
        type: 'Feature',
        properties: { label: p.label },
        geometry: { type: 'Point', coordinates: p.lngLat },
      })),
    ];
    this.map.getSource('prompts')?.setData({ type: 'FeatureCollection', features });
  }

  /**
   * The prompts as the predict form takes them, in EPSG:4326 or, given a PixelSpace,
   * in pixel coordinates: {boxes, point_coords, point_labels} (JSON strings or undefined).
   */
  formFields(pixelSpace) {
    const toXY = (lngLat) => (pixelSpace ? pixelSpace.toPixel(lngLat) : lngLat);
    const round = (v) => (pixelSpace ? Math.round(v * 10) / 10 : v);
    const fields = {};
    if (this.boxes.length) {
      fields.boxes = JSON.stringify(
        this.boxes.map(([a, b]) => {
          const [ax, ay] = toXY(a);
          const [bx, by] = toXY(b);
          return [Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by)].map(round);
        }),
      );
    }
    if (this.points.length) {
      fields.point_coords = JSON.stringify(this.points.map((p) => toXY(p.lngLat).map(round)));
      fields.point_labels = JSON.stringify(this.points.map((p) => p.label));
    }
    return fields;
  }
}
