// Privacy: every decision the user made per app, each with a button to
// take it back, the access log of what each app asked for and got, the
// security phrase, who may add the user to groups, and the password.

import { get, del, api } from './api.js';
import { el, replace, when } from './dom.js';
import { capabilityLabel, describeEntry } from './labels.js';

export async function privacy(main, shell, app) {
  const [grants, apps] = await Promise.all([get('/me/grants'), get('/apps')]);
  const nameOf = (id) => (apps.find((a) => a.id === id) || {}).name || id;
  const rows = grants.map((g) => {
    // Revoking forgets the grant: the app has to ask again next time.
    const granted = g.decision === 'granted';
    const revoke = el('button', {
      type: 'button',
      class: 'secondary',
      'aria-label': granted
        ? `Revoke: ${nameOf(g.app)} may ${capabilityLabel(g.capability)}`
        : `Forget the refusal: ${nameOf(g.app)} may not ${capabilityLabel(g.capability)}`,
    }, granted ? 'Revoke' : 'Forget');
    revoke.addEventListener('click', () => shell.guard(async () => {
      await del(`/me/grants/${encodeURIComponent(g.app)}/${encodeURIComponent(g.capability)}?forget=true`);
      await privacy(main, shell, app);
    }));
    return el('tr', {}, el('td', {}, nameOf(g.app)), el('td', {}, capabilityLabel(g.capability)), el('td', {}, g.decision === 'granted' ? 'allowed' : 'not allowed'), el('td', {}, when(g.decided_at)), el('td', {}, revoke));
  });
  const select = el('select', { id: 'log-app', name: 'app' },
    el('option', { value: '' }, 'All apps'),
    apps.map((a) => el('option', { value: a.id }, a.name)));
  select.value = app || '';
  select.addEventListener('change', () => { location.hash = select.value ? `#/privacy?app=${encodeURIComponent(select.value)}` : '#/privacy'; });
  const logPath = (before) => {
    const q = new URLSearchParams({ limit: '100' });
    if (app) q.set('app', app);
    if (before) q.set('before', String(before));
    return `/me/access-log?${q}`;
  };
  const entry = (e) => el('li', {},
    el('time', {}, when(e.at)), ' ',
    e.app ? el('strong', {}, nameOf(e.app)) : null, ' ',
    describeEntry(e),
    e.details && e.details.fields ? el('span', { class: 'muted' }, ` — fields: ${e.details.fields}`) : null);
  // Newest first, a page at a time: older entries load below.
  const list = el('ol', { class: 'access-log' });
  const older = el('button', { type: 'button', class: 'secondary', hidden: true }, 'Show older entries');
  let next = null;
  const load = async () => {
    const page = await get(logPath(next));
    list.append(...page.entries.map(entry));
    next = page.next_before;
    older.hidden = next === null || next === undefined;
  };
  older.addEventListener('click', () => shell.guard(load));
  await load();
  const phrase = shell.me.security_phrase;
  const phraseInput = el('input', { id: 'new-phrase', name: 'security_phrase', autocomplete: 'off', maxlength: 60, required: true });
  const phraseForm = el('form', { class: 'inline-form' },
    el('label', { for: 'new-phrase' }, 'Choose a new security phrase'), phraseInput,
    el('button', { type: 'submit' }, 'Save phrase'));
  phraseForm.addEventListener('submit', (e) => {
    e.preventDefault();
    shell.guard(async () => {
      await api('PUT', '/me/security-phrase', { security_phrase: phraseInput.value });
      shell.me = await get('/me');
      await privacy(main, shell, app);
    });
  });
  // Who may put the user in a group: a group is a way to reach them.
  const addsChoices = [
    ['everyone', 'Everyone'],
    ['contacts', 'Only people I have written to in a direct chat'],
    ['nobody', 'Nobody'],
  ];
  const addsNow = shell.me.group_adds || 'everyone';
  const addsDone = el('p', { class: 'muted', role: 'status' });
  const addsForm = el('form', { class: 'inline-form' },
    el('fieldset', {},
      el('legend', {}, 'Who may add you to groups'),
      addsChoices.map(([value, label]) => el('label', { class: 'choice' },
        el('input', { type: 'radio', name: 'group_adds', value, checked: value === addsNow }), ' ', label))),
    el('button', { type: 'submit' }, 'Save choice'),
    addsDone);
  addsForm.addEventListener('submit', (e) => {
    e.preventDefault();
    addsDone.textContent = '';
    const chosen = addsForm.group_adds.value;
    shell.guard(async () => {
      await api('PUT', '/me/group-adds', { group_adds: chosen });
      shell.me = await get('/me');
      addsDone.textContent = 'Saved. Groups you are in already stay; leave one from its chat.';
    });
  });
  const current = el('input', { id: 'current-password', name: 'current_password', type: 'password', autocomplete: 'current-password', required: true });
  const fresh = el('input', { id: 'new-password', name: 'new_password', type: 'password', autocomplete: 'new-password', required: true });
  const repeat = el('input', { id: 'repeat-password', name: 'repeat_password', type: 'password', autocomplete: 'new-password', required: true });
  const passwordDone = el('p', { class: 'muted', role: 'status' });
  const passwordForm = el('form', { class: 'inline-form' },
    el('label', { for: 'current-password' }, 'Current password'), current,
    el('label', { for: 'new-password' }, 'New password (at least 8 characters)'), fresh,
    el('label', { for: 'repeat-password' }, 'The new password again'), repeat,
    el('button', { type: 'submit' }, 'Change password'),
    passwordDone);
  passwordForm.addEventListener('submit', (e) => {
    e.preventDefault();
    passwordDone.textContent = '';
    if (fresh.value !== repeat.value) {
      passwordDone.textContent = 'The two new passwords differ; nothing changed.';
      repeat.focus();
      return;
    }
    shell.guard(async () => {
      await api('PUT', '/me/password', { current_password: current.value, new_password: fresh.value });
      current.value = '';
      fresh.value = '';
      repeat.value = '';
      passwordDone.textContent = 'Password changed. Every other place you were signed in is signed out.';
    });
  });
  replace(main,
    el('h1', {}, 'Privacy'),
    el('p', {}, 'The super-app’s own dialogs always show your security phrase: ', el('strong', { 'data-testid': 'my-phrase' }, phrase || '(none yet)'), '. A dialog without it is not from the super-app.'),
    phraseForm,
    el('h2', {}, 'Groups'),
    addsForm,
    el('h2', {}, 'Password'),
    el('p', { class: 'muted' }, 'Changing it signs you out everywhere else. Wrong current passwords count as failed sign-ins: after too many, both wait a while.'),
    passwordForm,
    el('h2', {}, 'Your decisions'),
    rows.length
      ? el('div', { class: 'table-wrap' }, el('table', { class: 'grants' }, el('thead', {}, el('tr', {}, el('th', {}, 'App'), el('th', {}, 'May it…'), el('th', {}, 'Decision'), el('th', {}, 'When'), el('th', {}, el('span', { class: 'visually-hidden' }, 'Change')))), el('tbody', {}, rows)))
      : el('p', { class: 'muted' }, 'No decisions yet.'),
    el('h2', {}, 'What apps accessed'),
    el('label', { for: 'log-app' }, 'Show'), select,
    list, older);
}
