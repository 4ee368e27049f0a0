// The mini-program directory and the mini-program screen. An app's view is
// drawn inside a frame the host labels with the app's name and publisher;
// the host's own header and dialogs stay outside it.

import { get, post, ApiError } from './api.js';
import { el, replace, qrSvg } from './dom.js';
import { renderView } from './render.js';
import { capabilityLabel, readable } from './labels.js';
import { focusView } from './dialogs.js';

const CONSENT = { 'once-per-app': 'asks you once', 'every-use': 'asks you every time' };

function approval(a) {
  if (!a.approval) return 'Not reviewed.';
  const at = new Date(a.approval.at * 1000).toLocaleDateString();
  return a.approval.by === 'auditor'
    ? `Approved by ${a.approval.name} on ${at}${a.approval.note ? `: “${a.approval.note}”` : ''}`
    : `Approved by the host's policy (${a.approval.name}) on ${at}`;
}

export async function directory(main) {
  const apps = await get('/apps');
  replace(main,
    el('h1', {}, 'Apps'),
    el('ul', { class: 'directory' }, apps.map((a) => el('li', { class: 'app-entry' },
      el('h2', {}, a.name),
      el('p', {}, a.description),
      el('p', { class: 'muted' }, `By ${a.publisher.name} · version ${a.version}`),
      el('details', {},
        el('summary', {}, `What it may do (${a.capabilities.length})`),
        el('ul', {}, a.capabilities.map((c) => el('li', {},
          el('strong', {}, capabilityLabel(c.name)), ` (${c.name}) — ${c.reason}`,
          CONSENT[c.consent] ? el('span', { class: 'muted' }, ` (${CONSENT[c.consent]})`) : null)))),
      el('p', { class: 'muted' }, approval(a)),
      el('a', { href: `#/app/${encodeURIComponent(a.id)}`, class: 'button' }, `Open ${a.name}`)))));
}

/** The link that opens `app` with `params`, as a card does. */
export function deepLink(app, params) {
  const query = new URLSearchParams(params).toString();
  return `${location.origin}/#/app/${encodeURIComponent(app)}${query ? `?${query}` : ''}`;
}

/** Open an app (with launch parameters) and keep drawing what it returns. */
export async function openApp(main, shell, id, params) {
  const listing = (await get('/apps')).find((a) => a.id === id);
  if (!listing) {
    replace(main, el('h1', {}, 'Not available'), el('p', {}, 'No such app, or you may not open it.'));
    return;
  }
  const stage = el('div', { class: 'app-stage' });
  const status = el('p', { class: 'app-status', role: 'status' });
  const share = el('details', { class: 'share-link' }, el('summary', {}, 'Link to this app'));
  share.addEventListener('toggle', async () => {
    if (!share.open || share.dataset.loaded) return;
    share.dataset.loaded = '1';
    const link = deepLink(id, params);
    const qr = await get(`/qr?text=${encodeURIComponent(link)}`);
    share.append(qrSvg(qr.modules, `QR code of the link to ${listing.name}`), el('p', { class: 'v-code' }, el('code', {}, link)));
  });
  const frame = el('section', { class: 'app-frame', 'aria-label': `${listing.name}, a mini-program by ${listing.publisher.name}` },
    el('div', { class: 'app-frame-bar' },
      el('span', { class: 'app-name' }, listing.name),
      el('span', { class: 'muted' }, `mini-program by ${listing.publisher.name}`)),
    status, stage);
  replace(main, el('h1', { class: 'visually-hidden' }, listing.name), frame, share);

  const draw = (result) => {
    if (result && result.view) {
      // Focus on what the app replaces (the button just pressed) moves to
      // the new view's heading, which a screen reader then reads.
      const focused = document.activeElement;
      const lost = !focused || focused === document.body || stage.contains(focused);
      replace(stage, renderView(result.view, handlers));
      status.textContent = '';
      if (lost && !document.querySelector('dialog[open]')) focusView();
    }
  };
  const drawAnswer = (answered) => {
    if (answered && answered.prompt && answered.prompt.app === id) draw(answered);
  };
  shell.drawAnswer = drawAnswer;
  const run = async (path, body, byUser = false) => {
    status.textContent = 'Working…';
    stage.setAttribute('aria-busy', 'true');
    try {
      draw(await post(path, body));
    } catch (e) {
      status.textContent = e instanceof ApiError ? `${listing.name} could not answer: ${readable(e.message)}` : 'Network error.';
    } finally {
      stage.removeAttribute('aria-busy');
    }
    // The app may have asked for something only the host can ask the user;
    // the app's answer to each is drawn as it comes. A press in the app
    // brings back what the user put off of it (Pay again after Not now).
    if (byUser) shell.bringBack(id);
    await shell.answerPrompts(drawAnswer, id);
  };
  const handlers = {
    action: (name, value, fields) => run(`/apps/${encodeURIComponent(id)}/events`, { name, value, fields }, true),
    openCard: (card) => shell.openCard(card),
  };
  await run(`/apps/${encodeURIComponent(id)}/launch`, { params: Object.entries(params) });
}

