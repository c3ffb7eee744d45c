// The web app's wiring: the map, the Layers panel, the Processing menu and the
// AI Segmentation dialog. Modules: js/api.js (HTTP), js/map.js (map, basemaps, pixel
// space), js/layers.js (layers and their panel), js/draw.js (box/point prompts),
// js/dialog.js (the dialog).
import { createMap, setOnlineBasemap } from './js/map.js';
import { Layers } from './js/layers.js';
import { PromptTool } from './js/draw.js';
import { SegmentationDialog } from './js/dialog.js';

const BASEMAP_KEY = 'geolibre-ml.onlineBasemap';

const { map, ready } = createMap(document.getElementById('map'));

/**
 * Debug and test hook: `window.geolibre.map` is the MapLibre map, `.layers` the app's
 * layer list (objects {id, name, kind: "raster"|"vector", featureCount}), `.ready` a
 * Promise that resolves when the map's style has loaded (and the app is wired).
 */
window.geolibre = { map, layers: [], ready: null };

window.geolibre.ready = ready.then(() => {
  const layers = new Layers(map, document.getElementById('layers-panel'));
  window.geolibre.layers = layers.list;
  const prompts = new PromptTool(map, () => {});
  const dialog = new SegmentationDialog(document.getElementById('seg-dialog'), { map, layers, prompts });
  layers.onRemove = (layer) => dialog.imageLayerRemoved(layer);
  window.geolibre.dialog = dialog;
  wireBasemapToggle();
  wireMenu(() => dialog.open());
  return map;
});

function wireBasemapToggle() {
  const box = document.getElementById('online-basemap');
  box.checked = localStorage.getItem(BASEMAP_KEY) === 'true';
  setOnlineBasemap(map, box.checked);
  box.addEventListener('change', () => {
    localStorage.setItem(BASEMAP_KEY, String(box.checked));
    setOnlineBasemap(map, box.checked);
  });
}

/** The Processing menu button: opens/closes its menu; Esc or a click elsewhere closes it. */
function wireMenu(openDialog) {
  const button = document.getElementById('processing-button');
  const menu = document.getElementById('processing-menu');
  const items = [...menu.querySelectorAll('[role="menuitem"]')];
  const setOpen = (open, focusItem = false) => {
    menu.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open && focusItem) items[0].focus();
  };
  button.addEventListener('click', () => setOpen(menu.hidden, true));
  button.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown') {
      e.preventDefault();
      setOpen(true, true);
    }
  });
  menu.addEventListener('keydown', (e) => {
    const i = items.indexOf(document.activeElement);
    if (e.key === 'Escape') {
      e.preventDefault();
      setOpen(false);
      button.focus();
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const step = e.key === 'ArrowDown' ? 1 : -1;
      items[(i + step + items.length) % items.length].focus();
    } else if (e.key === 'Tab') setOpen(false);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !menu.hidden) {
      e.preventDefault();
      setOpen(false);
      button.focus();
    }
  });
  document.addEventListener('click', (e) => {
    if (!menu.hidden && !menu.contains(e.target) && e.target !== button) setOpen(false);
  });
  document.getElementById('menu-ai').addEventListener('click', () => {
    setOpen(false);
    openDialog();
  });
}
