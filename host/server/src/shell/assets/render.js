// Draws an app's declarative view. The host validated it already; here
// every string still only ever becomes text. Images must be data: URLs of
// raster types (the host allows nothing else); app cards open apps
// through the shell's own router, never a URL the app chose.

import { el, qrSvg } from './dom.js';

let ids = 0;
const nextId = () => `v-${++ids}`;

/**
 * `on.action(name, value, fields)` sends a user action to the app;
 * `on.openCard(card)` opens the app a card points to.
 */
export function renderView(view, on) {
  return el('div', { class: 'app-view' }, renderNode(view.body, on, 0));
}

function children(node, on, depth) {
  return (node.children || []).map((c) => renderNode(c, on, depth + 1));
}

function renderNode(node, on, depth) {
  switch (node.type) {
    case 'column':
      return el('div', { class: 'v-column' }, children(node, on, depth));
    case 'row':
      return el('div', { class: 'v-row' }, children(node, on, depth));
    case 'list':
      return el('ul', { class: 'v-list' }, children(node, on, depth).map((c) => el('li', {}, c)));
    case 'text':
      return node.style === 'code' ? code(node.text) : el('p', { class: `v-text v-${node.style}` }, node.text);
    case 'heading':
      // The host's page title is the only h1: app headings start at h2.
      return el(`h${Math.min(6, Number(node.level) + 1)}`, { class: 'v-heading' }, node.text);
    case 'image':
      return image(node);
    case 'form':
      return form(node, on, depth);
    case 'input':
      // Inputs outside a form have nothing to submit them; show them read-only.
      return input(node, true);
    case 'button': {
      const b = el('button', { type: 'button', class: `v-button v-${node.style}` }, node.label);
      b.addEventListener('click', () => on.action(node.event, node.value ?? null, {}));
      return b;
    }
    case 'app-card':
      return card(node, on);
    case 'divider':
      return el('hr', { class: 'v-divider' });
    case 'key-values':
      return el('dl', { class: 'v-kv' }, node.pairs.map(([k, v]) => el('div', {}, el('dt', {}, k), el('dd', {}, v))));
    case 'badge':
      return el('span', { class: `v-badge v-tone-${node.tone}` }, node.text);
    case 'qr-code':
      return el('figure', { class: 'v-qr' }, qrSvg(node.modules, node.caption || 'QR code'), el('figcaption', {}, node.caption));
    default:
      return el('p', { class: 'v-text v-muted' }, `(this app shows something this shell cannot draw: ${node.type})`);
  }
}

function code(text) {
  const copy = el('button', { type: 'button', class: 'v-copy' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      copy.textContent = 'Copied';
    } catch {
      copy.textContent = 'Select the text to copy it';
    }
  });
  return el('div', { class: 'v-code' }, el('pre', { tabindex: '0' }, el('code', {}, text)), copy);
}

function image(node) {
  const raster = /^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]*$/;
  if (raster.test(node.src)) return el('img', { class: 'v-image', src: node.src, alt: node.alt });
  // One of the host's own images (the server checked the name).
  const host = /^asset:([a-z]{1,32})$/.exec(node.src);
  if (host) {
    return el('img', { class: 'v-image v-host-image', src: `/shell/images/${host[1]}.svg`, alt: node.alt });
  }
  return el('span', { class: 'v-image-missing', role: 'img', 'aria-label': node.alt }, node.alt);
}

function card(node, on) {
  const b = el('button', { type: 'button', class: 'v-card' },
    el('strong', {}, node.title),
    node.description ? el('span', {}, node.description) : null,
    el('span', { class: 'v-card-app' }, `Opens ${node.app_id}`));
  b.addEventListener('click', () => on.openCard(node));
  return b;
}

const KINDS = { text: 'text', number: 'number', date: 'date', time: 'time', email: 'email', phone: 'tel' };

function input(node, readOnly = false) {
  const id = nextId();
  const label = el('label', { for: id }, node.label || node.name);
  let control;
  if (node.kind === 'multiline') {
    control = el('textarea', { id, name: node.name, rows: 4, placeholder: node.placeholder || undefined, required: node.required });
    control.value = node.value;
  } else if (node.kind === 'checkbox') {
    control = el('input', { id, type: 'checkbox', name: node.name, checked: ['true', 'on', '1', 'yes'].includes(node.value) });
    return el('div', { class: 'v-field v-check' }, control, label);
  } else if (node.kind === 'select') {
    control = el('select', { id, name: node.name, required: node.required },
      node.options.map(([value, text]) => el('option', { value }, text)));
    if (node.value) control.value = node.value;
  } else {
    control = el('input', {
      id, name: node.name, type: KINDS[node.kind] || 'text', placeholder: node.placeholder || undefined,
      required: node.required, min: node.min, max: node.max,
    });
    control.value = node.value;
  }
  if (readOnly) control.disabled = true;
  // An app field that asks for what only the host's own dialogs ask for
  // (a password, a PIN, the security phrase) gets the host's warning under
  // it, in the host's style, which no app can draw.
  const asks = `${node.label || ''} ${node.name || ''} ${node.placeholder || ''}`;
  const warning = asksForSecret(asks)
    ? el('p', { class: 'host-warning', role: 'note' }, 'superapp never asks for your password, PIN or security phrase inside an app. Type it only in superapp’s own dialogs, which show your security phrase.')
    : null;
  return el('div', { class: 'v-field' }, label, control, warning);
}

/** What an app field must not ask for, in the languages people write
 *  labels in; matched on the label as written and folded (see below). */
const PHISHING = /pass\s*(word|phrase|code)|\bpin\b|security\s*phrase|secret\s*phrase|kennwort|passwort|mot de passe|contraseña|contrasena|senha|parola d'ordine|wachtwoord|hasło|haslo|heslo|lösenord|losenord|adgangskode|passord|salasana|jelszó|jelszo|şifre|sifre|mật khẩu|mat khau|пароль|пин-код|пин код|密码|密碼|口令|暗証番号|パスワード|비밀번호|كلمة المرور|كلمة السر|סיסמה|סיסמא|पासवर्ड|รหัสผ่าน/i;

/** Latin letters other scripts draw the same (Cyrillic, Greek). */
const LOOKALIKES = new Map(Object.entries({
  а: 'a', е: 'e', о: 'o', р: 'p', с: 'c', у: 'y', х: 'x', ѕ: 's', і: 'i', ј: 'j', ԁ: 'd', ԝ: 'w', һ: 'h', ԛ: 'q', ν: 'v', ο: 'o', α: 'a', ρ: 'p', τ: 't', κ: 'k', ι: 'i',
}));

/** Whether a field's words ask for a secret only the host's dialogs ask
 *  for: as written, and folded (compatibility forms, look-alike letters
 *  made Latin, anything between letters dropped: "P-a-s-s-w-o-r-d",
 *  "Pаssword" with a Cyrillic а). */
function asksForSecret(words) {
  const folded = [...words.normalize('NFKC').toLowerCase()].map((c) => LOOKALIKES.get(c) || c).join('');
  const squashed = folded.replace(/[^\p{L}\p{N}]+/gu, '');
  return PHISHING.test(words) || PHISHING.test(folded) || /password|passphrase|passcode|securityphrase|secretphrase|passwort|kennwort/.test(squashed);
}

function form(node, on, depth) {
  const f = el('form', { class: 'v-form' },
    (node.children || []).map((c) => (c.type === 'input' ? input(c) : renderNode(c, on, depth + 1))),
    el('button', { type: 'submit', class: 'v-button v-primary' }, node.submit_label || 'Submit'));
  f.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!f.reportValidity()) return;
    const fields = {};
    for (const control of f.elements) {
      if (!control.name) continue;
      fields[control.name] = control.type === 'checkbox' ? String(control.checked) : control.value;
    }
    on.action(node.event, null, fields);
  });
  return f;
}
