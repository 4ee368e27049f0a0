// The host's own dialogs: consent, sharing a card, confirming a payment,
// disclosing document fields. They are modal <dialog>s hung from the
// host's header, the app behind them dimmed and inert, and each shows the
// user's security phrase — something no app can know — so nothing an app
// draws can pass for one. The answering buttons only react to a fresh
// press that starts after the dialog has been in sight for a moment (its
// tab shown and its window focused the whole time), so a click aimed at the
// app underneath, or at another window, cannot answer it.

import { post, get, ApiError } from './api.js';
import { el, money, when } from './dom.js';
import { capabilityLabel, humanize, readable } from './labels.js';

/** How long a dialog must have been in sight before it can be answered. */
const ARM_MS = 800;

/** Answers that mean the prompt was settled elsewhere (another tab or
 *  device, or it ran out of time): the dialog can only be closed. */
const SETTLED = new Set(['already-answered', 'order-expired', 'not-found']);

let ids = 0;

/** Show `prompt` and answer it; resolves to the answer, or null if put off
 *  (Not now, Escape, leaving the page) or settled elsewhere. */
export function showPrompt(prompt, me) {
  return new Promise((resolve) => {
    const titleId = `dlg-${++ids}`;
    const bodyId = `dlg-body-${ids}`;
    const error = el('p', { class: 'dialog-error', role: 'alert' });
    // What the dialog asks (the amount, the payee, what for) is its
    // description, read out when it opens.
    const body = el('div', { class: 'dialog-body', id: bodyId });
    const approve = el('button', { type: 'button', class: 'primary', disabled: true }, 'Confirm');
    const deny = el('button', { type: 'button', class: 'secondary', disabled: true }, 'Decline');
    const later = el('button', { type: 'button', class: 'quiet' }, 'Not now');
    const dialog = el('dialog', { class: `host-dialog kind-${prompt.kind}`, 'data-host-dialog': 'true', 'aria-labelledby': titleId, 'aria-describedby': bodyId },
      el('div', { class: 'host-mark' },
        el('span', { class: 'brand' }, 'superapp'),
        el('span', { class: 'phrase', 'data-testid': 'security-phrase' }, `Your phrase: ${me.security_phrase || '(set one under Privacy)'}`)),
      el('h2', { id: titleId }, ''),
      // Names in their own direction, kept apart from the host's words.
      el('p', { class: 'dialog-app' }, el('bdi', {}, prompt.app_name), ' · by ', el('bdi', {}, publisherOf(prompt))),
      body, error,
      el('div', { class: 'dialog-actions' }, later, deny, approve));
    const title = dialog.querySelector(`#${titleId}`);
    const collect = fillBody(prompt, title, body, approve, deny);
    // Focus goes back where it was when the dialog closes.
    const before = document.activeElement;

    // Armed only after the dialog has been in sight for a while: its tab
    // shown and its window focused the whole time (hiding the tab or
    // leaving the window starts the wait again). Only a press that began
    // after arming counts, on either answer: a "Don't allow" is remembered.
    let armedAt = Infinity;
    let pressed = false;
    let arming = null;
    const disarm = () => {
      clearTimeout(arming);
      armedAt = Infinity;
      pressed = false;
      approve.disabled = deny.disabled = true;
    };
    const arm = () => {
      disarm();
      if (document.visibilityState !== 'visible') return;
      arming = setTimeout(() => {
        armedAt = performance.now();
        approve.disabled = collect.blocked === true;
        deny.disabled = false;
      }, ARM_MS);
    };
    const onVisibility = () => (document.visibilityState === 'visible' ? arm() : disarm());
    document.addEventListener('visibilitychange', onVisibility);
    window.addEventListener('blur', disarm);
    window.addEventListener('focus', arm);
    for (const button of [approve, deny]) {
      button.addEventListener('pointerdown', () => { pressed = performance.now() >= armedAt; });
      button.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') pressed = performance.now() >= armedAt;
      });
    }
    // Enter in the dialog's field (the payment password) confirms, once armed.
    if (collect.enter) {
      collect.enter.addEventListener('keydown', (e) => {
        if (e.key !== 'Enter') return;
        e.preventDefault();
        if (performance.now() < armedAt || approve.disabled) return;
        pressed = true;
        approve.click();
      });
    }

    const onNavigate = () => finish(null);
    const finish = (value) => {
      window.removeEventListener('hashchange', onNavigate);
      document.removeEventListener('visibilitychange', onVisibility);
      window.removeEventListener('blur', disarm);
      window.removeEventListener('focus', arm);
      clearTimeout(arming);
      dialog.close();
      dialog.remove();
      // Where it was, or, if that is gone or hidden (the app drew anew, the
      // host bar's "Waiting for you" went away), the view on screen.
      const there = before && before.isConnected && typeof before.focus === 'function' && before.getClientRects().length > 0;
      if (there) before.focus();
      else focusView();
      resolve(value);
    };
    // Leaving the page puts the dialog off: it waits under "Waiting for you".
    window.addEventListener('hashchange', onNavigate);
    const answer = async (verb, payload) => {
      error.textContent = '';
      approve.disabled = deny.disabled = true;
      try {
        finish(await post(`/prompts/${encodeURIComponent(prompt.id)}/${verb}`, payload));
      } catch (e) {
        if (e instanceof ApiError && SETTLED.has(e.code)) {
          error.textContent = `${readable(e.message)} It was settled elsewhere or ran out of time; nothing more happens here.`;
          approve.hidden = deny.hidden = true;
          later.textContent = 'Close';
          later.focus();
          return;
        }
        error.textContent = e instanceof ApiError ? readable(e.message) : 'Something went wrong; try again.';
        approve.disabled = collect.blocked === true;
        deny.disabled = false;
        (collect.focus || later).focus();
      }
    };
    approve.addEventListener('click', () => {
      if (!pressed) return;
      pressed = false;
      const payload = collect.payload();
      if (payload) answer('approve', payload);
      else if (collect.missing) error.textContent = collect.missing;
    });
    deny.addEventListener('click', () => {
      if (!pressed) return;
      pressed = false;
      answer('deny', {});
    });
    later.addEventListener('click', () => finish(null));
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      finish(null);
    });
    document.body.append(dialog);
    dialog.showModal();
    arm();
    // The field the dialog asks for, else "Not now", which answers nothing.
    (collect.focus || later).focus();
  });
}

/** Focus the view on screen after it was drawn anew (the element that had
 *  focus is gone): the app's first heading, else the page's main region. */
export function focusView() {
  const main = document.getElementById('main');
  if (!main) return;
  const heading = main.querySelector('.app-view h1, .app-view h2, .app-view h3, .app-view .v-heading');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  } else {
    main.focus({ preventScroll: true });
  }
}

/** Fill the dialog for its kind; returns how to read the answer. */
function fillBody(prompt, title, body, approve, deny) {
  switch (prompt.kind) {
    case 'payment':
      return payment(prompt, title, body, approve);
    case 'document':
      return documentSheet(prompt, title, body, approve, deny);
    case 'share-card':
      return shareCard(prompt, title, body, approve);
    default:
      // The app's name and words in their own direction (bdi), apart from
      // the host's.
      title.replaceChildren('Allow ', el('bdi', {}, prompt.app_name), ` to ${capabilityLabel(prompt.capability)}?`);
      body.append(el('p', {}, 'The app says why: “', el('bdi', {}, prompt.reason), '”'));
      if (prompt.origins && prompt.origins.length) {
        title.replaceChildren('Allow ', el('bdi', {}, prompt.app_name), ' to contact its servers?');
        body.append(el('p', {}, 'It will send requests, with your anonymous id for this app, only to:'),
          el('ul', { class: 'origins' }, prompt.origins.map((o) => el('li', {}, el('code', {}, o)))));
      }
      body.append(el('p', { class: 'muted' }, 'You can change this at any time under Privacy.'));
      approve.textContent = 'Allow';
      deny.textContent = "Don't allow";
      return { payload: () => ({}) };
  }
}

/** Who stands behind a prompt, by the name the directory shows (the
 *  payee of a payment). */
function publisherOf(prompt) {
  return prompt.publisher_name || prompt.publisher;
}

function payment(prompt, title, body, approve) {
  const sheet = prompt.payment;
  title.textContent = 'Confirm payment';
  const password = el('input', { id: `pw-${ids}`, type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  body.append(
    el('p', { class: 'amount' }, money(sheet.amount, sheet.currency)),
    el('dl', { class: 'sheet' },
      el('div', {}, el('dt', {}, 'To'), el('dd', {}, publisherOf(prompt))),
      el('div', {}, el('dt', {}, 'For'), el('dd', { dir: 'auto' }, sheet.description)),
      el('div', {}, el('dt', {}, 'Until'), el('dd', {}, when(sheet.expires_at)))),
    el('label', { for: password.id }, 'Your password'),
    password);
  approve.textContent = `Pay ${money(sheet.amount, sheet.currency)}`;
  return {
    focus: password,
    enter: password,
    missing: 'Enter your password to pay.',
    payload: () => {
      if (!password.value) {
        password.focus();
        return null;
      }
      const p = { password: password.value };
      password.value = '';
      return p;
    },
  };
}

function documentSheet(prompt, title, body, approve, deny) {
  const sheet = prompt.document;
  title.textContent = `Share your ${humanize(sheet.credential_type)}?`;
  // An app's words are isolated (bdi), so none can turn the host's around.
  body.append(el('p', {}, 'Purpose: “', el('bdi', {}, sheet.purpose), '”'));
  if (sheet.verifier) {
    body.append(el('p', { class: 'verifier' }, 'Shown to the verifier “', el('bdi', {}, sheet.verifier), '”, through ', el('bdi', {}, prompt.app_name), '. It will work only for them, once.'));
  }
  if (sheet.deliver_to) {
    body.append(el('p', { class: 'verifier' }, `Sent straight to ${publisherOf(prompt)}'s own system at ${sheet.deliver_to}. The mini-program itself never sees it.`));
  }
  if (!sheet.issuer) {
    body.append(el('p', {}, `You hold no ${humanize(sheet.credential_type)} document, so there is nothing to share.`));
    return { blocked: true, payload: () => null };
  }
  body.append(el('p', { class: 'muted' }, `Issued by ${sheet.issuer}. Untick what you do not want to share.`));
  const boxes = sheet.fields.map((field) => {
    const id = `f-${++ids}`;
    const available = sheet.available.includes(field);
    const box = el('input', { id, type: 'checkbox', name: field, checked: available, disabled: !available });
    body.append(el('div', { class: 'check' }, box, el('label', { for: id }, available ? humanize(field) : `${humanize(field)} (not in your document)`)));
    return box;
  });
  approve.textContent = 'Share the ticked fields';
  return {
    focus: boxes.find((b) => !b.disabled),
    missing: 'Tick at least one field to share, or choose Decline.',
    payload: () => {
      const fields = boxes.filter((b) => b.checked).map((b) => b.name);
      return fields.length ? { fields } : null;
    },
  };
}

function shareCard(prompt, title, body, approve) {
  title.replaceChildren('Share “', el('bdi', {}, prompt.card.title), '” into a chat?');
  const select = el('select', { id: `chat-${++ids}`, name: 'conversation' });
  body.append(el('label', { for: select.id }, 'Chat'), select);
  get('/conversations').then((list) => {
    for (const c of list) select.append(el('option', { value: c.id }, c.title || (c.with ? `${c.with.display_name} @${c.with.username}` : 'Direct chat')));
  }).catch(() => {});
  approve.textContent = 'Share';
  return { focus: select, payload: () => (select.value ? { conversation_id: select.value } : null) };
}
