// Building DOM without markup: every text goes through textContent (or a
// Text node), attributes through setAttribute from a short list. There is
// no innerHTML anywhere in the shell, and the page's Trusted Types policy
// makes any use of it throw.

const ATTRIBUTES = new Set([
  'id', 'class', 'href', 'type', 'name', 'value', 'placeholder', 'for', 'role',
  'min', 'max', 'step', 'alt', 'src', 'title', 'tabindex', 'autocomplete',
  'aria-label', 'aria-live', 'aria-describedby', 'aria-labelledby', 'aria-current',
  'aria-modal', 'data-host-dialog', 'data-nav', 'data-event', 'data-kind', 'inputmode',
  'rows', 'lang', 'maxlength', 'viewBox', 'd', 'fill', 'width', 'height',
  'shape-rendering', 'focusable', 'aria-hidden', 'data-testid', 'dir',
]);

/** `el('p', {class: 'x'}, 'text', child)`: an element with attributes and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  return fill(node, attrs, children);
}

/** The same, in the SVG namespace. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  return fill(node, attrs, children);
}

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'required' || key === 'disabled' || key === 'checked' || key === 'hidden') {
      node[key] = Boolean(value);
    } else if (key.startsWith('on') || !ATTRIBUTES.has(key)) {
      throw new Error(`refusing attribute ${key}`);
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

/** Append children: nodes as they are, anything else as text. */
export function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace everything inside `node`. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** `task` made to run one at a time: a call while it runs makes it run once
 *  more afterwards (however many such calls came), and waits for that. */
export function oneAtATime(task) {
  let running = null;
  let again = false;
  const run = () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await task();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
  return run;
}

/** Minor units as money: `EUR 12.50`. */
export function money(minor, currency) {
  const sign = minor < 0 ? '-' : '';
  const abs = Math.abs(minor);
  return `${currency} ${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
}

/** A Unix time as a local date and time. */
export function when(secs) {
  return new Date(secs * 1000).toLocaleString();
}

/** A short random id (client message ids, idempotency keys). */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A QR code drawn from its module rows (`1` dark) as SVG, with a quiet zone. */
export function qrSvg(modules, label) {
  const size = modules.length + 8;
  let d = '';
  modules.forEach((row, y) => {
    for (let x = 0; x < row.length; x++) {
      if (row[x] === '1') d += `M${x + 4} ${y + 4}h1v1h-1z`;
    }
  });
  return svg('svg', { viewBox: `0 0 ${size} ${size}`, class: 'qr', role: 'img', 'aria-label': label, 'shape-rendering': 'crispEdges' },
    svg('path', { d: `M0 0h${size}v${size}h-${size}z`, fill: '#fff' }),
    svg('path', { d, fill: '#000' }));
}
