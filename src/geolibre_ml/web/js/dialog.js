// The AI Segmentation dialog: backend status (Start server), model, image upload, mode,
// prompts and settings; runs (jobs with progress and Cancel, or synchronous) and their
// messages. Box / point prompts come from draw.js and are answered at once.
import * as api from './api.js';
import { PixelSpace, boundsOf, fitTo, setBasemapVisible } from './map.js';

/** How to get a model that is not ready, in the option's text. */
const HOW_TO_GET = {
  sam3: 'run geolibre-ml download-model',
};

/** Whether an element is rendered (the content of a closed <details> is not). */
const shown = (el) => (el.checkVisibility ? el.checkVisibility() : el.getClientRects().length > 0);

const plural = (n) => `${n} ${n === 1 ? 'feature' : 'features'}`;

export class SegmentationDialog {
  /**
   * @param {HTMLDialogElement} dialog
   * @param {{map: maplibregl.Map, layers: import('./layers.js').Layers, prompts: import('./draw.js').PromptTool}} app
   */
  constructor(dialog, { map, layers, prompts }) {
    this.dialog = dialog;
    this.map = map;
    this.layers = layers;
    this.prompts = prompts;
    this.status = null; // the last ml/status answer
    this.image = null; // {info, layer, pixelSpace|null, name}
    this.run = null; // {controller, jobId} while a Segment run is going
    this.predictController = null;

    const $ = (sel) => dialog.querySelector(sel);
    this.el = {
      status: $('#seg-status'),
      statusText: $('#seg-status-text'),
      start: $('#seg-start'),
      form: $('#seg-form'),
      model: $('#seg-model'),
      file: $('#seg-image'),
      mode: $('#seg-mode'),
      prompt: $('#seg-prompt'),
      promptRow: $('#row-prompt'),
      confidence: $('#seg-confidence'),
      confidenceRow: $('#row-confidence'),
      minSize: $('#seg-min-size'),
      maxSize: $('#seg-max-size'),
      sam: $('#sam-automatic'),
      pps: $('#seg-pps'),
      iou: $('#seg-iou'),
      stability: $('#seg-stability'),
      predict: $('#predict-tools'),
      match: $('#seg-match'),
      matchRow: $('#row-match'),
      accept: $('#seg-accept'),
      clear: $('#seg-clear'),
      segment: $('#seg-run'),
      progressRow: $('#row-progress'),
      progress: $('#seg-progress'),
      cancel: $('#seg-cancel'),
      close: $('#seg-close'),
    };
    this.bind();
    this.updateMode();
  }

  bind() {
    const el = this.el;
    el.close.addEventListener('click', () => this.close());
    this.dialog.addEventListener('keydown', (e) => {
      if (e.key === 'Tab') this.trapFocus(e);
    });
    this.map.getCanvas().addEventListener('keydown', (e) => this.trapFromMap(e));
    // Esc closes it wherever the focus is (the map too), unless something nearer used it
    // (the Processing menu closes first).
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.dialog.open && !e.defaultPrevented) {
        e.preventDefault();
        this.close();
      }
    });
    this.dialog.addEventListener('close', () => this.onClosed());
    el.start.addEventListener('click', () => this.startServer());
    el.file.addEventListener('change', () => this.upload());
    el.mode.addEventListener('change', () => this.updateMode());
    el.model.addEventListener('change', () => this.updateMode());
    el.form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (el.mode.value !== 'predict') this.segment();
    });
    el.cancel.addEventListener('click', () => this.cancel());
    for (const radio of this.dialog.querySelectorAll('input[name="prompt-tool"]')) {
      radio.addEventListener('change', () => this.updateTool());
    }
    el.match.addEventListener('change', () => this.predictNow());
    el.accept.addEventListener('click', () => this.accept());
    el.clear.addEventListener('click', () => {
      this.predictController?.abort();
      this.prompts.clear();
      this.preview = null;
      this.updatePredictButtons();
      this.say('');
      this.focusTool();
    });
    this.prompts.onChange = () => this.predictNow();
  }

  // ---- opening, closing, focus ----

  /**
   * Opened modeless (show(), not showModal()): the map and the Layers panel stay usable
   * while it is open (boxes and points are drawn on the map, results looked at);
   * Tab and Shift+Tab still go round the dialog's own controls, and Esc closes it.
   */
  open() {
    if (!this.dialog.open) this.dialog.show();
    this.el.close.focus();
    this.updateTool();
    this.checkStatus();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  onClosed() {
    this.prompts.setTool(null);
    this.layers.popupsEnabled = true;
    document.getElementById('processing-button')?.focus();
  }

  /** The dialog's controls that take the focus now, in order. */
  focusables() {
    return [...this.dialog.querySelectorAll(
      'button, input, select, textarea, summary, a[href], [tabindex]:not([tabindex="-1"])',
    )].filter((n) => !n.matches(':disabled') && !n.closest('fieldset:disabled') && shown(n));
  }

  /**
   * Tab and Shift+Tab go round the dialog's controls (modeless too); while Box / point
   * prompts are taken, the map is one more stop on the round, so that the keyboard
   * reaches it (draw.js: Enter puts a point).
   */
  trapFocus(e) {
    const focusable = this.focusables();
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    const canvas = this.map.getCanvas();
    const next = this.prompts.tool ? canvas : null;
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      (next ?? last).focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      (next ?? first).focus();
    }
  }

  /** Tab from the map (a stop on the dialog's round) goes back into the dialog. */
  trapFromMap(e) {
    if (e.key !== 'Tab' || !this.dialog.open || !this.prompts.tool) return;
    const focusable = this.focusables();
    if (!focusable.length) return;
    e.preventDefault();
    (e.shiftKey ? focusable[focusable.length - 1] : focusable[0]).focus();
  }

  // ---- the status line ----

  /** Message in the status line; kind: info | error | success | busy. */
  say(text, kind = 'info') {
    this.el.statusText.textContent = text;
    this.el.status.dataset.kind = kind;
    this.el.status.setAttribute('aria-busy', String(kind === 'busy'));
  }

  // ---- backend status ----

  async checkStatus() {
    this.say('Checking the segmentation backend…', 'busy');
    this.setFormEnabled(false);
    this.el.start.hidden = true;
    try {
      this.showStatus(await api.getStatus());
    } catch (error) {
      this.say(`Could not read the backend's status: ${error.detail ?? error.message}`, 'error');
    }
  }

  showStatus(status) {
    this.status = status;
    this.fillModels(status);
    if (status.available) {
      this.say(status.message, 'info');
      this.el.start.hidden = true;
      this.setFormEnabled(true);
    } else {
      this.say(status.message, 'error');
      this.el.start.hidden = false;
      this.setFormEnabled(false);
    }
  }

  async startServer() {
    const start = this.el.start;
    // Not disabled while it works: a disabled button would drop the keyboard focus.
    if (start.getAttribute('aria-disabled') === 'true') return;
    start.setAttribute('aria-disabled', 'true');
    this.say('Starting the model server…', 'busy');
    try {
      const started = await api.startServer();
      if (!started.ok) {
        this.say(`The model server could not start: ${started.detail ?? started.message}`, 'error');
        return;
      }
      this.showStatus(await api.getStatus());
    } catch (error) {
      this.say(`The model server could not start: ${error.detail ?? error.message}`, 'error');
    } finally {
      start.removeAttribute('aria-disabled');
    }
  }

  /** Options from the backend's model versions, with their readiness; keeps the choice. */
  fillModels(status) {
    const select = this.el.model;
    const chosen = select.value;
    const versions = status.models ? Object.keys(status.models) : [];
    if (!versions.length && status.default_model) versions.push(status.default_model);
    if (!versions.length) return;
    select.replaceChildren(
      ...versions.map((version) => {
        const option = document.createElement('option');
        option.value = version;
        const ready = status.ready?.[version];
        if (ready === true) option.textContent = `${version} (ready)`;
        else if (ready === false) {
          option.textContent = `${version} (not ready: ${HOW_TO_GET[version] ?? 'not installed here'})`;
        } else option.textContent = version;
        return option;
      }),
    );
    select.value = versions.includes(chosen) ? chosen : (versions.includes(status.default_model)
      ? status.default_model : versions[0]);
    this.updateMode();
  }

  setFormEnabled(enabled) {
    this.el.form.querySelector('fieldset.main').disabled = !enabled;
    // A disabled fieldset leaves its <summary> focusable: take it out of the tab order too.
    this.el.form.querySelector('summary').tabIndex = enabled ? 0 : -1;
  }

  // ---- the image ----

  async upload() {
    const file = this.el.file.files[0];
    if (!file) return;
    this.say(`Uploading ${file.name}…`, 'busy');
    let info;
    try {
      info = await api.uploadImage(file);
    } catch (error) {
      // A plain samgeo-api keeps no images: the file then goes with every request.
      if (error instanceof api.ApiError && error.status === 404) await this.useLocalFile(file);
      else this.say(this.failure('Upload failed', error), 'error');
      return;
    }
    this.forgetImage();
    let pixelSpace = null;
    let layer;
    if (info.crs && info.bounds_4326) {
      const [w, s, e, n] = info.bounds_4326;
      const bounds = [[w, s], [e, n]];
      setBasemapVisible(this.map, true);
      layer = this.layers.addRaster({
        name: file.name,
        imageId: info.image_id,
        tiles: api.tilesUrl(info.image_id),
        bounds,
        fit: bounds,
      });
    } else {
      pixelSpace = new PixelSpace(info.width, info.height);
      const corners = pixelSpace.corners();
      setBasemapVisible(this.map, false);
      layer = this.layers.addRaster({
        name: file.name,
        imageId: info.image_id,
        image: api.previewUrl(info.image_id),
        corners,
        fit: [corners[3], corners[1]],
      });
    }
    this.image = { info, layer, pixelSpace, name: file.name };
    fitTo(this.map, layer.bounds);
    const size = `${info.width} × ${info.height} px`;
    this.say(`${file.name} is on the map (${size}${pixelSpace ? ', no georeferencing: pixel space' : ''}).`, 'info');
    this.updateMode();
    // The upload started the model server if it was not running: its models are known now.
    api.getStatus().then((status) => this.fillModels(status)).catch(() => {});
  }

  /**
   * Without ml/images (a plain samgeo-api): each request sends the file itself. A PNG or
   * JPEG is still shown, in pixel space, from the file; a GeoTIFF cannot be drawn here.
   */
  async useLocalFile(file) {
    this.forgetImage();
    const tiff = /\.tiff?$/i.test(file.name);
    let pixelSpace = null;
    let layer = null;
    if (!tiff) {
      try {
        const bitmap = await createImageBitmap(file);
        pixelSpace = new PixelSpace(bitmap.width, bitmap.height);
        bitmap.close();
      } catch {
        this.say(`${file.name} cannot be read as an image.`, 'error');
        return;
      }
      const corners = pixelSpace.corners();
      setBasemapVisible(this.map, false);
      layer = this.layers.addRaster({
        name: file.name,
        image: URL.createObjectURL(file),
        corners,
        fit: [corners[3], corners[1]],
      });
      fitTo(this.map, layer.bounds);
    }
    this.image = { info: { image_id: null }, file, layer, pixelSpace, name: file.name };
    this.say(`This backend keeps no images: ${file.name} is sent with each request${
      tiff ? ', and the raster cannot be shown on the map' : ''}.`, 'info');
    this.updateMode();
  }

  /** The previous image goes from the map and the server (a second file replaces it). */
  forgetImage() {
    const old = this.image;
    if (!old) return;
    this.image = null;
    this.prompts.clear();
    if (old.layer && this.layers.list.includes(old.layer)) this.layers.remove(old.layer);
    if (old.info.image_id) api.deleteImage(old.info.image_id);
  }

  /** The raster layer was removed in the Layers panel: the image is gone too. */
  imageLayerRemoved(layer) {
    if (this.image?.layer === layer) {
      if (this.image.info.image_id) api.deleteImage(this.image.info.image_id);
      if (this.image.pixelSpace) setBasemapVisible(this.map, true);
      this.image = null;
      this.el.file.value = '';
      this.prompts.clear();
      this.updateMode();
    }
  }

  // ---- mode and settings ----

  updateMode() {
    const el = this.el;
    const mode = el.mode.value;
    const sam3 = el.model.value === 'sam3';
    el.promptRow.hidden = mode !== 'text';
    el.confidenceRow.hidden = mode === 'automatic';
    el.sam.hidden = !(sam3 && mode === 'automatic');
    el.predict.hidden = mode !== 'predict';
    el.matchRow.hidden = !sam3;
    el.segment.hidden = mode === 'predict';
    this.updateTool();
  }

  updateTool() {
    const active = this.dialog.open && this.el.mode.value === 'predict' && this.image !== null;
    const tool = this.dialog.querySelector('input[name="prompt-tool"]:checked')?.value ?? 'box';
    this.prompts.setTool(active ? tool : null);
    this.layers.popupsEnabled = !active;
    this.updatePredictButtons();
  }

  updatePredictButtons() {
    this.el.accept.disabled = !(this.preview && this.preview.geojson.features.length);
    this.el.clear.disabled = this.prompts.empty;
  }

  /** A number input's value, clamped to [min, max]; undefined when empty. */
  number(input, min = -Infinity, max = Infinity) {
    if (input.value.trim() === '') return undefined;
    const v = Number(input.value);
    if (!Number.isFinite(v)) return undefined;
    return Math.min(max, Math.max(min, v));
  }

  /** Fields every run sends: the image, the model, sizes, and WGS84 output when georeferenced. */
  commonFields() {
    return {
      image_id: this.image.info.image_id ?? undefined,
      file: this.image.file,
      model_version: this.el.model.value || undefined,
      output_format: 'geojson',
      output_crs: this.image.pixelSpace ? undefined : 'EPSG:4326',
      min_size: this.number(this.el.minSize, 0),
      max_size: this.number(this.el.maxSize, 0),
    };
  }

  concepts() {
    return this.el.prompt.value.split(',').map((c) => c.trim()).filter(Boolean);
  }

  // ---- Segment (text, automatic) ----

  async segment() {
    const el = this.el;
    if (this.run) return;
    if (!this.image) {
      this.say('Choose an image first.', 'error');
      el.file.focus();
      return;
    }
    const mode = el.mode.value;
    const fields = this.commonFields();
    let name = 'Automatic';
    let concepts = [];
    if (mode === 'text') {
      concepts = this.concepts();
      if (!concepts.length) {
        this.say('Type what to find in Prompt, e.g. water.', 'error');
        el.prompt.focus();
        return;
      }
      if (concepts.length === 1) fields.prompt = concepts[0];
      else fields.prompts = JSON.stringify(concepts);
      fields.confidence_threshold = this.number(el.confidence, 0, 1) ?? 0.5;
      name = concepts.join(', ');
    } else if (el.model.value === 'sam3') {
      fields.points_per_side = this.number(el.pps, 1);
      fields.pred_iou_thresh = this.number(el.iou, 0, 1);
      fields.stability_score_thresh = this.number(el.stability, 0, 1);
    }

    const controller = new AbortController();
    this.run = { controller, jobId: null };
    // aria-disabled, not disabled: the keyboard focus stays on the button.
    el.segment.setAttribute('aria-disabled', 'true');
    el.cancel.hidden = false;
    el.progressRow.hidden = false;
    el.progress.removeAttribute('value');
    this.say('Segmenting…', 'busy');
    try {
      const { geojson, jobId } = await api.segment(mode, fields, {
        signal: controller.signal,
        onJob: (id) => { this.run.jobId = id; },
        onProgress: ({ done, total }) => {
          if (total > 0) {
            el.progress.max = total;
            el.progress.value = done;
            el.progress.setAttribute('aria-valuetext', `${done} of ${total}`);
          }
        },
      });
      this.addResult(name, geojson, jobId);
    } catch (error) {
      if (error instanceof api.Aborted) this.say('Cancelled.', 'info');
      else if (error instanceof api.ApiError && error.noObjects) {
        this.say(mode === 'text'
          ? `No objects found for "${concepts.join(', ')}". Try a lower confidence threshold.`
          : 'No objects found. Try a smaller minimum size.', 'info');
      } else this.say(this.failure('Segmentation failed', error), 'error');
      if (error instanceof api.ApiError && error.status === 503) this.offerStart();
    } finally {
      this.run = null;
      el.segment.removeAttribute('aria-disabled');
      const refocus = document.activeElement === el.cancel;
      el.cancel.hidden = true;
      if (refocus) el.segment.focus();
      el.progressRow.hidden = true;
    }
  }

  async cancel() {
    const run = this.run;
    if (!run) return;
    this.el.cancel.setAttribute('aria-disabled', 'true');
    try {
      // The job stops at the server; its stream then ends "cancelled". A synchronous
      // run is stopped by dropping the request (the server hears the disconnect).
      if (run.jobId) await api.cancelJob(run.jobId);
    } finally {
      run.controller.abort();
      this.el.cancel.removeAttribute('aria-disabled');
    }
  }

  /** A finished run's layer, its count, the zoom, and the message. */
  addResult(name, answer, jobId) {
    const crs = answer.crs?.properties?.name;
    if (crs && !/EPSG::4326$|CRS84$/.test(crs)) {
      // A backend that ignores output_crs (samgeo-api) answers in the raster's own CRS.
      this.say(`The backend answered in ${crs}, not in WGS84: this page cannot place it on the map.`, 'error');
      return;
    }
    const geojson = this.image.pixelSpace ? this.image.pixelSpace.geojsonToMap(answer) : answer;
    const layer = this.layers.addVector({ name: this.layers.uniqueName(name), geojson, answer, jobId });
    fitTo(this.map, boundsOf(geojson));
    this.say(`Added ${plural(layer.featureCount)} to ${layer.name}.`, 'success');
  }

  /** "<what>: <detail>" and what to do, when known. */
  failure(what, error) {
    if (!(error instanceof api.ApiError)) return `${what}: ${error.message}`;
    let text = `${what}: ${error.detail}`;
    if (error.status === 413) text += ' The image is over the upload limit: use a smaller image.';
    if (error.status === 503 && this.status?.message && !text.includes(this.status.message)) {
      text += ` ${this.status.message}`;
    }
    return text;
  }

  /** After a 503: the backend's status, and Start server when it is down. */
  async offerStart() {
    try {
      const status = await api.getStatus();
      this.status = status;
      if (!status.available) this.el.start.hidden = false;
    } catch {
      this.el.start.hidden = false;
    }
  }

  // ---- Box / point ----

  /** Every new box or point: segment at once with all prompts; the answer is the preview. */
  async predictNow() {
    if (!this.image || this.prompts.empty) return;
    this.updatePredictButtons();
    this.predictController?.abort();
    const controller = new AbortController();
    this.predictController = controller;
    const fields = {
      ...this.commonFields(),
      ...this.prompts.formFields(this.image.pixelSpace),
      point_crs: this.image.pixelSpace ? undefined : 'EPSG:4326',
      confidence_threshold: this.number(this.el.confidence, 0, 1),
      box_mode: this.el.model.value === 'sam3' ? this.el.match.value : undefined,
    };
    this.say('Segmenting at the prompts…', 'busy');
    try {
      const answer = await api.segmentSync('predict', fields, controller.signal);
      const geojson = this.image.pixelSpace ? this.image.pixelSpace.geojsonToMap(answer) : answer;
      this.preview = { answer, geojson };
      this.prompts.setPreview(geojson);
      this.say(`Added ${plural(geojson.features.length)} to the preview.`, 'success');
    } catch (error) {
      if (error instanceof api.Aborted) return;
      this.preview = null;
      this.prompts.setPreview({ type: 'FeatureCollection', features: [] });
      if (error instanceof api.ApiError && error.noObjects) this.say('No objects found at these prompts.', 'info');
      else this.say(this.failure('Segmentation failed', error), 'error');
    } finally {
      if (this.predictController === controller) this.predictController = null;
      this.updatePredictButtons();
    }
  }

  /** The preview becomes a layer "Box / point" (numbered when taken). */
  accept() {
    if (!this.preview) return;
    const { answer, geojson } = this.preview;
    const layer = this.layers.addVector({ name: this.layers.uniqueName('Box / point'), geojson, answer });
    this.preview = null;
    this.prompts.clear();
    this.updatePredictButtons();
    this.say(`Added ${plural(layer.featureCount)} to ${layer.name}.`, 'success');
    this.focusTool();
  }

  /** Accept and Clear prompts disable themselves: the focus goes to the tool's radio. */
  focusTool() {
    this.dialog.querySelector('input[name="prompt-tool"]:checked')?.focus();
  }
}
